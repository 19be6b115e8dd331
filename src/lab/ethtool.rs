//! The two NIC settings a veth lab needs, through the SIOCETHTOOL ioctl (no `ethtool` binary).
//!
//! - GRO on: a veth accepts frames redirected into it by XDP only if its peer runs NAPI, which
//!   GRO (or an XDP program) turns on.
//! - TX checksum offload off on the hosts: a kernel-built TCP/UDP packet otherwise leaves with a
//!   partial checksum that only its skb knows how to finish; XDP redirect drops the skb, so the
//!   receiver would see a bad checksum. Real NICs deliver complete checksums, so only labs need it.

use std::{ffi::CString, io, os::fd::AsRawFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_SGRO: u32 = 0x2c;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn set(ifname: &str, cmd: u32, on: bool) -> io::Result<()> {
    let cname = CString::new(ifname).map_err(|_| io::Error::other("NUL in interface name"))?;
    let bytes = cname.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::other(format!("interface name {ifname:?} too long")));
    }
    let mut value = EthtoolValue { cmd, data: on as u32 };
    let mut req =
        IfReq { name: [0; libc::IFNAMSIZ], data: (&mut value as *mut EthtoolValue).cast(), _pad: [0; 16] };
    for (d, s) in req.name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    // SAFETY: `req` is a properly laid out struct ifreq whose data points at a live ethtool_value.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Turns GRO on (gives a veth NAPI, so XDP can redirect into it). Call inside the interface's netns.
pub fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    set(ifname, ETHTOOL_SGRO, on)
}

/// Turns TX checksum offload on or off. Call inside the interface's netns.
pub fn set_tx_checksum(ifname: &str, on: bool) -> io::Result<()> {
    set(ifname, ETHTOOL_STXCSUM, on)
}
