//! An AF_PACKET port: the fallback where no XDP program runs on an interface (its driver or the
//! site will not have one). A raw packet socket bound to the interface receives a copy of every
//! frame that arrives there, and sends frames out as given.
//!
//! The kernel still receives the frames too; it must not forward them as well. The gateway
//! turns IPv4 forwarding off on such an interface and refuses to run while IPv6 forwarding is
//! on (see `hutong gateway run --io`); the kernel then does not forward them
//! (`ip_error`, `ip6_forward`) and stays the host stack for the interface's own addresses, as
//! it is with XDP.
//!
//! A VLAN tag the kernel took off on arrival (into the skb, as most drivers and veth do) comes
//! back from `PACKET_AUXDATA` and is put back in the frame, so the engine sees the frame as it
//! was on the wire.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result, bail};

/// Not in every libc release: ignore what this host sends itself (Linux 4.20).
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// Larger than any frame of a port (GRO is turned off on these ports; 64 KiB covers a frame
/// that was aggregated anyway, which the engine then refuses as over the MTU).
const BUFFER: usize = 65_536;

pub struct AfPacketPort {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl AsRawFd for AfPacketPort {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl AfPacketPort {
    /// A packet socket on interface `ifindex` (named `ifname`, for messages). With `fanout`,
    /// it joins that fanout group: the kernel spreads the interface's frames over the group's
    /// sockets by flow hash, as RSS spreads them over queues.
    pub fn open(ifname: &str, ifindex: u32, fanout: Option<u16>) -> Result<AfPacketPort> {
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket calls on a fresh fd; every struct passed is fully initialised and
        // its size is given.
        unsafe {
            // Protocol 0 until bound: nothing queues from other interfaces in between.
            let fd =
                libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("packet socket (needs CAP_NET_RAW)");
            }
            let fd = OwnedFd::from_raw_fd(fd);
            for (opt, what) in
                [(libc::PACKET_AUXDATA, "PACKET_AUXDATA"), (PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING")]
            {
                let one: libc::c_int = 1;
                let len = std::mem::size_of_val(&one) as libc::socklen_t;
                if libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    opt,
                    (&one as *const libc::c_int).cast(),
                    len,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("{what} on {ifname}"));
                }
            }
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = all;
            sll.sll_ifindex = ifindex as i32;
            let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            if libc::bind(fd.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), len) != 0 {
                return Err(std::io::Error::last_os_error()).with_context(|| format!("binding to {ifname}"));
            }
            if let Some(group) = fanout {
                let arg: libc::c_int = group as libc::c_int | (libc::PACKET_FANOUT_HASH << 16) as libc::c_int;
                let len = std::mem::size_of_val(&arg) as libc::socklen_t;
                let set = (&arg as *const libc::c_int).cast();
                if libc::setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_FANOUT, set, len) != 0 {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("joining fanout group {group} on {ifname}"));
                }
            }
            Ok(AfPacketPort { fd, buf: vec![0; BUFFER] })
        }
    }

    /// Receives up to `max` frames waiting on the socket, calling `each` with every one (its
    /// VLAN tag back in place).
    pub fn recv(&mut self, max: u32, mut each: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < max as usize {
            let Some((len, tag)) = self.recv_one() else { break };
            n += 1;
            match tag {
                None => each(&self.buf[..len]),
                Some(tag) if len >= 12 => {
                    let mut f = Vec::with_capacity(len + 4);
                    f.extend_from_slice(&self.buf[..12]);
                    f.extend_from_slice(&tag);
                    f.extend_from_slice(&self.buf[12..len]);
                    each(&f);
                }
                Some(_) => {}
            }
        }
        n
    }

    /// One frame into `buf`: its length and the tag the kernel took off, if any.
    fn recv_one(&mut self) -> Option<(usize, Option<[u8; 4]>)> {
        let mut cmsg = [0u64; 16];
        let mut iov = libc::iovec { iov_base: self.buf.as_mut_ptr().cast(), iov_len: self.buf.len() };
        // SAFETY: the message header points at live buffers of the sizes given; control
        // messages are read only within what the kernel reports.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&cmsg);
            let len = libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
            if len <= 0 {
                return None; // EAGAIN: nothing waiting (errors end the round too)
            }
            if msg.msg_flags & libc::MSG_TRUNC != 0 {
                return Some((0, None)); // larger than any frame: skipped
            }
            let mut tag = None;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    let aux = (libc::CMSG_DATA(c) as *const libc::tpacket_auxdata).read_unaligned();
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                            aux.tp_vlan_tpid
                        } else {
                            hutong_common::wire::ETH_P_8021Q
                        };
                        let [a, b] = tpid.to_be_bytes();
                        let [c, d] = aux.tp_vlan_tci.to_be_bytes();
                        tag = Some([a, b, c, d]);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            Some((len as usize, tag))
        }
    }

    /// Sends one frame as it is; false if the kernel would not take it now (counted by the
    /// caller as a drop).
    pub fn send(&mut self, frame: &[u8]) -> bool {
        // SAFETY: the buffer is valid for its length; the socket is bound to its interface.
        let n = unsafe {
            libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), libc::MSG_DONTWAIT)
        };
        n == frame.len() as isize
    }
}

/// The kernel kept from forwarding what arrives on one interface while hutong reads it from a
/// packet socket: IPv4 forwarding off on the interface until this is dropped, when the setting
/// goes back to what it was (however the gateway stops). IPv6 forwarding must already be off in
/// the namespace (`ip6_forward` asks only that), or this refuses.
pub struct KernelForwardingOff {
    ifname: String,
    before: String,
}

impl KernelForwardingOff {
    pub fn on(ifname: &str) -> Result<KernelForwardingOff> {
        let v4 = format!("/proc/sys/net/ipv4/conf/{ifname}/forwarding");
        let v6 = "/proc/sys/net/ipv6/conf/all/forwarding";
        if std::fs::read_to_string(v6).is_ok_and(|s| s.trim() != "0") {
            bail!(
                "{v6} is on: the kernel would forward the frames hutong reads from {ifname}'s packet socket as well; \
                 turn it off (sysctl -w net.ipv6.conf.all.forwarding=0) or use AF_XDP"
            );
        }
        let before =
            std::fs::read_to_string(&v4).with_context(|| format!("reading {v4}"))?.trim().to_string();
        std::fs::write(&v4, "0").with_context(|| format!("turning IPv4 forwarding off on {ifname}"))?;
        Ok(KernelForwardingOff { ifname: ifname.to_string(), before })
    }
}

impl Drop for KernelForwardingOff {
    fn drop(&mut self) {
        let v4 = format!("/proc/sys/net/ipv4/conf/{}/forwarding", self.ifname);
        if let Err(e) = std::fs::write(&v4, &self.before) {
            log::warn!("could not put {v4} back to {}: {e}", self.before);
        }
    }
}
