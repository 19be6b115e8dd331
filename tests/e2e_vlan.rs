//! A VLAN port through a running gateway. This kernel has no 802.1Q devices, so no Linux host
//! here can speak VLAN 30: the legacy host is played by a packet socket that sends tagged
//! frames and reads the tag of what comes back (from the packet's auxiliary data, where the
//! kernel moves a received tag). The other side is a real Linux UDP socket on the extranet
//! server. It shows the slow path answering ARP for the VLAN port's address, learning the
//! host, asking for a host it has not heard from, and both engines forwarding tagged traffic
//! through the netmap both ways.

mod common;

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

const VID: u16 = 30;

#[test]
fn a_vlan_port_on_the_xdp_engine() {
    vlan(&[]);
}

#[test]
fn a_vlan_port_on_the_userspace_engine() {
    vlan(&["--engine", "userspace"]);
}

fn vlan(engine: &[&str]) {
    common::require_root("e2e_vlan");
    let mut config = common::demo_config();
    config.ports[0].vlan = Some(VID);
    config.validate().unwrap();
    let site = common::Site::build(&config);
    let lab = &site.lab;
    let (host_mac, gw_mac) = site.rt.block_on(async {
        let h = lab.legacy.netlink().unwrap();
        let g = lab.gateway.netlink().unwrap();
        (
            dataplane::netlink::link(&h, "eth0").await.unwrap(),
            dataplane::netlink::link(&g, &lab.addrs.legacy_port).await.unwrap(),
        )
    });
    let raw = lab.legacy.run(|| RawPort::open(host_mac.ifindex)).unwrap();
    let server = lab
        .extranet
        .run(|| UdpSocket::bind(SocketAddr::new(lab.addrs.server.addr().into(), 7777)).unwrap())
        .unwrap();
    server.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut gw = site.start_gateway_with("gw-vlan", engine);
    gw.wait_ready(&|| Ok(())).unwrap();
    let (me, gw_ip) = (lab.addrs.legacy_host.addr().octets(), lab.addrs.legacy_gateway.octets());

    // ARP for the gateway's address in VLAN 30: the slow path answers, tagged.
    let mut ask = Vec::new();
    PacketBuilder::ethernet2(host_mac.mac, [0xff; 6])
        .arp(
            etherparse::ArpPacket::new(
                etherparse::ArpHardwareId::ETHERNET,
                etherparse::EtherType::IPV4,
                etherparse::ArpOperation::REQUEST,
                &host_mac.mac,
                &me,
                &[0; 6],
                &gw_ip,
            )
            .unwrap(),
        )
        .write(&mut ask)
        .unwrap();
    raw.send(&tag(&ask));
    let reply = raw
        .recv_until(Duration::from_secs(3), |vid, f| {
            vid == Some(VID) && f.get(12..14) == Some(&[8, 6]) && f.get(20..22) == Some(&[0, 2])
        })
        .unwrap_or_else(|| panic!("no tagged ARP reply\n{}", gw.log_text()));
    assert_eq!(&reply[22..28], &gw_mac.mac, "the gateway's MAC");

    // Ping that address: the host stack answers, tagged, from it.
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(host_mac.mac, gw_mac.mac)
        .ipv4(me, gw_ip, 64)
        .icmpv4_echo_request(0x4242, 1)
        .write(&mut ping, b"are you there")
        .unwrap();
    raw.send(&tag(&ping));
    let pong = raw
        .recv_until(Duration::from_secs(3), |vid, f| {
            // Untagged here: the kernel moved the tag into the auxiliary data. ICMP echo reply.
            vid == Some(VID)
                && f.get(12..14) == Some(&[8, 0])
                && f.get(23) == Some(&1)
                && f.get(34) == Some(&0)
        })
        .unwrap_or_else(|| panic!("no tagged echo reply\n{}", gw.log_text()));
    assert_eq!((&pong[26..30], &pong[30..34]), (&gw_ip[..], &me[..]), "from the gateway's address to us");
    assert_eq!(&pong[38..40], &[0x42, 0x42], "our identifier");
    assert_eq!(&pong[42..], b"are you there");
    eprintln!("vlan e2e {engine:?}: the gateway's VLAN address answered ping, tagged {VID}");

    // Tagged UDP out through the netmap; the server's answer comes back tagged. The first host
    // announced itself by its ARP; the second never did, so the gateway must ask for it.
    for host in [me, [me[0], me[1], me[2], me[3] + 1]] {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(host_mac.mac, gw_mac.mac)
            .ipv4(host, lab.addrs.server.addr().octets(), 64)
            .udp(5555, 7777)
            .write(&mut out, b"hello over VLAN 30")
            .unwrap();
        // A host retries; the first datagram may meet a next hop not resolved yet.
        let mut buf = [0u8; 256];
        let mut got = None;
        for attempt in 1..=5 {
            raw.send(&tag(&out));
            if let Ok(x) = server.recv_from(&mut buf) {
                eprintln!("vlan e2e {engine:?}: {host:?} reached the server on attempt {attempt}");
                got = Some(x);
                break;
            }
        }
        let (n, from) = got.unwrap_or_else(|| panic!("nothing arrived\n{}", gw.log_text()));
        assert_eq!(&buf[..n], b"hello over VLAN 30");
        let seen = [198, 18, 20, host[3]];
        assert_eq!(from, SocketAddr::from((seen, 5555)), "as its plan address");
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut back = None;
        while back.is_none() && Instant::now() < deadline {
            server.send_to(b"hello back", from).unwrap();
            back = raw.recv_until(Duration::from_millis(300), |vid, f| {
                if vid == Some(VID) && f.get(12..14) == Some(&[8, 6]) && f.get(20..22) == Some(&[0, 1]) {
                    // The gateway asks for this host: answer as it.
                    if f.get(38..42) == Some(&host[..]) {
                        raw.send(&tag(&arp_reply(host_mac.mac, host, f)));
                    }
                    return false;
                }
                vid == Some(VID) && udp_payload(f).as_deref() == Some(&b"hello back"[..])
            });
        }
        let back = back.unwrap_or_else(|| panic!("no tagged reply for {host:?}\n{}", gw.log_text()));
        eprintln!("vlan e2e {engine:?}: the reply to {host:?} came back tagged {VID}");
        let p = SlicedPacket::from_ethernet(&back).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("IPv4") };
        assert_eq!(ip.header().destination(), host, "translated back");
        assert_eq!(&back[..6], &host_mac.mac);
    }
    gw.stop();
}

/// A frame with the 802.1Q tag of VLAN 30 inserted.
fn tag(f: &[u8]) -> Vec<u8> {
    [&f[..12], &[0x81, 0x00], &VID.to_be_bytes()[..], &f[12..]].concat()
}

/// The answer to an ARP request `ask` (untagged, as a packet socket reads it) for `ip`.
fn arp_reply(mac: [u8; 6], ip: [u8; 4], ask: &[u8]) -> Vec<u8> {
    let (sha, spa) = (&ask[22..28], &ask[28..32]);
    let mut f = [sha, &mac, &[8, 6, 0, 1, 8, 0, 6, 4, 0, 2], &mac, &ip].concat();
    f.extend_from_slice(sha);
    f.extend_from_slice(spa);
    f
}

fn udp_payload(f: &[u8]) -> Option<Vec<u8>> {
    match SlicedPacket::from_ethernet(f).ok()?.transport? {
        TransportSlice::Udp(u) => Some(u.payload().to_vec()),
        _ => None,
    }
}

/// A packet socket on one interface: sends frames as given, receives them with the VLAN tag
/// the kernel took off (PACKET_AUXDATA).
struct RawPort(OwnedFd);

impl RawPort {
    fn open(ifindex: u32) -> RawPort {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket calls on a fresh fd; every struct passed is fully initialised.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32);
            assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as i32;
            let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            assert_eq!(libc::bind(fd.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), len), 0);
            let on: libc::c_int = 1;
            let size = std::mem::size_of::<libc::c_int>() as u32;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                (&on as *const i32).cast(),
                size,
            );
            let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
            let size = std::mem::size_of::<libc::timeval>() as u32;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size,
            );
            RawPort(fd)
        }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: the buffer is valid for its length; the socket is bound to its interface.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(n, frame.len() as isize, "send: {}", std::io::Error::last_os_error());
    }

    /// The first frame `want` accepts within `limit` (with its VLAN id, if it came tagged).
    fn recv_until(
        &self,
        limit: Duration,
        mut want: impl FnMut(Option<u16>, &[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let mut buf = [0u8; 2048];
            let mut cmsg = [0u64; 16];
            let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
            // SAFETY: msghdr points at live buffers of the sizes given.
            let (n, vid) = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = cmsg.as_mut_ptr().cast();
                msg.msg_controllen = std::mem::size_of_val(&cmsg);
                let n = libc::recvmsg(self.0.as_raw_fd(), &mut msg, 0);
                if n <= 0 {
                    continue;
                }
                let mut vid = None;
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                        let aux = (libc::CMSG_DATA(c) as *const libc::tpacket_auxdata).read_unaligned();
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                            vid = Some(aux.tp_vlan_tci & 0x0fff);
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
                (n as usize, vid)
            };
            if want(vid, &buf[..n]) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    }
}
