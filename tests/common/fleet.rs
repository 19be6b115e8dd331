//! A fleet lab for the end-to-end tests: `hutong::lab::fleet::FleetLab` with the fleet
//! example, and the `hutong` commands the tests run against it.

use std::{path::Path, process::Output};

use hutong::lab::fleet::FleetLab;

pub const GATEWAYS: [&str; 3] = ["gw-changsha", "gw-furong", "gw-zhuzhou"];

pub fn hutong_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hutong"))
}

pub fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/examples/fleet.yaml")).unwrap()
}

/// The lab and the runtime that built it (dropped in this order).
pub struct Fleet {
    pub lab: FleetLab,
    pub _rt: tokio::runtime::Runtime,
    pub plans: tempfile::TempDir,
}

impl Fleet {
    pub fn build(members: usize) -> Fleet {
        super::require_root("e2e_fleet");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let lp = control::load_str(&example(), Path::new("fleet.yaml")).unwrap();
        let lab = rt.block_on(FleetLab::build(&lp, &GATEWAYS, members)).unwrap();
        Fleet { lab, _rt: rt, plans: tempfile::tempdir().unwrap() }
    }

    /// `hutong ARGS` against the fleet's etcd.
    pub fn hutong(&self, args: &[&str]) -> Output {
        let out = self.lab.hutong(hutong_bin(), args).output().unwrap();
        eprintln!(
            "$ hutong {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Pushes `text` as a plan file with `args`.
    pub fn push(&self, text: &str, args: &[&str]) -> Output {
        let file = self.plans.path().join(format!("plan-{}.yaml", rand_suffix()));
        std::fs::write(&file, text).unwrap();
        let mut all = vec!["push", file.to_str().unwrap()];
        all.extend_from_slice(args);
        self.hutong(&all)
    }

    pub fn status(&self) -> serde_json::Value {
        let out = self.lab.hutong(hutong_bin(), &["fleet", "status", "--json"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The status row of `id`.
    pub fn row(&self, id: &str) -> serde_json::Value {
        self.status()["gateways"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["gateway"] == id)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until every one of `ids` reports ACK with `push` applied.
    pub fn wait_acked(&self, ids: &[&str], push: u64) {
        if let Err(e) = self.lab.wait_acked(hutong_bin(), ids, push, &|| Ok(())) {
            let logs: Vec<String> = (0..GATEWAYS.len()).map(|k| self.lab.log(k)).collect();
            panic!("{e:#}:\n{:#}\n{}", self.status(), logs.join("\n"));
        }
    }

    pub fn start_all(&mut self) {
        for k in 0..GATEWAYS.len() {
            self.lab.start(k, hutong_bin()).unwrap();
        }
        for k in 0..GATEWAYS.len() {
            self.lab.sites[k].gateway.as_mut().unwrap().wait_ready(&|| Ok(())).unwrap();
        }
    }

    /// Takes site `k`'s management link down (its gateway can no longer reach etcd); returns
    /// its ifindex for [`Fleet::lab_link_up`].
    pub fn lab_link_down(&self, k: usize) -> u32 {
        let ns = &self.lab.sites[k].lab.gateway;
        self._rt.block_on(async {
            let h = ns.netlink().unwrap();
            let link = dataplane::netlink::link(&h, "mgmt0").await.unwrap();
            h.link()
                .set(rtnetlink::LinkUnspec::new_with_index(link.ifindex).down().build())
                .execute()
                .await
                .unwrap();
            link.ifindex
        })
    }

    pub fn lab_link_up(&self, k: usize, ifindex: u32) {
        let ns = &self.lab.sites[k].lab.gateway;
        self._rt.block_on(async {
            let h = ns.netlink().unwrap();
            dataplane::netlink::set_up(&h, ifindex).await.unwrap();
        })
    }

    pub fn pings(&self, k: usize, count: u32) -> u32 {
        self.lab.sites[k].pings(count)
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

/// The example with a policy at Changsha (it covers Furong too) that denies ICMP.
pub fn no_ping_at_changsha() -> String {
    no_ping_at(&example(), "Changsha")
}

/// `text` with a policy denying ICMP at the prefecture called `name` (and below it).
pub fn no_ping_at(text: &str, name: &str) -> String {
    let anchor = format!("        name: {name}\n        level: prefecture\n");
    assert!(text.contains(&anchor), "{name}");
    text.replacen(
        &anchor,
        &format!("{anchor}        policies: [{{ name: no-ping, protocol: icmp, action: deny }}]\n"),
        1,
    )
}
