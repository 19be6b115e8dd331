//! Ports: where the engine's packets come from and go to. The memory port serves tests and
//! benchmarks; AF_XDP and AF_PACKET ports come with the daemon.

pub mod af_packet;
pub mod afxdp;
pub mod memory;

pub use memory::MemoryPorts;

/// A socket a slow-path worker reads and writes an interface through.
pub enum PortIo {
    /// Frames the XDP program redirects to it, from one receive queue.
    AfXdp(Box<afxdp::AfXdpPort>),
    /// A copy of every frame the interface receives (or this worker's share of them, in a
    /// fanout group), where no XDP program runs.
    AfPacket(af_packet::AfPacketPort),
}

/// Frames the kernel dropped on their way into a socket, by why (AF_XDP's `XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketDrops {
    /// The receive ring was full: the worker fell behind.
    pub rx_ring_full: u64,
    /// No frame on the fill ring to receive into (the worker fell behind, or frames went
    /// missing from the ring).
    pub fill_ring_empty: u64,
    /// Dropped for other reasons, and descriptors the kernel found invalid, both ways.
    pub other: u64,
}

impl SocketDrops {
    pub fn add(&mut self, o: SocketDrops) {
        self.rx_ring_full += o.rx_ring_full;
        self.fill_ring_empty += o.fill_ring_empty;
        self.other += o.other;
    }
}

impl PortIo {
    /// What the kernel dropped on the way into this socket since it opened. AF_PACKET's own
    /// statistics reset when read and are not collected (zero).
    pub fn drops(&self) -> SocketDrops {
        match self {
            PortIo::AfXdp(p) => p.drops(),
            PortIo::AfPacket(_) => SocketDrops::default(),
        }
    }

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
