//! Real ports for `hutong bench` (`--gen IF --dut-in IF --dut-out IF --sink IF`). On target
//! hardware the generator, the device under test and the sink are NIC ports cabled gen ↔
//! dut-in and dut-out ↔ sink. The bench borrows them: each moves into its lab namespace under
//! the name the lab gives it (gen0, in0, out0, sink0), so every device's rules are the same as
//! on veths; when the lab is dropped (after a failure too) each goes back to the namespace it
//! was found in, with its own name, up again if it was up.
//!
//! Only ports nothing else uses are borrowed: a port with an IPv4 address, or an IPv6 address
//! beyond link-local, is refused before anything moves (it carries someone's traffic, maybe the
//! management session's).

use std::{fs::File, os::fd::AsRawFd, sync::Arc};

use anyhow::{Context, Result, bail};
use dataplane::netlink;
use futures::TryStreamExt;
use netlink_packet_route::{
    address::{AddressAttribute, AddressScope},
    link::LinkFlags,
};
use rtnetlink::LinkUnspec;

use hutong_lab::Netns;

/// The four ports, by name, in the namespace the bench runs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ports {
    pub generator: String,
    pub dut_in: String,
    pub dut_out: String,
    pub sink: String,
}

impl Ports {
    /// Each port with the option that named it and the name it has in the lab.
    fn roles(&self) -> [(&str, &str, &'static str); 4] {
        [
            (self.generator.as_str(), "--gen", "gen0"),
            (self.dut_in.as_str(), "--dut-in", "in0"),
            (self.dut_out.as_str(), "--dut-out", "out0"),
            (self.sink.as_str(), "--sink", "sink0"),
        ]
    }

    /// As the report describes the topology.
    pub fn describe(&self) -> String {
        format!(
            "real ports: generator {} → device under test {} … {} → sink {}",
            self.generator, self.dut_in, self.dut_out, self.sink
        )
    }
}

/// Ports moved into lab namespaces; dropping it gives them back.
pub struct Borrowed {
    /// The namespace they came from.
    home: File,
    /// (lab namespace, name there, own name, was up), in the order taken.
    taken: Vec<(Arc<Netns>, &'static str, String, bool)>,
}

impl Borrowed {
    /// Checks every port (exists here, distinct, no addresses), then moves each into its
    /// namespace of `labs` (generator, device under test twice, sink), renamed. What was taken
    /// before a failure is given back.
    pub async fn take(ports: &Ports, labs: [&Arc<Netns>; 4]) -> Result<Borrowed> {
        let home = File::open("/proc/thread-self/ns/net").context("this namespace")?;
        let h = netlink::connect()?;
        let roles = ports.roles();
        let mut found = Vec::new();
        for (i, &(name, option, _)) in roles.iter().enumerate() {
            if roles[..i].iter().any(|r| r.0 == name) {
                bail!("{option} {name}: named twice; the bench needs four different ports");
            }
            let msg = netlink::get(&h, name).await.with_context(|| format!("{option} {name}"))?;
            if msg.header.flags.contains(LinkFlags::Loopback) {
                bail!("{option} {name}: a loopback device, not a port");
            }
            let up = msg.header.flags.contains(LinkFlags::Up);
            let used = in_use(&h, msg.header.index).await?;
            if !used.is_empty() {
                bail!(
                    "{option} {name}: it has addresses ({}); the bench borrows only ports nothing else uses",
                    used.join(", ")
                );
            }
            found.push((msg.header.index, up));
        }
        let mut borrowed = Borrowed { home, taken: Vec::new() };
        for ((&(name, option, lab_name), (ifindex, up)), ns) in roles.iter().zip(found).zip(labs) {
            // Moved and renamed in one message: the name is the one it gets over there.
            h.link()
                .set(
                    LinkUnspec::new_with_index(ifindex)
                        .down()
                        .setns_by_fd(ns.file().as_raw_fd())
                        .name(lab_name.to_string())
                        .build(),
                )
                .execute()
                .await
                .with_context(|| format!("{option} {name}: moving it into {}", ns.name()))?;
            borrowed.taken.push((ns.clone(), lab_name, name.to_string(), up));
        }
        Ok(borrowed)
    }

    /// Gives every port back: down, home, its own name, up if it was. Runs on a thread of its
    /// own with its own runtime (a drop may happen inside another runtime), which starts in
    /// the namespace of the thread dropping it: home.
    fn give_back(&mut self) -> Vec<String> {
        let taken = std::mem::take(&mut self.taken);
        let home = self.home.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return vec![format!("no runtime to give the ports back: {e}")],
                };
                rt.block_on(async {
                    let mut failed = Vec::new();
                    for (ns, lab_name, own, up) in taken.iter().rev() {
                        if let Err(e) = give_back(ns, lab_name, own, *up, home).await {
                            failed.push(format!("{own} (now {lab_name} in {}): {e:#}", ns.name()));
                        }
                    }
                    failed
                })
            })
            .join()
            .unwrap_or_else(|_| vec!["the thread giving the ports back panicked".into()])
        })
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        for f in self.give_back() {
            eprintln!("hutong bench: could not give a port back: {f}");
        }
    }
}

async fn give_back(ns: &Netns, lab_name: &str, own: &str, up: bool, home: i32) -> Result<()> {
    let h = ns.netlink()?;
    let link = netlink::link(&h, lab_name).await?;
    h.link()
        .set(LinkUnspec::new_with_index(link.ifindex).down().setns_by_fd(home).name(own.to_string()).build())
        .execute()
        .await?;
    if up {
        let h = netlink::connect()?;
        let link = netlink::link(&h, own).await?;
        netlink::set_up(&h, link.ifindex).await?;
    }
    Ok(())
}

/// The addresses on `ifindex` that say something uses it: any IPv4 one, IPv6 beyond link-local.
async fn in_use(h: &rtnetlink::Handle, ifindex: u32) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut addrs = h.address().get().set_link_index_filter(ifindex).execute();
    while let Some(a) = addrs.try_next().await? {
        if a.header.scope == AddressScope::Link {
            continue;
        }
        for attr in &a.attributes {
            if let AddressAttribute::Address(ip) = attr {
                out.push(format!("{ip}/{}", a.header.prefix_len));
            }
        }
    }
    Ok(out)
}
