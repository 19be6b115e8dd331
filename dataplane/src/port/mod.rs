//! Ports: where the engine's packets come from and go to. The memory port serves tests and
//! benchmarks; AF_XDP and AF_PACKET ports come with the daemon.

pub mod afxdp;
pub mod memory;
pub mod packet;

pub use memory::MemoryPorts;

/// A socket a slow-path worker reads and writes an interface through.
pub enum PortIo {
    /// Frames the XDP program redirects to it, from one receive queue.
    AfXdp(Box<afxdp::AfXdpPort>),
    /// A copy of every frame the interface receives (or this worker's share of them, in a
    /// fanout group), where no XDP program runs.
    AfPacket(packet::AfPacketPort),
}

impl PortIo {
    /// Receives up to `max` frames, calling `each` with every one.
    pub fn recv(&mut self, max: u32, each: impl FnMut(&[u8])) -> usize {
        match self {
            PortIo::AfXdp(p) => p.recv(max, each),
            PortIo::AfPacket(p) => p.recv(max, each),
        }
    }

    /// The socket, to wait on for frames (`poll` with `POLLIN`).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            PortIo::AfXdp(p) => p.fd(),
            PortIo::AfPacket(p) => std::os::fd::AsRawFd::as_raw_fd(p),
        }
    }

    /// Sends one frame; false if there was no room for it now.
    pub fn send(&mut self, frame: &[u8]) -> bool {
        match self {
            PortIo::AfXdp(p) => p.send(frame),
            PortIo::AfPacket(p) => p.send(frame),
        }
    }
}
