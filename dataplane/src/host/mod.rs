//! The gateway's own host stack in the slow path, on smoltcp: it answers ARP and neighbor
//! solicitations, and ICMP echo, for the addresses the kernel cannot answer for. The kernel
//! stays the host stack of the untagged ports' own addresses (it resolves their next hops for
//! the program too); this one serves
//! - VLAN ports (the kernel here has no 802.1Q devices): ARP/NDP and echo for their addresses;
//! - NAT pool and published-service addresses, on any port of their outside VRF: echo always,
//!   ARP where the address is on one of the port's subnets (never proxy ARP for far addresses).
//!
//! Which addresses those are is the engine's to say (its config changes with every apply):
//! the caller passes [`Owns`]. A frame asking for anything else is ignored, as is anything
//! malformed; smoltcp checks every header and checksum before it answers.
//!
//! Two kinds of smoltcp interface do the work. Each port (interface and VLAN) has an Ethernet
//! one with the port's MAC and addresses, for ARP and NDP: their answers go to the asker on the
//! link. Echo has one IP-medium interface for all ports: a request may come from far away, and
//! its reply goes back the way the request came (to the MAC it came from, in its VLAN), as the
//! engine's ICMP errors do, rather than through a second routing table.
//!
//! Neighbors the gateway learns from what VLAN ports hear, and its requests for next hops,
//! are in [`vlan_neighbors`].

#![forbid(unsafe_code)]

pub mod vlan_neighbors;

use std::{collections::VecDeque, net::IpAddr};

use ipnet::IpNet;
use smoltcp::{
    iface::{Config, Interface, SocketSet},
    phy::{self, Device, DeviceCapabilities, Medium},
    time::Instant,
    wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, HardwareAddress, Icmpv4Message, Icmpv4Packet,
        Icmpv6Message, Icmpv6Packet, IpCidr, IpProtocol, Ipv4Packet, Ipv6Packet,
    },
};

pub use vlan_neighbors::{learned, solicit};

use hutong_common::wire::{ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6};

/// What an address is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Its MAC (ARP, neighbor solicitation): only addresses on the port's link.
    Resolve,
    /// An echo reply: any address the gateway holds in the port's VRF.
    Echo,
}

/// Whether the gateway answers for `addr` on the port (interface, VLAN) a frame came from.
pub trait Owns {
    fn owns(&self, iface: usize, vlan: Option<u16>, addr: IpAddr, ask: Ask) -> bool;
}

impl<F: Fn(usize, Option<u16>, IpAddr, Ask) -> bool> Owns for F {
    fn owns(&self, iface: usize, vlan: Option<u16>, addr: IpAddr, ask: Ask) -> bool {
        self(iface, vlan, addr, ask)
    }
}

/// A port the host stack serves.
#[derive(Clone, Debug)]
pub struct PortSpec {
    /// The engine's interface it is on, and its VLAN (`None`: untagged).
    pub iface: usize,
    pub vlan: Option<u16>,
    pub mac: [u8; 6],
    /// Its addresses (with their subnets): whom it answers ARP and NDP from.
    pub addresses: Vec<IpNet>,
}

/// What the host stack did, for the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCounters {
    pub arp_replies: u64,
    pub neighbor_adverts: u64,
    pub echo_replies: u64,
    /// Frames handed to it that it did not answer: not for an address it answers for, not a
    /// request, malformed, or on a port it does not serve.
    pub ignored: u64,
}

pub struct HostStack {
    ports: Vec<LinkStack>,
    echo: Stack,
    counters: HostCounters,
    started: std::time::Instant,
}

/// A port's Ethernet interface (ARP, NDP).
struct LinkStack {
    iface: usize,
    vlan: Option<u16>,
    mac: [u8; 6],
    stack: Stack,
}

/// A smoltcp interface over two queues of frames.
struct Stack {
    iface: Interface,
    device: Queues,
    sockets: SocketSet<'static>,
}

impl Stack {
    /// Runs one frame through the interface: what it sends in answer.
    fn answer(&mut self, frame: Vec<u8>, now: Instant) -> Vec<Vec<u8>> {
        self.device.rx.push_back(frame);
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.device.rx.clear();
        self.device.tx.drain(..).collect()
    }
}

impl HostStack {
    /// Serves `ports`. A port whose MAC is not unicast (smoltcp refuses one) is left out, with a
    /// warning; addresses past smoltcp's eight per interface answer echo but not ARP or NDP.
    pub fn new(ports: &[PortSpec]) -> HostStack {
        let now = Instant::from_micros(0);
        let mut links = Vec::new();
        for p in ports {
            let mac = EthernetAddress(p.mac);
            if !mac.is_unicast() {
                log::warn!("host stack: interface {} has MAC {mac}, not unicast: not served", p.iface);
                continue;
            }
            let mut device = Queues::new(Medium::Ethernet);
            let mut iface = Interface::new(Config::new(HardwareAddress::Ethernet(mac)), &mut device, now);
            // Whether to answer is decided before a frame gets here (`Owns`), so smoltcp may
            // take any destination: pool addresses are no interface's.
            iface.set_any_ip(true);
            iface.update_ip_addrs(|addrs| {
                // A link-local address lets it answer solicitations sent from one.
                let own =
                    p.addresses.iter().map(|n| cidr(*n)).chain([IpCidr::new(link_local(p.mac).into(), 64)]);
                for a in own {
                    if addrs.push(a).is_err() {
                        log::warn!(
                            "host stack: port {}/{:?}: more than 8 addresses; {a} not resolved",
                            p.iface,
                            p.vlan
                        );
                    }
                }
            });
            links.push(LinkStack {
                iface: p.iface,
                vlan: p.vlan,
                mac: p.mac,
                stack: Stack { iface, device, sockets: SocketSet::new(Vec::new()) },
            });
        }
        let mut device = Queues::new(Medium::Ip);
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, now);
        iface.set_any_ip(true);
        let echo = Stack { iface, device, sockets: SocketSet::new(Vec::new()) };
        HostStack {
            ports: links,
            echo,
            counters: HostCounters::default(),
            started: std::time::Instant::now(),
        }
    }

    pub fn counters(&self) -> HostCounters {
        self.counters
    }

    /// A frame the engine handed to the host stack, from engine interface `iface`: the frames
    /// to send back out of `iface` in answer (none, usually one).
    pub fn answer(&mut self, iface: usize, frame: &[u8], owns: &impl Owns) -> Vec<Vec<u8>> {
        let answers = self.answer_inner(iface, frame, owns);
        if answers.is_empty() {
            self.counters.ignored += 1;
        }
        answers
    }

    fn answer_inner(&mut self, iface: usize, frame: &[u8], owns: &impl Owns) -> Vec<Vec<u8>> {
        let now = Instant::from_micros(self.started.elapsed().as_micros() as i64);
        let Some(f) = Frame::parse(frame) else { return Vec::new() };
        let Some(link) = self.ports.iter_mut().find(|l| l.iface == iface && l.vlan == f.vlan) else {
            return Vec::new();
        };
        let owned = |addr: IpAddr, ask| owns.owns(iface, f.vlan, addr, ask);
        match f.asks() {
            Some(Request::Arp(target)) if owned(target, Ask::Resolve) => {
                let out = link.stack.answer(f.untagged(), now);
                self.counters.arp_replies += out.len() as u64;
                out.into_iter().map(|o| retag(o, f.tag)).collect()
            }
            Some(Request::Solicit(target)) if owned(target, Ask::Resolve) => {
                let out = link.stack.answer(f.untagged(), now);
                self.counters.neighbor_adverts += out.len() as u64;
                out.into_iter().map(|o| retag(o, f.tag)).collect()
            }
            Some(Request::Echo(dst)) if owned(dst, Ask::Echo) || dst == IpAddr::V6(link_local(link.mac)) => {
                let out = self.echo.answer(f.payload().to_vec(), now);
                self.counters.echo_replies += out.len() as u64;
                // Back to where the request came from, from the MAC it was sent to.
                out.into_iter()
                    .map(|ip| {
                        let ethertype = if dst.is_ipv4() { ETH_P_IPV4 } else { ETH_P_IPV6 };
                        let mut o = Vec::with_capacity(ETH_HLEN + ip.len());
                        o.extend_from_slice(&f.src);
                        o.extend_from_slice(&link.mac);
                        o.extend_from_slice(&ethertype.to_be_bytes());
                        o.extend_from_slice(&ip);
                        retag(o, f.tag)
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// A frame as it reached the host stack: MACs, its tag, and the rest.
struct Frame<'a> {
    src: [u8; 6],
    /// The tag as it came (TPID, TCI), put back on the answers.
    tag: Option<[u8; 4]>,
    vlan: Option<u16>,
    ethertype: u16,
    frame: &'a [u8],
    /// Where the payload starts.
    l3: usize,
}

/// What a frame asks the host stack for.
enum Request {
    Arp(IpAddr),
    Solicit(IpAddr),
    Echo(IpAddr),
}

impl<'a> Frame<'a> {
    fn parse(frame: &'a [u8]) -> Option<Frame<'a>> {
        let src: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
        let outer = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
        let (tag, ethertype, l3) = if outer == ETH_P_8021Q || outer == ETH_P_8021AD {
            let tag: [u8; 4] = frame.get(12..16)?.try_into().ok()?;
            (Some(tag), u16::from_be_bytes(frame.get(16..18)?.try_into().ok()?), ETH_HLEN + 4)
        } else {
            (None, outer, ETH_HLEN)
        };
        let vlan = tag.map(|t| u16::from_be_bytes([t[2], t[3]]) & 0x0fff);
        Some(Frame { src, tag, vlan, ethertype, frame, l3 })
    }

    fn payload(&self) -> &'a [u8] {
        &self.frame[self.l3..]
    }

    /// The frame without its tag, as the port's smoltcp interface reads it.
    fn untagged(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(self.frame.len());
        f.extend_from_slice(&self.frame[..12]);
        f.extend_from_slice(&self.ethertype.to_be_bytes());
        f.extend_from_slice(self.payload());
        f
    }

    /// The request, if it is one the host stack answers: an ARP request, a neighbor
    /// solicitation, an echo request to a unicast address.
    fn asks(&self) -> Option<Request> {
        let p = self.payload();
        match self.ethertype {
            ETH_P_ARP => {
                let arp = ArpRepr::parse(&ArpPacket::new_checked(p).ok()?).ok()?;
                let ArpRepr::EthernetIpv4 { operation: ArpOperation::Request, target_protocol_addr, .. } =
                    arp
                else {
                    return None;
                };
                Some(Request::Arp(IpAddr::V4(target_protocol_addr)))
            }
            ETH_P_IPV4 => {
                let ip = Ipv4Packet::new_checked(p).ok()?;
                let dst = ip.dst_addr();
                if ip.next_header() != IpProtocol::Icmp
                    || dst.is_broadcast()
                    || dst.is_multicast()
                    || dst.is_unspecified()
                    || ip.frag_offset() != 0
                {
                    return None;
                }
                let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
                (icmp.msg_type() == Icmpv4Message::EchoRequest).then_some(Request::Echo(IpAddr::V4(dst)))
            }
            ETH_P_IPV6 => {
                let ip = Ipv6Packet::new_checked(p).ok()?;
                if ip.next_header() != IpProtocol::Icmpv6 {
                    return None;
                }
                let icmp = Icmpv6Packet::new_checked(ip.payload()).ok()?;
                match icmp.msg_type() {
                    Icmpv6Message::NeighborSolicit => {
                        // The target address follows the type, code, checksum and reserved word.
                        let target: [u8; 16] = ip.payload().get(8..24)?.try_into().ok()?;
                        Some(Request::Solicit(IpAddr::V6(target.into())))
                    }
                    Icmpv6Message::EchoRequest
                        if !ip.dst_addr().is_multicast() && !ip.dst_addr().is_unspecified() =>
                    {
                        Some(Request::Echo(IpAddr::V6(ip.dst_addr())))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Puts the request's tag (if it had one) back on an untagged answer.
fn retag(frame: Vec<u8>, tag: Option<[u8; 4]>) -> Vec<u8> {
    let Some(tag) = tag else { return frame };
    let mut f = Vec::with_capacity(frame.len() + 4);
    f.extend_from_slice(&frame[..12]);
    f.extend_from_slice(&tag);
    f.extend_from_slice(&frame[12..]);
    f
}

fn cidr(n: IpNet) -> IpCidr {
    match n {
        IpNet::V4(n) => IpCidr::new(n.addr().into(), n.prefix_len()),
        IpNet::V6(n) => IpCidr::new(n.addr().into(), n.prefix_len()),
    }
}

/// The port's modified EUI-64 link-local address (RFC 4291 appendix A).
fn link_local(mac: [u8; 6]) -> std::net::Ipv6Addr {
    let m = mac;
    std::net::Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// smoltcp's device: frames in, frames out.
struct Queues {
    medium: Medium,
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

impl Queues {
    fn new(medium: Medium) -> Queues {
        Queues { medium, rx: VecDeque::new(), tx: VecDeque::new() }
    }
}

impl Device for Queues {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        // An answer is no longer than its request, which fitted the port.
        caps.max_transmission_unit = 9216;
        caps
    }

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }
}

struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

#[cfg(test)]
mod tests;
