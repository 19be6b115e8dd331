//! An AF_XDP port (xdpilone): one socket bound to one interface queue, with its own UMEM. Frames
//! the XDP program redirects into the socket's XSKMAP slot arrive here; frames sent are copied
//! into UMEM and transmitted on the same interface. Copy mode, so it works on any driver (veth
//! included) at the cost of a copy per packet — this is the slow path.
//!
//! Frame accounting: the UMEM's frames are either free (in `free`), lent to the kernel's fill
//! ring (to receive into), or in flight on the TX ring (back through the completion ring).

use std::{
    alloc::{Layout, alloc_zeroed, dealloc},
    ffi::CString,
    num::NonZeroU32,
    ptr::NonNull,
};

use anyhow::{Result, anyhow};
use xdpilone::{
    BufIdx, DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, xdp::XdpDesc,
};

/// Frames of UMEM per port; half are kept on the fill ring, half serve transmission. The
/// 2,048 on the fill ring hold 40 ms of frames at 50,000 a second while the worker is busy
/// elsewhere or not scheduled; 512 did not (hutong bench's session capacity lost 0.5% of
/// first packets and replies at that rate on two cores, `fill_ring_empty`).
const FRAMES: u32 = 4096;
const FRAME_SIZE: u32 = 2048;
const RING: u32 = 2048;
/// Frames a socket keeps for transmitting; the rest are lent to the kernel to receive into.
const TX_RESERVE: usize = (FRAMES / 2) as usize;

/// UMEM memory, page-aligned, freed after the UMEM is gone.
struct Area {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: allocated in `AfXdpPort::open` with this layout, and dropped last.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

pub struct AfXdpPort {
    // Field order is drop order: rings and the socket before the UMEM, the UMEM before its memory.
    rx: RingRx,
    tx: RingTx,
    device: DeviceQueue,
    _socket: Socket,
    umem: Umem,
    _area: Area,
    fd: i32,
    free: Vec<u64>,
}

// SAFETY: the raw pointers inside (UMEM area, ring mappings) point at memory this port owns and
// that lives as long as it does; xdpilone's shared parts are `Arc`s and its rings are `Send`.
// Moving the whole port to another thread moves all of it; nothing is shared across threads.
unsafe impl Send for AfXdpPort {}

impl AfXdpPort {
    /// Opens a socket on `ifname` queue `queue`. Its fd goes into the program's XSKMAP.
    pub fn open(ifname: &str, queue: u32) -> Result<AfXdpPort> {
        let layout = Layout::from_size_align((FRAMES * FRAME_SIZE) as usize, 4096)?;
        // SAFETY: non-zero size; freed by `Area::drop`.
        let ptr =
            NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or_else(|| anyhow!("UMEM allocation failed"))?;
        let area = Area { ptr, layout };
        let slice = NonNull::slice_from_raw_parts(ptr, layout.size());
        let config = UmemConfig {
            fill_size: RING,
            complete_size: RING,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page-aligned, FRAMES * FRAME_SIZE bytes, and outlives the UMEM
        // (field order above).
        let umem = unsafe { Umem::new(config, slice) }.map_err(|e| anyhow!("creating the UMEM: {e}"))?;
        let mut info = IfInfo::invalid();
        let name = CString::new(ifname)?;
        info.from_name(&name).map_err(|e| anyhow!("interface {ifname}: {e}"))?;
        info.set_queue(queue);
        let socket =
            Socket::with_shared(&info, &umem).map_err(|e| anyhow!("AF_XDP socket on {ifname}: {e}"))?;
        let device = umem.fq_cq(&socket).map_err(|e| anyhow!("fill/completion rings: {e}"))?;
        let rings =
            SocketConfig { rx_size: NonZeroU32::new(RING), tx_size: NonZeroU32::new(RING), bind_flags: 0 };
        let user = umem.rx_tx(&socket, &rings).map_err(|e| anyhow!("rx/tx rings: {e}"))?;
        let rx = user.map_rx().map_err(|e| anyhow!("mapping the rx ring: {e}"))?;
        let tx = user.map_tx().map_err(|e| anyhow!("mapping the tx ring: {e}"))?;
        umem.bind(&user).map_err(|e| anyhow!("binding to {ifname} queue {queue}: {e}"))?;
        let fd = user.as_raw_fd();
        let free: Vec<u64> = (0..FRAMES).filter_map(|i| umem.frame(BufIdx(i)).map(|c| c.offset)).collect();
        let mut port = AfXdpPort { rx, tx, device, _socket: socket, umem, _area: area, fd, free };
        // All but the transmit reserve lent to the kernel to receive into.
        port.refill();
        Ok(port)
    }

    /// The socket's fd, for the XSKMAP.
    pub fn fd(&self) -> i32 {
        self.fd
    }

    /// The `len` bytes at UMEM address `addr`.
    #[allow(clippy::mut_from_ref)]
    fn bytes(umem: &Umem, addr: u64, len: usize) -> Option<&mut [u8]> {
        let idx = (addr / FRAME_SIZE as u64) as u32;
        let chunk = umem.frame(BufIdx(idx))?;
        let within = (addr - chunk.offset) as usize;
        // SAFETY: the chunk is inside our UMEM; the kernel does not touch a frame we hold.
        let frame = unsafe { &mut *chunk.addr.as_ptr() };
        frame.get_mut(within..within + len)
    }

    /// Receives up to `max` frames, calling `each` with every one, and gives their memory back to
    /// the fill ring.
    pub fn recv(&mut self, max: u32, mut each: impl FnMut(&[u8])) -> usize {
        let mut done = Vec::new();
        {
            let umem = &self.umem;
            let mut rx = self.rx.receive(max);
            while let Some(desc) = rx.read() {
                if let Some(b) = Self::bytes(umem, desc.addr, desc.len as usize) {
                    each(b);
                }
                done.push(desc.addr - desc.addr % FRAME_SIZE as u64);
            }
            rx.release();
        }
        let n = done.len();
        self.free.extend_from_slice(&done);
        self.refill();
        n
    }

    /// Lends the kernel every free frame beyond [`TX_RESERVE`] to receive into. The fill ring
    /// may take fewer than offered, and a frame it did not take must go back to it later:
    /// giving back only the frames just received let the ring drain under overloads, until
    /// every frame sat unused here and the kernel dropped nearly all it received
    /// (`rx_fill_ring_empty_descs`; `tests/e2e_overload.rs`).
    fn refill(&mut self) {
        let spare = self.free.len().saturating_sub(TX_RESERVE);
        if spare == 0 {
            return;
        }
        let start = self.free.len() - spare;
        let mut fill = self.device.fill(spare as u32);
        let put = fill.insert(self.free[start..].iter().copied()) as usize;
        fill.commit();
        self.free.drain(start..start + put);
    }

    /// Queues one frame for transmission; false if no frame or ring slot is free (counted by
    /// the caller as a drop).
    pub fn send(&mut self, frame: &[u8]) -> bool {
        self.reclaim();
        if frame.len() > FRAME_SIZE as usize {
            return false;
        }
        let Some(addr) = self.free.pop() else { return false };
        match Self::bytes(&self.umem, addr, frame.len()) {
            Some(b) => b.copy_from_slice(frame),
            None => return false,
        }
        let mut tx = self.tx.transmit(1);
        if !tx.insert_once(XdpDesc { addr, len: frame.len() as u32, options: 0 }) {
            drop(tx);
            self.free.push(addr);
            return false;
        }
        tx.commit();
        drop(tx);
        // Copy mode needs a kick to transmit.
        self.tx.wake();
        true
    }

    /// The kernel's drop counters for this socket (zero where it cannot say).
    pub fn drops(&self) -> super::SocketDrops {
        let Ok(s) = self.device.statistics_v2() else { return super::SocketDrops::default() };
        // `rx_dropped` counts the frames with no fill-ring frame too.
        let fill_ring_empty = s.rx_fill_ring_empty_descs.min(s.rx_dropped);
        super::SocketDrops {
            rx_ring_full: s.rx_ring_full,
            fill_ring_empty,
            other: s.rx_dropped - fill_ring_empty + s.rx_invalid_descs + s.tx_invalid_descs,
        }
    }

    /// Takes transmitted frames back from the completion ring.
    fn reclaim(&mut self) {
        let mut cq = self.device.complete(RING);
        while let Some(addr) = cq.read() {
            self.free.push(addr);
        }
        cq.release();
    }
}
