//! What a config costs in memory before it runs, so that "valid" includes "fits in this machine".
//!
//! Two layers. `Config::validate` refuses what no machine should be asked for, whatever its size
//! (`hutong_config::bounds`). Then [`memory`] estimates what the NAT state takes at capacity, on
//! every worker, and the gateway refuses a config whose estimate does not fit the memory the
//! machine has available, at start and on apply, before anything is allocated.
//!
//! The estimate follows what `nat::Nat::new` and the session table allocate: per worker, the two
//! session indexes (sized for every pool's sessions at once, allocated up front), the session
//! slots (grown as sessions come, counted at capacity), each pool's outside addresses and its
//! share of the free block list.

use super::sessions::Session;
use crate::config::{Config, PoolMode, bounds::addresses};

/// Bytes the NAT state of `config` takes at capacity on `workers` workers.
pub fn memory(config: &Config, workers: u32) -> u64 {
    let workers = workers.max(1) as u64;
    let sessions: u64 = config.nat_pools.iter().map(|p| p.max_sessions as u64).sum();
    // Two open-addressing indexes of u32 buckets, twice the sessions rounded up to a power of two.
    let index = 2 * (sessions.max(1) * 2).next_power_of_two() * 4;
    let slots = sessions * std::mem::size_of::<Session>() as u64;
    let per_worker = index + slots;
    let pools: u64 = config
        .nat_pools
        .iter()
        .map(|p| {
            let addresses = addresses(p);
            let span = (p.ports.last as u64 + 1).saturating_sub(p.ports.first as u64);
            let blocks = addresses * (span / (p.block_size.max(1) as u64));
            let free_list = match p.mode {
                PoolMode::Dynamic => blocks * 4,
                PoolMode::Deterministic { .. } => 0,
            };
            // Every worker expands the addresses; the free list is split between them.
            addresses * 4 * workers + free_list
        })
        .sum();
    per_worker * workers + pools
}

/// Why `config` on `workers` workers does not fit in `available` bytes, if it does not. A config
/// may take three quarters of what is available: the old config's state lives on while an apply
/// builds the new one, and the rest of the machine needs room too.
pub fn does_not_fit(config: &Config, workers: u32, available: u64) -> Option<String> {
    let needs = memory(config, workers);
    (needs > available / 4 * 3).then(|| {
        format!(
            "its NAT state needs about {} MiB at capacity ({} worker(s); see max_sessions and the pools' addresses), \
             more than three quarters of the {} MiB this machine has available",
            needs >> 20,
            workers.max(1),
            available >> 20
        )
    })
}

/// The memory available now (`MemAvailable` in /proc/meminfo), in bytes.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NatPool, bounds::MAX_POOL_SESSIONS};

    fn pool(max_sessions: u32, addresses: &str) -> NatPool {
        NatPool { max_sessions, ..NatPool::defaults("p".into(), 1, 0, vec![addresses.parse().unwrap()]) }
    }

    fn config(pools: Vec<NatPool>) -> Config {
        let mut c: Config = serde_json::from_str(r#"{"gateway": "g", "vrfs": [], "ports": []}"#).unwrap();
        c.nat_pools = pools;
        c
    }

    #[test]
    fn the_estimate_follows_what_the_table_allocates() {
        let c = config(vec![pool(1 << 20, "198.18.0.0/30")]);
        // 2 indexes x 2 Mi buckets x 4 bytes, plus 1 Mi slots.
        let expected = 2 * (2 << 20) * 4 + (1 << 20) * std::mem::size_of::<Session>() as u64;
        assert!(memory(&c, 1) >= expected && memory(&c, 1) < expected + (1 << 20));
        assert!(memory(&c, 4) >= 4 * expected, "every worker has its own table");
        let table = super::super::sessions::Table::new(1 << 20);
        let measured = (table.bytes_per_session() as u64) << 20;
        assert!(memory(&c, 1) >= measured, "{} < {measured}", memory(&c, 1));
    }

    #[test]
    fn a_config_that_does_not_fit_is_named_with_its_cost() {
        let c = config((0..8).map(|_| pool(MAX_POOL_SESSIONS, "198.18.0.0/24")).collect());
        let why =
            does_not_fit(&c, 4, 8 << 30).expect("8 pools of 16 Mi sessions on 4 workers do not fit in 8 GiB");
        assert!(why.contains("MiB at capacity") && why.contains("8192 MiB"), "{why}");
        assert_eq!(does_not_fit(&config(vec![pool(1 << 20, "198.18.0.0/24")]), 1, 8 << 30), None);
    }

    #[test]
    fn this_machine_says_what_it_has() {
        assert!(available().is_some_and(|b| b > 0));
    }
}
