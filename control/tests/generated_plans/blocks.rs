//! Address blocks as integers, for carving allocations out of allocations.

use super::*;

/// An IPv4 or IPv6 prefix as integers, for carving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) v6: bool,
    pub(crate) addr: u128,
    pub(crate) len: u8,
}

impl Block {
    pub(crate) fn parse(text: &str) -> Block {
        match text.parse::<IpNet>().expect(text) {
            IpNet::V4(n) => Block { v6: false, addr: u32::from(n.network()).into(), len: n.prefix_len() },
            IpNet::V6(n) => Block { v6: true, addr: u128::from(n.network()), len: n.prefix_len() },
        }
    }

    pub(crate) fn bits(self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    pub(crate) fn size(self) -> u128 {
        1u128.checked_shl(u32::from(self.bits() - self.len)).unwrap_or(u128::MAX)
    }

    /// The block of length `len` that holds `addr`.
    pub(crate) fn at(v6: bool, addr: u128, len: u8) -> Block {
        let b = Block { v6, addr, len: len.min(if v6 { 128 } else { 32 }) };
        let host = u32::from(b.bits() - b.len);
        let mask = u128::MAX.checked_shl(host).unwrap_or(0);
        Block { addr: addr & mask, ..b }
    }

    /// Sub-block number `idx` (wrapping) of length `len` (at least this block's length).
    pub(crate) fn sub(self, len: u8, idx: u128) -> Block {
        let len = len.clamp(self.len, self.bits());
        let count = u32::from(len - self.len);
        let idx = idx & 1u128.checked_shl(count).map_or(u128::MAX, |n| n - 1);
        let off = idx.checked_shl(u32::from(self.bits() - len)).unwrap_or(0);
        Block { v6: self.v6, addr: self.addr + off, len }
    }

    /// The address `n` into the block, as text.
    pub(crate) fn host(self, n: u128) -> String {
        let a = self.addr + n % self.size().max(1);
        if self.v6 { Ipv6Addr::from(a).to_string() } else { Ipv4Addr::from(a as u32).to_string() }
    }

    /// The address `n` into the block with the block's length: an interface address.
    pub(crate) fn iface(self, n: u128) -> String {
        format!("{}/{}", self.host(n), self.len)
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host(0), self.len)
    }
}

/// A block handed out piece by piece, each piece aligned to its size; past the end it starts
/// again at the beginning (an overlap, on purpose).
#[derive(Clone, Copy)]
pub(crate) struct Area {
    pub(crate) block: Block,
    pub(crate) next: u128,
    pub(crate) last: Option<Block>,
}

impl Area {
    pub(crate) fn new(block: Block) -> Area {
        Area { block, next: 0, last: None }
    }

    pub(crate) fn alloc(&mut self, len: u8) -> Block {
        let len = len.clamp(self.block.len, self.block.bits());
        let size = Block { len, ..self.block }.size();
        let mut off = self.next.div_ceil(size) * size;
        if off + size > self.block.size() {
            off = 0;
        }
        self.next = off + size;
        let b = Block { v6: self.block.v6, addr: self.block.addr + off, len };
        self.last = Some(b);
        b
    }
}
