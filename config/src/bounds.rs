//! What no machine should be asked for, whatever its size: [`Config::validate`](crate::Config::validate)
//! refuses a pool beyond these (the probes' `max_sessions: 4294967295` and a pool of
//! 100.64.0.0/10). Whether a config fits the machine it runs on is the engine's question
//! (`dataplane::nat::cost`), asked at start and on apply.

use crate::NatPool;

/// The most sessions one pool may hold per worker (16 Mi).
pub const MAX_POOL_SESSIONS: u32 = 1 << 24;
/// The most outside addresses one pool may have (a /16).
pub const MAX_POOL_ADDRESSES: u64 = 1 << 16;

/// The outside addresses of a pool.
pub fn addresses(p: &NatPool) -> u64 {
    p.addresses.iter().map(|a| 1u64 << (32 - a.prefix_len())).sum()
}
