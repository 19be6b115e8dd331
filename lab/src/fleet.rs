//! A fleet in network namespaces: one demo site per gateway (its legacy host, the gateway, the
//! extranet server; see `topology`), and a management namespace holding etcd, joined to each
//! gateway's namespace by a veth of its own. Nothing of it touches the root namespace:
//!
//! ```text
//!   [mgmt: etcd :2379..]  m0 10.255.0.1/30 ── mgmt0 10.255.0.2/30 [gateway 0] ── its hosts
//!                         m1 10.255.1.1/30 ── mgmt0 10.255.1.2/30 [gateway 1] ── its hosts
//! ```
//! Commands that talk to etcd (`hutong push`, `hutong fleet status`) run in the management
//! namespace ([`FleetLab::hutong`]).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};
use ipnet::{IpNet, Ipv4Net};

use crate::{DemoLab, Netns, etcd::Etcd, gateway::GatewayProcess, netns, topology};

/// One gateway's site.
pub struct FleetSite {
    pub id: String,
    pub lab: DemoLab,
    /// The gateway's state, PID file, log and counters.
    pub work: tempfile::TempDir,
    pub gateway: Option<GatewayProcess>,
}

pub struct FleetLab {
    pub sites: Vec<FleetSite>,
    pub etcd: Etcd,
    pub mgmt: Netns,
}

/// etcd's address on the veth to site `k`.
pub fn etcd_addr(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 255, k as u8, 1)
}

impl FleetLab {
    /// Builds a site for each of `gateways` (compiled from `plan`) and starts an etcd of
    /// `members` members. Must run inside a tokio runtime.
    pub async fn build(plan: &control::LoadedPlan, gateways: &[&str], members: usize) -> Result<FleetLab> {
        let mgmt = Netns::create(&format!("{}-mgmt", netns::lab_tag()))?;
        let mh = mgmt.netlink()?;
        topology::up(&mh, "lo").await?;
        let mut sites = Vec::new();
        for (k, id) in gateways.iter().enumerate() {
            let config = control::compile(plan, id).map_err(|d| anyhow::anyhow!("{d}"))?;
            let lab = DemoLab::build(&config).await.with_context(|| format!("the site of {id}"))?;
            let gh = lab.gateway.netlink()?;
            let mport = format!("m{k}");
            topology::veth(&mh, &mport, &lab.gateway, &gh, "mgmt0", 1).await?;
            let i = topology::up(&mh, &mport).await?;
            dataplane::netlink::add_address(&mh, i, IpNet::V4(Ipv4Net::new(etcd_addr(k), 30)?)).await?;
            let j = topology::up(&gh, "mgmt0").await?;
            let here = Ipv4Addr::new(10, 255, k as u8, 2);
            dataplane::netlink::add_address(&gh, j, IpNet::V4(Ipv4Net::new(here, 30)?)).await?;
            let work = tempfile::Builder::new().prefix(&format!("hutong-fleet-{id}-")).tempdir()?;
            sites.push(FleetSite { id: id.to_string(), lab, work, gateway: None });
        }
        let etcd = Etcd::start_in(members, &mgmt)?;
        Ok(FleetLab { sites, etcd, mgmt })
    }

    /// The etcd URLs as site `k`'s gateway reaches them.
    pub fn urls_for(&self, k: usize) -> String {
        self.etcd.urls_via(etcd_addr(k))
    }

    /// `hutong ARGS` in the management namespace, with `HUTONG_FLEET` set to etcd.
    pub fn hutong(&self, hutong: &Path, args: &[&str]) -> Command {
        let mut c = netns::command_in(self.mgmt.file(), hutong);
        c.env("HUTONG_FLEET", self.etcd.urls()).args(args);
        c
    }

    /// Starts site `k`'s gateway in fleet mode (not waiting for it).
    pub fn start(&mut self, k: usize, hutong: &Path) -> Result<()> {
        let urls = self.urls_for(k);
        let s = &mut self.sites[k];
        let tag = format!("gw-{k}");
        s.gateway = Some(GatewayProcess::start_fleet(
            &s.lab.gateway,
            hutong,
            (&urls, &s.id),
            s.work.path(),
            &tag,
            &[],
        )?);
        Ok(())
    }

    /// The log of site `k`'s gateway (for a failing test's message).
    pub fn log(&self, k: usize) -> String {
        self.sites[k].gateway.as_ref().map(|g| g.log_text()).unwrap_or_default()
    }

    /// Waits (up to 60 s) until every one of `ids` reports ACK with exactly `push` applied, as
    /// `hutong fleet status --json` says; `interrupted` is asked between looks.
    pub fn wait_acked(
        &self,
        hutong: &Path,
        ids: &[&str],
        push: u64,
        interrupted: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(60) {
            interrupted()?;
            let out = self.hutong(hutong, &["fleet", "status", "--json"]).output()?;
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                let rows = v["gateways"].as_array().cloned().unwrap_or_default();
                let acked = |id: &&str| {
                    rows.iter().any(|r| {
                        r["gateway"] == *id && r["state"] == "ack" && r["applied"].as_u64() == Some(push)
                    })
                };
                if ids.iter().all(acked) {
                    return Ok(());
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        anyhow::bail!("not all of {ids:?} ACKed push {push} within 60 s")
    }

    /// Where site `k`'s gateway keeps its state.
    pub fn state_dir(&self, k: usize) -> PathBuf {
        self.sites[k].work.path().join("state")
    }
}

impl FleetSite {
    /// Pings the extranet server from the legacy host: replies received of `count` (paced at
    /// 0.2 s, 1 s deadline per reply; 0 if ping could not run).
    pub fn pings(&self, count: u32) -> u32 {
        let server = std::net::IpAddr::V4(self.lab.addrs.server.addr());
        crate::demo::ping_n(&self.lab.legacy, server, None, count).map_or(0, |p| p.received)
    }
}
