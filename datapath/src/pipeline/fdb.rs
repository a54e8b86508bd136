//! The forwarding database of a bridge's NORMAL action: MAC learning keyed
//! by (MAC, VLAN) with aging, a hard size limit and MAC-move detection.
//!
//! Writers (learning in the slow path, aging, the API) take a mutex; the
//! fast path never does. It reads two kinds of lock-free state:
//!
//! * **tags**: [`TAG_BUCKETS`] generation counters; every (MAC, VLAN) hashes
//!   to one. A cached flow that looked up a destination or learned a source
//!   records the bucket and generation it saw; any change to an entry in
//!   that bucket (learn, move, age, delete) bumps the generation and so
//!   invalidates exactly the cached flows that depended on it. Learning a
//!   new MAC therefore invalidates only the flows that flooded towards that
//!   MAC (and the rare hash neighbours), never unrelated traffic.
//! * **last seen**: a timestamp per slot, refreshed by cache hits so that a
//!   MAC whose traffic is served from the caches does not age out.
//!
//! When the table is full a new MAC is not learned (counted) and its frames
//! are flooded; no existing entry is evicted by a newcomer, so a MAC flood
//! from one port cannot push out the others. Aged entries free space.

use crate::flow::PortNo;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Number of invalidation tag buckets.
pub const TAG_BUCKETS: usize = 4096;

/// Default number of entries per bridge.
pub const DEFAULT_FDB_MAX: usize = 8192;

/// Default aging time.
pub const DEFAULT_AGING_SECS: u32 = 300;

/// A dependency of a cached flow on one FDB tag bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbTag {
    /// Bucket index.
    pub bucket: u16,
    /// Generation seen when the flow was translated.
    pub generation: u32,
}

/// Where a learned or static entry sends frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbDest {
    /// Output port.
    pub port: PortNo,
    /// Remote VTEP (IPv4, host order) for entries behind a tunnel port.
    pub remote: Option<u32>,
}

/// One entry, as reported by [`Fdb::entries`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdbEntryInfo {
    /// MAC address.
    pub mac: [u8; 6],
    /// VLAN (0 = untagged).
    pub vlan: u16,
    /// Destination.
    pub dest: FdbDest,
    /// Milliseconds since the MAC was last seen.
    pub age_ms: u64,
    /// Configured, never ages.
    pub is_static: bool,
}

/// FDB counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdbStats {
    /// Entries now.
    pub entries: usize,
    /// New MACs learned.
    pub learned: u64,
    /// MACs seen on a different port than before.
    pub moved: u64,
    /// New MACs not learned because the table was full.
    pub overflow: u64,
    /// Entries removed by aging.
    pub aged: u64,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    mac: u64,
    vlan: u16,
    dest: FdbDest,
    is_static: bool,
}

#[derive(Debug)]
struct Inner {
    index: HashMap<(u64, u16), usize>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    stats: FdbStats,
    aging_ms: u64,
}

/// One bridge's forwarding database.
#[derive(Debug)]
pub struct Fdb {
    inner: Mutex<Inner>,
    last_seen: Box<[AtomicU64]>,
    tags: Box<[AtomicU32]>,
    max: usize,
}

/// Result of a learning attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Already known on this port; refreshed. Carries the slot.
    Known(usize),
    /// Newly learned. Carries the slot.
    New(usize),
    /// Moved from another port. Carries the slot.
    Moved(usize),
    /// Table full: not learned.
    Full,
    /// A static entry points elsewhere: not overridden.
    Static,
}

impl Learned {
    /// The slot now holding the MAC, when there is one.
    pub fn slot(self) -> Option<usize> {
        match self {
            Learned::Known(s) | Learned::New(s) | Learned::Moved(s) => Some(s),
            Learned::Full | Learned::Static => None,
        }
    }
}

/// The tag bucket of a (MAC, VLAN).
#[inline]
pub fn tag_bucket(mac: u64, vlan: u16) -> u16 {
    let h = (mac ^ (u64::from(vlan) << 48)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((h >> 40) as usize % TAG_BUCKETS) as u16
}

impl Fdb {
    /// An empty table of at most `max` entries aging after `aging_secs`.
    pub fn new(max: usize, aging_secs: u32) -> Fdb {
        Fdb {
            inner: Mutex::new(Inner {
                index: HashMap::with_capacity(max.min(1 << 16)),
                slots: Vec::new(),
                free: Vec::new(),
                stats: FdbStats::default(),
                aging_ms: u64::from(aging_secs) * 1000,
            }),
            last_seen: (0..max).map(|_| AtomicU64::new(0)).collect(),
            tags: (0..TAG_BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            max,
        }
    }

    /// Capacity.
    pub fn max_entries(&self) -> usize {
        self.max
    }

    /// Sets the aging time.
    pub fn set_aging(&self, secs: u32) {
        self.inner.lock().aging_ms = u64::from(secs) * 1000;
    }

    /// The current tag of a (MAC, VLAN), for a cached flow to remember.
    #[inline]
    pub fn tag(&self, mac: u64, vlan: u16) -> FdbTag {
        let bucket = tag_bucket(mac, vlan);
        FdbTag {
            bucket,
            generation: self.tags[bucket as usize].load(Relaxed),
        }
    }

    /// True when nothing in the tag's bucket changed since it was taken.
    #[inline]
    pub fn tag_valid(&self, tag: FdbTag) -> bool {
        self.tags[tag.bucket as usize].load(Relaxed) == tag.generation
    }

    /// Refreshes a slot's last-seen time (fast path, lock-free).
    #[inline]
    pub fn touch(&self, slot: usize, now_ms: u64) {
        if let Some(ts) = self.last_seen.get(slot) {
            if ts.load(Relaxed) < now_ms {
                ts.store(now_ms, Relaxed);
            }
        }
    }

    fn bump(&self, mac: u64, vlan: u16) {
        self.tags[tag_bucket(mac, vlan) as usize].fetch_add(1, Relaxed);
    }

    /// Looks up where (MAC, VLAN) lives.
    pub fn lookup(&self, mac: u64, vlan: u16) -> Option<FdbDest> {
        let inner = self.inner.lock();
        let slot = *inner.index.get(&(mac, vlan))?;
        inner.slots[slot].map(|s| s.dest)
    }

    /// Learns that `mac` on `vlan` was seen behind `dest` at `now_ms`.
    pub fn learn(&self, mac: u64, vlan: u16, dest: FdbDest, now_ms: u64) -> Learned {
        let mut inner = self.inner.lock();
        if let Some(&slot) = inner.index.get(&(mac, vlan)) {
            let s = inner.slots[slot].as_mut().expect("indexed slot is live");
            if s.dest == dest {
                self.touch(slot, now_ms);
                return Learned::Known(slot);
            }
            if s.is_static {
                return Learned::Static;
            }
            s.dest = dest;
            inner.stats.moved += 1;
            self.last_seen[slot].store(now_ms, Relaxed);
            self.bump(mac, vlan);
            return Learned::Moved(slot);
        }
        self.insert(&mut inner, mac, vlan, dest, false, now_ms)
            .map_or(Learned::Full, Learned::New)
    }

    fn insert(
        &self,
        inner: &mut Inner,
        mac: u64,
        vlan: u16,
        dest: FdbDest,
        is_static: bool,
        now_ms: u64,
    ) -> Option<usize> {
        let slot = match inner.free.pop() {
            Some(s) => s,
            None if inner.slots.len() < self.max => {
                inner.slots.push(None);
                inner.slots.len() - 1
            }
            None => {
                inner.stats.overflow += 1;
                return None;
            }
        };
        inner.slots[slot] = Some(Slot {
            mac,
            vlan,
            dest,
            is_static,
        });
        inner.index.insert((mac, vlan), slot);
        inner.stats.learned += u64::from(!is_static);
        self.last_seen[slot].store(now_ms, Relaxed);
        self.bump(mac, vlan);
        Some(slot)
    }

    fn remove_slot(&self, inner: &mut Inner, slot: usize) {
        if let Some(s) = inner.slots[slot].take() {
            inner.index.remove(&(s.mac, s.vlan));
            inner.free.push(slot);
            self.bump(s.mac, s.vlan);
        }
    }

    /// Adds or replaces a static entry. False when the table is full.
    pub fn add_static(&self, mac: u64, vlan: u16, dest: FdbDest, now_ms: u64) -> bool {
        let mut inner = self.inner.lock();
        if let Some(&slot) = inner.index.get(&(mac, vlan)) {
            self.remove_slot(&mut inner, slot);
        }
        self.insert(&mut inner, mac, vlan, dest, true, now_ms)
            .is_some()
    }

    /// Removes an entry. False when there was none.
    pub fn remove(&self, mac: u64, vlan: u16) -> bool {
        let mut inner = self.inner.lock();
        match inner.index.get(&(mac, vlan)).copied() {
            Some(slot) => {
                self.remove_slot(&mut inner, slot);
                true
            }
            None => false,
        }
    }

    /// Removes every learned (non-static) entry, or every entry.
    pub fn flush(&self, include_static: bool) {
        let mut inner = self.inner.lock();
        for slot in 0..inner.slots.len() {
            if inner.slots[slot].is_some_and(|s| include_static || !s.is_static) {
                self.remove_slot(&mut inner, slot);
            }
        }
    }

    /// Removes every entry pointing at `port` (port deleted or down).
    pub fn flush_port(&self, port: PortNo) {
        let mut inner = self.inner.lock();
        for slot in 0..inner.slots.len() {
            if inner.slots[slot].is_some_and(|s| s.dest.port == port) {
                self.remove_slot(&mut inner, slot);
            }
        }
    }

    /// Removes learned entries not seen for the aging time. Returns how many.
    pub fn age(&self, now_ms: u64) -> usize {
        let mut inner = self.inner.lock();
        let aging = inner.aging_ms;
        let mut n = 0;
        for slot in 0..inner.slots.len() {
            let Some(s) = inner.slots[slot] else { continue };
            let seen = self.last_seen[slot].load(Relaxed);
            if !s.is_static && now_ms.saturating_sub(seen) >= aging {
                self.remove_slot(&mut inner, slot);
                n += 1;
            }
        }
        inner.stats.aged += n as u64;
        n
    }

    /// Every entry.
    pub fn entries(&self, now_ms: u64) -> Vec<FdbEntryInfo> {
        let inner = self.inner.lock();
        let mut out: Vec<FdbEntryInfo> = inner
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.map(|s| FdbEntryInfo {
                    mac: crate::flow::mac_from_u64(s.mac),
                    vlan: s.vlan,
                    dest: s.dest,
                    age_ms: now_ms.saturating_sub(self.last_seen[i].load(Relaxed)),
                    is_static: s.is_static,
                })
            })
            .collect();
        out.sort_by_key(|e| (e.vlan, e.mac));
        out
    }

    /// Counters.
    pub fn stats(&self) -> FdbStats {
        let inner = self.inner.lock();
        FdbStats {
            entries: inner.index.len(),
            ..inner.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(port: PortNo) -> FdbDest {
        FdbDest { port, remote: None }
    }

    #[test]
    fn full_table_learns_nothing_new_and_keeps_old_entries() {
        let fdb = Fdb::new(2, 300);
        assert!(matches!(fdb.learn(1, 0, dest(1), 0), Learned::New(_)));
        assert!(matches!(fdb.learn(2, 0, dest(2), 0), Learned::New(_)));
        assert_eq!(fdb.learn(3, 0, dest(3), 0), Learned::Full);
        assert_eq!(fdb.lookup(1, 0), Some(dest(1)));
        assert_eq!(fdb.lookup(3, 0), None);
        assert_eq!(fdb.stats().overflow, 1);
    }

    #[test]
    fn aging_frees_space_and_bumps_the_tag() {
        let fdb = Fdb::new(1, 1);
        fdb.learn(1, 0, dest(1), 0);
        let tag = fdb.tag(1, 0);
        assert_eq!(fdb.age(999), 0);
        fdb.touch(0, 500);
        assert_eq!(fdb.age(1499), 0);
        assert_eq!(fdb.age(1500), 1);
        assert!(!fdb.tag_valid(tag));
        assert!(matches!(fdb.learn(2, 0, dest(2), 1500), Learned::New(_)));
    }

    #[test]
    fn move_is_detected_and_static_entries_are_not_overridden() {
        let fdb = Fdb::new(8, 300);
        fdb.learn(1, 0, dest(1), 0);
        assert!(matches!(fdb.learn(1, 0, dest(2), 1), Learned::Moved(_)));
        assert_eq!(fdb.stats().moved, 1);
        assert!(fdb.add_static(5, 0, dest(3), 0));
        assert_eq!(fdb.learn(5, 0, dest(4), 1), Learned::Static);
        assert_eq!(fdb.lookup(5, 0), Some(dest(3)));
        fdb.flush(false);
        assert_eq!(fdb.lookup(1, 0), None);
        assert_eq!(fdb.lookup(5, 0), Some(dest(3)));
    }

    #[test]
    fn learning_one_mac_leaves_other_buckets_valid() {
        let fdb = Fdb::new(64, 300);
        let others: Vec<FdbTag> = (100..140u64)
            .filter(|m| tag_bucket(*m, 0) != tag_bucket(7, 0))
            .map(|m| fdb.tag(m, 0))
            .collect();
        fdb.learn(7, 0, dest(1), 0);
        assert!(others.iter().all(|t| fdb.tag_valid(*t)));
    }
}
