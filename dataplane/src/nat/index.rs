//! A compact hash index from a 64-bit key to a session slot: open addressing with linear probing
//! and backward-shift deletion, 4 bytes per bucket (the slot number + 1; 0 is empty). The key is
//! not stored: the caller's `key_of(slot)` recomputes it from the session, which keeps a session
//! within its 64-byte budget. The index is sized once, for the table's maximum, at a load of at
//! most one half, so probes stay short and it never grows on the packet path.

#[derive(Debug)]
pub struct Index {
    buckets: Box<[u32]>,
    mask: usize,
}

#[inline]
fn hash(key: u64) -> usize {
    // Multiplicative hashing (Fibonacci); the high bits are the well-mixed ones.
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize
}

impl Index {
    /// An index for up to `max` entries.
    pub fn new(max: usize) -> Index {
        let n = (max.max(1) * 2).next_power_of_two();
        Index { buckets: vec![0; n].into_boxed_slice(), mask: n - 1 }
    }

    pub fn bytes(&self) -> usize {
        self.buckets.len() * 4
    }

    /// The slot stored under `key`.
    #[inline]
    pub fn get(&self, key: u64, key_of: impl Fn(u32) -> u64) -> Option<u32> {
        let mut i = hash(key) & self.mask;
        loop {
            let b = self.buckets[i];
            if b == 0 {
                return None;
            }
            if key_of(b - 1) == key {
                return Some(b - 1);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Stores `slot` under `key` (which must not be present). The caller keeps the number of
    /// entries within the size given to [`Index::new`], so a free bucket always exists.
    pub fn insert(&mut self, key: u64, slot: u32) {
        let mut i = hash(key) & self.mask;
        while self.buckets[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.buckets[i] = slot + 1;
    }

    /// Removes the entry for `key` (pointing at `slot`), shifting later entries of the probe run
    /// back so no tombstones accumulate.
    pub fn remove(&mut self, key: u64, slot: u32, key_of: impl Fn(u32) -> u64) {
        let mut i = hash(key) & self.mask;
        loop {
            match self.buckets[i] {
                0 => return,
                b if b - 1 == slot => break,
                _ => i = (i + 1) & self.mask,
            }
        }
        // Backward-shift deletion (Knuth's Algorithm R).
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let b = self.buckets[j];
            if b == 0 {
                break;
            }
            let home = hash(key_of(b - 1)) & self.mask;
            // Move b into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                self.buckets[hole] = b;
                hole = j;
            }
        }
        self.buckets[hole] = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any sequence of inserts and removes agrees with a HashMap.
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec((any::<bool>(), 0u64..64), 0..400)) {
            let mut idx = Index::new(64);
            // Slot s holds key keys[s]; slots are reused after removal.
            let mut keys: Vec<Option<u64>> = Vec::new();
            let mut model: HashMap<u64, u32> = HashMap::new();
            for (insert, k) in ops {
                // Colliding keys on purpose: many keys share low bits.
                let key = k * 0x1_0000_0000;
                let key_of = |s: u32, keys: &Vec<Option<u64>>| keys[s as usize].unwrap();
                if insert && !model.contains_key(&key) {
                    let slot = keys.iter().position(|k| k.is_none()).unwrap_or(keys.len());
                    if slot == keys.len() { keys.push(None); }
                    keys[slot] = Some(key);
                    idx.insert(key, slot as u32);
                    model.insert(key, slot as u32);
                } else if let Some(slot) = model.remove(&key) {
                    let snapshot = keys.clone();
                    idx.remove(key, slot, |s| key_of(s, &snapshot));
                    keys[slot as usize] = None;
                }
                for (k, s) in &model {
                    let snapshot = keys.clone();
                    prop_assert_eq!(idx.get(*k, |x| key_of(x, &snapshot)), Some(*s));
                }
            }
        }
    }
}
