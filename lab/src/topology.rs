//! The demo topology, derived from a compiled gateway [`Config`]:
//!
//! ```text
//!  [legacy host] eth0 ── legacy port [ gateway ] extranet port ── eth0 [extranet server]
//!   10.20.0.10 (+ an unmapped         (hutong in its             198.19.0.2, also the
//!   address for negative tests)        own namespace)            gateway's next hop
//! ```
//! A config with a second legacy port (another VRF, possibly the very same addresses) gets a
//! second legacy host behind it, at the same offset in its subnet. A config with IPv6 on both
//! ports (and an IPv6 next hop for the extranet) gets IPv6 on the hosts too.
//!
//! The gateway's namespace gets only the bare veths: bringing them up and addressing them is
//! `hutong gateway run`'s job, as it would be on a real server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, bail};
use dataplane::{Config, Role, netlink};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::{Netns, netns};
use dataplane::ethtool;

/// Addresses of the demo's hosts, all derived from the gateway's config.
#[derive(Clone, Debug)]
pub struct DemoAddresses {
    /// The legacy host, inside the netmapped prefix.
    pub legacy_host: Ipv4Net,
    /// What the extranet should see the legacy host as.
    pub legacy_host_translated: Ipv4Addr,
    /// A second address on the legacy host that no translation covers.
    pub unmapped: Ipv4Addr,
    /// A third, in the first subnet the config isolates (denies as a source) in its VRF.
    pub isolated: Option<Ipv4Addr>,
    /// The extranet server (and the gateway's next hop).
    pub server: Ipv4Net,
    pub legacy_gateway: Ipv4Addr,
    pub uplink_gateway: Ipv4Addr,
    pub legacy_port: String,
    pub uplink_port: String,
    /// The plan addresses the extranet routes to the gateway: netmap outsides, NAPT pools and
    /// published services.
    pub outside_prefixes: Vec<Ipv4Net>,
    /// A second legacy network, if the config has a second legacy port: its port, its host and
    /// the gateway's address there.
    pub second_legacy: Option<(String, Ipv4Net, Ipv4Addr)>,
    pub ipv6: Option<DemoAddresses6>,
}

/// The IPv6 side of the demo, laid out as the IPv4 one.
#[derive(Clone, Debug)]
pub struct DemoAddresses6 {
    pub legacy_host: Ipv6Net,
    /// Its NPTv6 image, if a translation covers it.
    pub legacy_host_translated: Option<Ipv6Addr>,
    pub server: Ipv6Net,
    pub legacy_gateway: Ipv6Addr,
    pub uplink_gateway: Ipv6Addr,
    /// NPTv6 outside prefixes, routed by the extranet to the gateway.
    pub outside_prefixes: Vec<Ipv6Net>,
}

impl DemoAddresses6 {
    fn from_config(
        c: &Config,
        legacy: &dataplane::PortConfig,
        uplink: &dataplane::PortConfig,
    ) -> Option<Self> {
        let v6 = |p: &dataplane::PortConfig| {
            p.addresses.iter().find_map(|a| match a {
                IpNet::V6(n) => Some(*n),
                IpNet::V4(_) => None,
            })
        };
        let (lnet, unet) = (v6(legacy)?, v6(uplink)?);
        let via = c.routes.iter().find_map(|r| match r.via {
            Some(IpAddr::V6(v)) if r.vrf == 0 => Some(v),
            _ => None,
        })?;
        let host = Ipv6Addr::from(u128::from(lnet.network()) + 10);
        let translated = c
            .nptv6
            .iter()
            .find(|n| n.inside_vrf == legacy.vrf && n.inside.contains(&host))
            .and_then(|n| dataplane::engine::translate::nptv6(host, n.inside, n.outside));
        Some(DemoAddresses6 {
            legacy_host: Ipv6Net::new(host, lnet.prefix_len()).ok()?,
            legacy_host_translated: translated,
            server: Ipv6Net::new(via, unet.prefix_len()).ok()?,
            legacy_gateway: lnet.addr(),
            uplink_gateway: unet.addr(),
            outside_prefixes: c.nptv6.iter().map(|n| n.outside).collect(),
        })
    }
}

impl DemoAddresses {
    pub fn from_config(c: &Config) -> Result<DemoAddresses> {
        let legacy =
            c.ports.iter().find(|p| p.role == Role::Legacy).context("the config has no legacy port")?;
        let uplink =
            c.ports.iter().find(|p| p.role == Role::Extranet).context("the config has no extranet port")?;
        let lnet = first_v4(&legacy.addresses).context("the legacy port has no IPv4 address")?;
        let unet = first_v4(&uplink.addresses).context("the extranet port has no IPv4 address")?;
        let host = Ipv4Addr::from(u32::from(lnet.network()) + 10);
        // The legacy host's plan address: its netmap image, or the first address of its NAPT pool
        // (the first block handed out is the pool's first).
        let translated = if let Some(nm) = c.netmaps.iter().find(|n| n.inside_vrf == legacy.vrf) {
            if !nm.inside.contains(&host) || host == lnet.addr() {
                bail!(
                    "the demo puts its legacy host at {host}, which the netmap {} does not cover",
                    nm.inside
                );
            }
            let offset = u32::from(host) - u32::from(nm.inside.network());
            Ipv4Addr::from(u32::from(nm.outside.network()) + offset)
        } else {
            let pool = c
                .nat_pools
                .iter()
                .find(|p| p.inside_vrf == legacy.vrf)
                .context("the legacy VRF has no netmap or NAPT pool")?;
            pool.addresses.first().context("the pool has no addresses")?.network()
        };
        // The block right after the legacy port's subnet, same size: outside every netmap.
        let next = Ipv4Addr::from(u32::from(lnet.broadcast()).wrapping_add(1) + 10);
        if c.netmaps.iter().any(|n| n.inside.contains(&next)) {
            bail!("the demo's unmapped address {next} is covered by a netmap");
        }
        let via = c
            .routes
            .iter()
            .find_map(|r| match r.via {
                Some(IpAddr::V4(v)) if r.vrf == 0 => Some(v),
                _ => None,
            })
            .context("the config has no extranet IPv4 next hop for the demo server")?;
        Ok(DemoAddresses {
            legacy_host: Ipv4Net::new(host, lnet.prefix_len())?,
            legacy_host_translated: translated,
            unmapped: next,
            isolated: c.policies.iter().find_map(|r| match (r.vrf == legacy.vrf, &r.action, r.src) {
                (true, dataplane::Action::Deny, Some(IpNet::V4(n))) if r.proto.is_none() => {
                    Some(Ipv4Addr::from(u32::from(n.network()) + 10))
                }
                _ => None,
            }),
            server: Ipv4Net::new(via, unet.prefix_len())?,
            legacy_gateway: lnet.addr(),
            uplink_gateway: unet.addr(),
            legacy_port: legacy.name.clone(),
            uplink_port: uplink.name.clone(),
            second_legacy: c
                .ports
                .iter()
                .filter(|p| p.role == Role::Legacy && p.name != legacy.name && p.vlan.is_none())
                .find_map(|p| {
                    let net = first_v4(&p.addresses)?;
                    let host =
                        Ipv4Net::new(Ipv4Addr::from(u32::from(net.network()) + 10), net.prefix_len()).ok()?;
                    Some((p.name.clone(), host, net.addr()))
                }),
            ipv6: DemoAddresses6::from_config(c, legacy, uplink),
            outside_prefixes: c
                .netmaps
                .iter()
                .map(|n| n.outside)
                .chain(c.nat_pools.iter().flat_map(|p| p.addresses.iter().copied()))
                .chain(c.services.iter().map(|s| Ipv4Net::from(s.outside)))
                .collect(),
        })
    }
}

fn first_v4(addrs: &[IpNet]) -> Option<Ipv4Net> {
    addrs.iter().find_map(|a| match a {
        IpNet::V4(n) => Some(*n),
        IpNet::V6(_) => None,
    })
}

/// The namespaces; dropping this removes them and everything in them.
pub struct DemoLab {
    pub legacy: Netns,
    /// The second legacy network's host, if the config has one (see [`DemoAddresses`]).
    pub legacy2: Option<Netns>,
    pub gateway: Netns,
    pub extranet: Netns,
    pub addrs: DemoAddresses,
    /// Receive and transmit queues of every veth (the gateway's ports and the hosts' ends).
    pub queues: u32,
}

/// The veth end's name while it is still in the gateway namespace, before the move and rename.
const PEER_TMP: &str = "htpeer";

async fn link_index(h: &Handle, name: &str) -> Result<u32> {
    Ok(netlink::link(h, name).await?.ifindex)
}

/// A veth from `a_name` in `a` to `b_name` in `b`, created inside `a` so nothing touches the
/// root namespace.
pub async fn veth(
    a: &Handle,
    a_name: &str,
    b_ns: &Netns,
    b: &Handle,
    b_name: &str,
    queues: u32,
) -> Result<()> {
    use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkInfo};
    use std::os::fd::AsRawFd;
    let mut msg = LinkVeth::new(a_name, PEER_TMP).build();
    let counts = [LinkAttribute::NumTxQueues(queues), LinkAttribute::NumRxQueues(queues)];
    // Both ends alike: the peer's attributes sit inside the link info.
    for attr in &mut msg.attributes {
        if let LinkAttribute::LinkInfo(infos) = attr {
            for info in infos {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = info {
                    peer.attributes.extend(counts.iter().cloned());
                }
            }
        }
    }
    msg.attributes.extend(counts);
    a.link().add(msg).execute().await.with_context(|| format!("creating veth {a_name}"))?;
    let peer = link_index(a, PEER_TMP).await?;
    a.link()
        .set(LinkUnspec::new_with_index(peer).setns_by_fd(b_ns.file().as_raw_fd()).build())
        .execute()
        .await
        .context("moving the veth peer")?;
    let moved = link_index(b, PEER_TMP).await?;
    b.link().set(LinkUnspec::new_with_index(moved).name(b_name.to_string()).build()).execute().await?;
    Ok(())
}

pub(crate) async fn up(h: &Handle, name: &str) -> Result<u32> {
    let idx = link_index(h, name).await?;
    netlink::set_up(h, idx).await?;
    Ok(idx)
}

async fn route(h: &Handle, dst: Ipv4Net, via: Ipv4Addr) -> Result<()> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst.network(), dst.prefix_len())
        .gateway(via)
        .build();
    h.route().add(msg).execute().await.with_context(|| format!("route {dst} via {via}"))?;
    Ok(())
}

async fn route6(h: &Handle, dst: Ipv6Net, via: Ipv6Addr) -> Result<()> {
    let msg = RouteMessageBuilder::<Ipv6Addr>::new()
        .destination_prefix(dst.network(), dst.prefix_len())
        .gateway(via)
        .build();
    h.route().add(msg).execute().await.with_context(|| format!("route {dst} via {via}"))?;
    Ok(())
}

/// A host end: up, addressed, checksums finished in software, NAPI on (see `ethtool`).
async fn host_port(ns: &Netns, h: &Handle, addrs: &[IpNet]) -> Result<()> {
    let idx = up(h, "eth0").await?;
    for a in addrs {
        netlink::add_address(h, idx, *a).await?;
    }
    ns.run(|| -> std::io::Result<()> {
        ethtool::set_tx_checksum("eth0", false)?;
        ethtool::set_gro("eth0", true)
    })?
    .with_context(|| format!("ethtool settings in {}", ns.name()))?;
    Ok(())
}

impl DemoLab {
    /// Builds the topology for `config`. Must run inside a tokio runtime.
    pub async fn build(config: &Config) -> Result<DemoLab> {
        DemoLab::build_with_queues(config, 1).await
    }

    /// The same, with `queues` receive and transmit queues on every veth (traffic of
    /// different flows then spreads over them, as RSS spreads it on a NIC).
    pub async fn build_with_queues(config: &Config, queues: u32) -> Result<DemoLab> {
        let addrs = DemoAddresses::from_config(config)?;
        netns::sweep_stale();
        let tag = netns::lab_tag();
        let lab = DemoLab {
            legacy: Netns::create(&format!("{tag}-legacy"))?,
            legacy2: match addrs.second_legacy {
                Some(_) => Some(Netns::create(&format!("{tag}-legacy2"))?),
                None => None,
            },
            gateway: Netns::create(&format!("{tag}-gw"))?,
            extranet: Netns::create(&format!("{tag}-ext"))?,
            addrs,
            queues: queues.max(1),
        };
        // From here on an error drops `lab`, which removes whatever was built.
        lab.wire().await?;
        Ok(lab)
    }

    /// Deletes the gateway's interfaces (with their peers) and wires them again under the same
    /// names, as a re-provisioned host or a replaced NIC would: the same names, new ifindexes.
    pub async fn recreate_links(&self) -> Result<()> {
        let gh = self.gateway.netlink()?;
        let mut ports = vec![self.addrs.legacy_port.clone(), self.addrs.uplink_port.clone()];
        ports.extend(self.addrs.second_legacy.as_ref().map(|(p, _, _)| p.clone()));
        for p in &ports {
            let i = link_index(&gh, p).await?;
            gh.link().del(i).execute().await.with_context(|| format!("deleting {p}"))?;
        }
        self.wire().await
    }

    async fn wire(&self) -> Result<()> {
        let a = &self.addrs;
        let (lh, gh, eh) = (self.legacy.netlink()?, self.gateway.netlink()?, self.extranet.netlink()?);
        for h in [&lh, &gh, &eh] {
            up(h, "lo").await?;
        }
        veth(&gh, &a.legacy_port, &self.legacy, &lh, "eth0", self.queues).await?;
        veth(&gh, &a.uplink_port, &self.extranet, &eh, "eth0", self.queues).await?;

        let mut legacy_addrs = vec![IpNet::V4(a.legacy_host), IpNet::V4(Ipv4Net::new(a.unmapped, 32)?)];
        if let Some(i) = a.isolated {
            legacy_addrs.push(IpNet::V4(Ipv4Net::new(i, 32)?));
        }
        let mut server_addrs = vec![IpNet::V4(a.server)];
        if let Some(six) = &a.ipv6 {
            legacy_addrs.push(IpNet::V6(six.legacy_host));
            server_addrs.push(IpNet::V6(six.server));
        }
        host_port(&self.legacy, &lh, &legacy_addrs).await?;
        route(&lh, "0.0.0.0/0".parse()?, a.legacy_gateway).await?;
        if let Some(six) = &a.ipv6 {
            route6(&lh, "::/0".parse()?, six.legacy_gateway).await?;
        }

        if let (Some(ns), Some((port, host, gw))) = (&self.legacy2, &a.second_legacy) {
            let h = ns.netlink()?;
            up(&h, "lo").await?;
            veth(&gh, port, ns, &h, "eth0", self.queues).await?;
            host_port(ns, &h, &[IpNet::V4(*host)]).await?;
            route(&h, "0.0.0.0/0".parse()?, *gw).await?;
        }
        host_port(&self.extranet, &eh, &server_addrs).await?;
        for p in &a.outside_prefixes {
            route(&eh, *p, a.uplink_gateway).await?;
        }
        if let Some(six) = &a.ipv6 {
            for p in &six.outside_prefixes {
                route6(&eh, *p, six.uplink_gateway).await?;
            }
        }
        Ok(())
    }
}
