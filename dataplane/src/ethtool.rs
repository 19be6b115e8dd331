//! The NIC settings hutong reads and changes, through the SIOCETHTOOL ioctl (no `ethtool`
//! binary). Each call acts on the interface of that name in the calling thread's namespace.
//!
//! - GRO on, in labs: a veth accepts frames redirected into it by XDP only if its peer runs
//!   NAPI, which GRO (or an XDP program) turns on. GRO off on a port read through a packet
//!   socket: the engine forwards frames as they were on the wire, not aggregates.
//! - TX checksum offload off on the lab's hosts: a kernel-built TCP/UDP packet otherwise leaves
//!   with a partial checksum that only its skb knows how to finish; XDP redirect drops the skb,
//!   so the receiver would see a bad checksum. Real NICs deliver complete checksums.
//! - Channels: how many receive queues a port has, for the slow path's sockets.

use std::{ffi::CString, io, os::fd::AsRawFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

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
    let mut value = EthtoolValue { cmd, data: on as u32 };
    ioctl(ifname, (&mut value as *mut EthtoolValue).cast())
}

/// SIOCETHTOOL on `ifname` with `data`, a live ethtool struct of the kind its `cmd` names.
fn ioctl(ifname: &str, data: *mut libc::c_void) -> io::Result<()> {
    let cname = CString::new(ifname).map_err(|_| io::Error::other("NUL in interface name"))?;
    let bytes = cname.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::other(format!("interface name {ifname:?} too long")));
    }
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], data, _pad: [0; 16] };
    for (d, s) in req.name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
    // SAFETY: `req` is a properly laid out struct ifreq whose data points at a live ethtool
    // struct (the caller's).
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default)]
struct Channels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// The receive queues in use on `ifname` (combined and receive-only channels); 1 where the
/// driver does not say.
pub fn rx_queues(ifname: &str) -> u32 {
    let mut c = Channels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
    match ioctl(ifname, (&mut c as *mut Channels).cast()) {
        Ok(()) => (c.rx_count + c.combined_count).max(1),
        Err(_) => 1,
    }
}

/// Turns GRO on (gives a veth NAPI, so XDP can redirect into it). Call inside the interface's netns.
pub fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    set(ifname, ETHTOOL_SGRO, on)
}

/// Turns TX checksum offload on or off. Call inside the interface's netns.
pub fn set_tx_checksum(ifname: &str, on: bool) -> io::Result<()> {
    set(ifname, ETHTOOL_STXCSUM, on)
}
