//! The megaflow cache: tuple-space search over wildcarded flows.
//!
//! Each distinct mask the slow path produced is a subtable: a hash table
//! from the masked key to an entry. A lookup masks the key with each
//! subtable's mask in turn and probes; the first hit wins (megaflows never
//! overlap: each was produced under a mask that makes its answer exact).
//! Subtables are re-ordered by hit count so the busiest masks are probed
//! first. Only the words a mask touches are hashed.
//!
//! Entries live in a slab with a version per slot, so an EMC entry can
//! point at a megaflow and notice when that slot was reused. The cache is
//! bounded ([`MEGAFLOW_MAX`] by default); when full, the entry under a
//! rotating clock hand is evicted (counted).

use super::hash::FlowHasher;
use crate::drop::DropReason;
use crate::flow::{FlowKey, FlowMask, KEY_WORDS};
use crate::pipeline::{DpAction, Fdb, FdbTag, InstalledRule};
use hashbrown::HashTable;
use std::hash::Hasher;
use std::sync::Arc;

/// Default capacity of a megaflow cache (per PMD).
pub const MEGAFLOW_MAX: usize = 65_536;

/// Handle of a megaflow entry: slab slot plus the slot's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MegaflowId {
    /// Slab slot.
    pub slot: u32,
    /// Version of the slot when the handle was made.
    pub version: u32,
}

/// One cached wildcarded flow.
#[derive(Debug)]
pub struct MegaflowEntry {
    /// The masked key.
    pub key: FlowKey,
    /// Its mask.
    pub mask: FlowMask,
    /// What to do with every packet of the flow.
    pub actions: Box<[DpAction]>,
    /// When `actions` send nowhere: the reason to count.
    pub drop: Option<DropReason>,
    /// FDB state the entry depends on (checked on every hit).
    pub tags: Box<[FdbTag]>,
    /// The FDB the tags belong to (None when no tag).
    pub fdb: Option<Arc<Fdb>>,
    /// FDB slot refreshed on each hit (learned source MAC).
    pub src_slot: Option<usize>,
    /// Rules to credit with this flow's packets.
    pub rules: Box<[Arc<InstalledRule>]>,
    /// Packets that used this entry.
    pub packets: u64,
    /// Bytes that used this entry.
    pub bytes: u64,
    /// Last use (ms).
    pub used_ms: u64,
}

impl MegaflowEntry {
    /// True when every FDB dependency is unchanged.
    #[inline]
    pub fn is_current(&self) -> bool {
        match &self.fdb {
            None => true,
            Some(fdb) => self.tags.iter().all(|t| fdb.tag_valid(*t)),
        }
    }
}

/// Megaflow counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MegaflowStats {
    /// Entries now.
    pub entries: usize,
    /// Subtables (distinct masks) now.
    pub subtables: usize,
    /// Lookups that hit.
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Entries evicted because the cache was full.
    pub evictions: u64,
    /// Entries installed.
    pub inserted: u64,
}

#[derive(Debug)]
struct Subtable {
    mask: FlowMask,
    /// Indices of the words the mask touches.
    words: [u8; KEY_WORDS],
    nwords: usize,
    table: HashTable<u32>,
    hits: u64,
}

impl Subtable {
    fn new(mask: FlowMask) -> Self {
        let mut words = [0u8; KEY_WORDS];
        let mut nwords = 0;
        for (i, w) in mask.words.iter().enumerate() {
            if *w != 0 {
                words[nwords] = i as u8;
                nwords += 1;
            }
        }
        // An all-wildcard mask still needs one word to hash (always 0).
        if nwords == 0 {
            nwords = 1;
        }
        Subtable {
            mask,
            words,
            nwords,
            table: HashTable::new(),
            hits: 0,
        }
    }

    /// Hash of the key under this subtable's mask (touched words only).
    #[inline]
    fn hash(&self, key: &FlowKey) -> u64 {
        masked_hash(&self.words[..self.nwords], &self.mask, key)
    }

    #[inline]
    fn masked_eq(&self, entry_key: &FlowKey, key: &FlowKey) -> bool {
        self.words[..self.nwords].iter().all(|&i| {
            let i = i as usize;
            key.words[i] & self.mask.words[i] == entry_key.words[i]
        })
    }
}

/// A per-PMD megaflow cache.
#[derive(Debug)]
pub struct MegaflowCache {
    subtables: Vec<Subtable>,
    slab: Vec<Option<MegaflowEntry>>,
    versions: Vec<u32>,
    /// Which subtable each live slot sits in.
    home: Vec<u32>,
    free: Vec<u32>,
    max: usize,
    clock: usize,
    stats: MegaflowStats,
}

impl MegaflowCache {
    /// An empty cache of at most `max` entries.
    pub fn new(max: usize) -> Self {
        MegaflowCache {
            subtables: Vec::new(),
            slab: Vec::new(),
            versions: Vec::new(),
            home: Vec::new(),
            free: Vec::new(),
            max: max.max(1),
            clock: 0,
            stats: MegaflowStats::default(),
        }
    }

    /// Finds the entry whose masked key matches `key`.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey) -> Option<MegaflowId> {
        for st in &mut self.subtables {
            let h = st.hash(key);
            let slab = &self.slab;
            if let Some(&slot) = st.table.find(h, |&s| {
                slab[s as usize]
                    .as_ref()
                    .is_some_and(|e| st.masked_eq(&e.key, key))
            }) {
                st.hits += 1;
                self.stats.hits += 1;
                return Some(MegaflowId {
                    slot,
                    version: self.versions[slot as usize],
                });
            }
        }
        self.stats.misses += 1;
        None
    }

    /// The entry of a handle, if the slot was not reused since.
    #[inline]
    pub fn get(&self, id: MegaflowId) -> Option<&MegaflowEntry> {
        if self.versions.get(id.slot as usize) != Some(&id.version) {
            return None;
        }
        self.slab[id.slot as usize].as_ref()
    }

    /// Mutable access to an entry (to count hits).
    #[inline]
    pub fn get_mut(&mut self, id: MegaflowId) -> Option<&mut MegaflowEntry> {
        if self.versions.get(id.slot as usize) != Some(&id.version) {
            return None;
        }
        self.slab[id.slot as usize].as_mut()
    }

    /// Installs an entry (its key must already be masked with its mask).
    /// An existing entry with the same mask and key is replaced.
    pub fn insert(&mut self, entry: MegaflowEntry) -> MegaflowId {
        let st_idx = match self.subtables.iter().position(|s| s.mask == entry.mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable::new(entry.mask));
                self.subtables.len() - 1
            }
        };
        // Replace a twin (a racing second miss of the same flow).
        let h = self.subtables[st_idx].hash(&entry.key);
        let existing = {
            let st = &self.subtables[st_idx];
            let slab = &self.slab;
            st.table
                .find(h, |&s| {
                    slab[s as usize]
                        .as_ref()
                        .is_some_and(|e| e.key == entry.key)
                })
                .copied()
        };
        if let Some(slot) = existing {
            self.remove_slot(slot);
        }
        if self.live() >= self.max {
            self.evict_one();
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slab.push(None);
                self.versions.push(0);
                self.home.push(0);
                (self.slab.len() - 1) as u32
            }
        };
        let s = slot as usize;
        self.versions[s] = self.versions[s].wrapping_add(1);
        self.home[s] = st_idx as u32;
        self.slab[s] = Some(entry);
        let slab = &self.slab;
        let st = &mut self.subtables[st_idx];
        let (words, nwords) = (st.words, st.nwords);
        st.table.insert_unique(h, slot, |&other| {
            let e = slab[other as usize].as_ref().expect("indexed slot live");
            masked_hash(&words[..nwords], &e.mask, &e.key)
        });
        self.stats.inserted += 1;
        MegaflowId {
            slot,
            version: self.versions[s],
        }
    }

    fn live(&self) -> usize {
        self.slab.len() - self.free.len()
    }

    fn evict_one(&mut self) {
        let n = self.slab.len();
        for _ in 0..n {
            self.clock = (self.clock + 1) % n;
            if self.slab[self.clock].is_some() {
                self.remove_slot(self.clock as u32);
                self.stats.evictions += 1;
                return;
            }
        }
    }

    /// Removes an entry by handle (no-op when already gone).
    pub fn remove(&mut self, id: MegaflowId) {
        if self.get(id).is_some() {
            self.remove_slot(id.slot);
        }
    }

    fn remove_slot(&mut self, slot: u32) {
        let s = slot as usize;
        let Some(e) = self.slab[s].as_ref() else {
            return;
        };
        let st = &mut self.subtables[self.home[s] as usize];
        let h = st.hash(&e.key);
        if let Ok(found) = st.table.find_entry(h, |&x| x == slot) {
            found.remove();
        }
        self.slab[s] = None;
        self.versions[s] = self.versions[s].wrapping_add(1);
        self.free.push(slot);
    }

    /// Removes everything (new pipeline generation).
    pub fn flush(&mut self) {
        for s in 0..self.slab.len() {
            if self.slab[s].take().is_some() {
                self.versions[s] = self.versions[s].wrapping_add(1);
                self.free.push(s as u32);
            }
        }
        self.subtables.clear();
    }

    /// Re-orders subtables by hits (busiest first) and halves the counts so
    /// the order follows recent traffic. Cheap; call every ~second.
    pub fn sort_subtables(&mut self) {
        // Empty subtables are dropped; `home` indices are rebuilt.
        let mut order: Vec<usize> = (0..self.subtables.len())
            .filter(|&i| !self.subtables[i].table.is_empty())
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.subtables[i].hits));
        if order.len() == self.subtables.len() && order.iter().enumerate().all(|(a, b)| a == *b) {
            for st in &mut self.subtables {
                st.hits /= 2;
            }
            return;
        }
        let mut old: Vec<Option<Subtable>> = self.subtables.drain(..).map(Some).collect();
        let mut remap = vec![u32::MAX; old.len()];
        for (new_idx, &i) in order.iter().enumerate() {
            remap[i] = new_idx as u32;
            let mut st = old[i].take().expect("each subtable once");
            st.hits /= 2;
            self.subtables.push(st);
        }
        for (s, e) in self.slab.iter().enumerate() {
            if e.is_some() {
                self.home[s] = remap[self.home[s] as usize];
            }
        }
    }

    /// Every live entry (for `dump-cache` and stats pushes).
    pub fn entries(&self) -> impl Iterator<Item = (MegaflowId, &MegaflowEntry)> {
        self.slab.iter().enumerate().filter_map(|(s, e)| {
            e.as_ref().map(|e| {
                (
                    MegaflowId {
                        slot: s as u32,
                        version: self.versions[s],
                    },
                    e,
                )
            })
        })
    }

    /// Counters.
    pub fn stats(&self) -> MegaflowStats {
        MegaflowStats {
            entries: self.live(),
            subtables: self.subtables.len(),
            ..self.stats
        }
    }
}

/// Hash of `key` under `mask`, reading only the words in `words`.
#[inline]
fn masked_hash(words: &[u8], mask: &FlowMask, key: &FlowKey) -> u64 {
    let mut h = FlowHasher::default();
    for &i in words {
        let i = i as usize;
        h.write_u64(key.words[i] & mask.words[i]);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Field;

    fn entry(key: FlowKey, mask: FlowMask, port: u32) -> MegaflowEntry {
        MegaflowEntry {
            key: key.masked(&mask),
            mask,
            actions: vec![DpAction::Output(port)].into_boxed_slice(),
            drop: None,
            tags: Box::new([]),
            fdb: None,
            src_slot: None,
            rules: Box::new([]),
            packets: 0,
            bytes: 0,
            used_ms: 0,
        }
    }

    fn key(in_port: u32, tp_dst: u16) -> FlowKey {
        let mut k = FlowKey::ZERO;
        k.set(Field::InPort, u128::from(in_port));
        k.set(Field::TpDst, u128::from(tp_dst));
        k.set(Field::TpSrc, 999);
        k
    }

    #[test]
    fn wildcarded_bits_do_not_affect_hits() {
        let mut c = MegaflowCache::new(16);
        let mut mask = FlowKey::ZERO;
        mask.set_exact(Field::InPort);
        let id = c.insert(entry(key(1, 80), mask, 7));
        assert_eq!(c.lookup(&key(1, 443)), Some(id));
        assert_eq!(c.lookup(&key(2, 80)), None);
        assert_eq!(c.get(id).unwrap().actions[0], DpAction::Output(7));
    }

    #[test]
    fn full_cache_evicts_and_stale_handles_are_refused() {
        let mut c = MegaflowCache::new(2);
        let mut mask = FlowKey::ZERO;
        mask.set_exact(Field::InPort);
        let a = c.insert(entry(key(1, 0), mask, 1));
        let _b = c.insert(entry(key(2, 0), mask, 2));
        let _c = c.insert(entry(key(3, 0), mask, 3));
        assert_eq!(c.stats().evictions, 1);
        assert_eq!(c.stats().entries, 2);
        let gone = [a, _b].iter().filter(|id| c.get(**id).is_none()).count();
        assert_eq!(gone, 1);
    }

    #[test]
    fn subtables_survive_reordering() {
        let mut c = MegaflowCache::new(64);
        let mut m1 = FlowKey::ZERO;
        m1.set_exact(Field::InPort);
        let mut m2 = m1;
        m2.set_exact(Field::TpDst);
        c.insert(entry(key(1, 0), m1, 1));
        let id2 = c.insert(entry(key(2, 22), m2, 2));
        for _ in 0..10 {
            assert_eq!(c.lookup(&key(2, 22)), Some(id2));
        }
        c.sort_subtables();
        assert_eq!(c.lookup(&key(2, 22)), Some(id2));
        c.remove(id2);
        assert_eq!(c.lookup(&key(2, 22)), None);
        assert!(c.lookup(&key(1, 5)).is_some());
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;
    use crate::flow::Field;

    #[test]
    fn many_entries_under_one_mask_are_all_kept() {
        let mut c = MegaflowCache::new(1024);
        let mut mask = FlowKey::ZERO;
        mask.set_exact(Field::InPort);
        mask.set(Field::NwSrc, 0xffff_ffff);
        for i in 0..100u32 {
            let mut k = FlowKey::ZERO;
            k.set(Field::InPort, 1);
            k.set(Field::NwSrc, u128::from(0x0a01_0000 + i));
            c.insert(MegaflowEntry {
                key: k.masked(&mask),
                mask,
                actions: Box::new([]),
                drop: None,
                tags: Box::new([]),
                fdb: None,
                src_slot: None,
                rules: Box::new([]),
                packets: 0,
                bytes: 0,
                used_ms: 0,
            });
        }
        assert_eq!(c.stats().entries, 100);
    }
}
