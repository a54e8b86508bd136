//! The exact-match cache (EMC): a small per-PMD table from a full flow key
//! to a megaflow handle, in front of the megaflow cache.
//!
//! Two candidate slots per key (from two halves of the key's hash); a hit
//! needs the whole key equal and the megaflow handle still current. Inserts
//! are probabilistic (one in `insert_inv_prob` misses, as in Open vSwitch)
//! so that a flood of short flows cannot thrash the entries of long ones.

use super::megaflow::MegaflowId;
use crate::flow::FlowKey;

/// Number of EMC entries per PMD.
pub const EMC_ENTRIES: usize = 8192;

#[derive(Clone, Copy, Debug)]
struct Slot {
    hash: u32,
    key: FlowKey,
    flow: MegaflowId,
    valid: bool,
}

/// EMC counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmcStats {
    /// Lookups that hit.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Entries written.
    pub inserts: u64,
}

/// A per-PMD exact-match cache.
#[derive(Debug)]
pub struct Emc {
    slots: Box<[Slot]>,
    mask: usize,
    insert_inv_prob: u32,
    rng: u32,
    stats: EmcStats,
}

impl Emc {
    /// A cache of `entries` slots (rounded up to a power of two; 0
    /// disables it) inserting one in `insert_inv_prob` misses (1 = always).
    pub fn new(entries: usize, insert_inv_prob: u32) -> Self {
        let n = if entries == 0 {
            0
        } else {
            entries.next_power_of_two()
        };
        Emc {
            slots: vec![
                Slot {
                    hash: 0,
                    key: FlowKey::ZERO,
                    flow: MegaflowId::default(),
                    valid: false,
                };
                n
            ]
            .into_boxed_slice(),
            mask: n.saturating_sub(1),
            insert_inv_prob: insert_inv_prob.max(1),
            rng: 0x1234_5678,
            stats: EmcStats::default(),
        }
    }

    #[inline]
    fn candidates(&self, hash: u64) -> [usize; 2] {
        [
            (hash as usize) & self.mask,
            ((hash >> 32) as usize) & self.mask,
        ]
    }

    /// The megaflow handle cached for exactly `key` (`hash` =
    /// `key.hash_with(0)`).
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, hash: u64) -> Option<MegaflowId> {
        if self.slots.is_empty() {
            return None;
        }
        for i in self.candidates(hash) {
            let s = &self.slots[i];
            if s.valid && s.hash == hash as u32 && s.key == *key {
                self.stats.hits += 1;
                return Some(s.flow);
            }
        }
        self.stats.misses += 1;
        None
    }

    /// Maybe remembers `key` → `flow` (probabilistic; see module docs).
    #[inline]
    pub fn maybe_insert(&mut self, key: &FlowKey, hash: u64, flow: MegaflowId) {
        if self.slots.is_empty() {
            return;
        }
        if self.insert_inv_prob > 1 {
            // xorshift32: cheap, good enough to spread inserts.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 17;
            self.rng ^= self.rng << 5;
            if self.rng % self.insert_inv_prob != 0 {
                return;
            }
        }
        let [a, b] = self.candidates(hash);
        // Prefer an empty slot or the one already holding this key.
        let i = if !self.slots[a].valid || self.slots[a].key == *key {
            a
        } else if !self.slots[b].valid || self.slots[b].key == *key {
            b
        } else if self.slots[a].hash < self.slots[b].hash {
            a
        } else {
            b
        };
        self.slots[i] = Slot {
            hash: hash as u32,
            key: *key,
            flow,
            valid: true,
        };
        self.stats.inserts += 1;
    }

    /// Forgets the entry for `key`, if present.
    #[inline]
    pub fn remove(&mut self, key: &FlowKey, hash: u64) {
        if self.slots.is_empty() {
            return;
        }
        for i in self.candidates(hash) {
            if self.slots[i].valid && self.slots[i].key == *key {
                self.slots[i].valid = false;
            }
        }
    }

    /// Forgets everything.
    pub fn flush(&mut self) {
        for s in self.slots.iter_mut() {
            s.valid = false;
        }
    }

    /// Counters.
    pub fn stats(&self) -> EmcStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Field;

    #[test]
    fn hit_needs_the_whole_key() {
        let mut emc = Emc::new(16, 1);
        let mut k = FlowKey::ZERO;
        k.set(Field::TpDst, 80);
        let h = k.hash_with(0);
        let id = MegaflowId {
            slot: 3,
            version: 1,
        };
        emc.maybe_insert(&k, h, id);
        assert_eq!(emc.lookup(&k, h), Some(id));
        let mut k2 = k;
        k2.set(Field::TpSrc, 1);
        assert_eq!(emc.lookup(&k2, k2.hash_with(0)), None);
        emc.remove(&k, h);
        assert_eq!(emc.lookup(&k, h), None);
    }

    #[test]
    fn probabilistic_insert_skips_most_misses() {
        let mut emc = Emc::new(1024, 100);
        for i in 0..1000u64 {
            let mut k = FlowKey::ZERO;
            k.set(Field::TpDst, u128::from(i));
            emc.maybe_insert(&k, k.hash_with(0), MegaflowId::default());
        }
        let n = emc.stats().inserts;
        assert!(n > 0 && n < 100, "{n} inserts");
    }
}
