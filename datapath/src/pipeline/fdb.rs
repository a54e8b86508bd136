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
//!
//! Learned entries are also counted per port, for the port-security limit
//! `max-macs` ([`Fdb::learn_limited`]): a port at its limit learns nothing
//! new. A refusal depends on the port's count, not on the refused MAC, so
//! each port has a tag of its own ([`Fdb::port_tag`]) that moves whenever
//! an entry leaves the port (aged, flushed, moved, deleted): flows refused
//! by the limit are re-translated as soon as room is made.

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
    /// New MACs not learned because their port had `max-macs` entries.
    pub port_limit: u64,
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
    /// Learned (non-static) entries per destination port.
    per_port: HashMap<PortNo, usize>,
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
    /// The port already holds its `max-macs` learned entries: not learned.
    PortLimit,
}

impl Learned {
    /// The slot now holding the MAC, when there is one.
    pub fn slot(self) -> Option<usize> {
        match self {
            Learned::Known(s) | Learned::New(s) | Learned::Moved(s) => Some(s),
            Learned::Full | Learned::Static | Learned::PortLimit => None,
        }
    }
}

/// The tag bucket of a (MAC, VLAN).
#[inline]
pub fn tag_bucket(mac: u64, vlan: u16) -> u16 {
    let h = (mac ^ (u64::from(vlan) << 48)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((h >> 40) as usize % TAG_BUCKETS) as u16
}

/// The pseudo (MAC, VLAN) whose tag bucket stands for a port's count: above
/// 48 bits, so no real MAC shares the key (buckets may still be shared,
/// which only costs a spurious re-translation).
fn port_tag_key(port: PortNo) -> (u64, u16) {
    ((1 << 48) | u64::from(port), 0xffff)
}

impl Fdb {
    /// An empty table of at most `max` entries aging after `aging_secs`.
    pub fn new(max: usize, aging_secs: u32) -> Fdb {
        Fdb {
            inner: Mutex::new(Inner {
                index: HashMap::with_capacity(max.min(1 << 16)),
                slots: Vec::new(),
                free: Vec::new(),
                per_port: HashMap::new(),
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

    /// The tag of `port`'s learned-entry count (see the module comment).
    #[inline]
    pub fn port_tag(&self, port: PortNo) -> FdbTag {
        let (mac, vlan) = port_tag_key(port);
        self.tag(mac, vlan)
    }

    /// Learned (non-static) entries pointing at `port`.
    pub fn port_count(&self, port: PortNo) -> usize {
        self.inner.lock().per_port.get(&port).copied().unwrap_or(0)
    }

    /// True when learning `mac` on `vlan` behind `port` would be refused by
    /// a per-port limit of `limit` (read-only, for traces).
    pub fn would_hit_port_limit(&self, mac: u64, vlan: u16, port: PortNo, limit: usize) -> bool {
        let inner = self.inner.lock();
        let known_here = inner
            .index
            .get(&(mac, vlan))
            .and_then(|&slot| inner.slots[slot])
            .is_some_and(|s| s.dest.port == port || s.is_static);
        !known_here && inner.per_port.get(&port).copied().unwrap_or(0) >= limit
    }

    /// Learns that `mac` on `vlan` was seen behind `dest` at `now_ms`.
    pub fn learn(&self, mac: u64, vlan: u16, dest: FdbDest, now_ms: u64) -> Learned {
        self.learn_limited(mac, vlan, dest, now_ms, None)
    }

    /// [`Fdb::learn`], refusing a MAC new to `dest.port` when the port
    /// already has `port_limit` learned entries.
    pub fn learn_limited(
        &self,
        mac: u64,
        vlan: u16,
        dest: FdbDest,
        now_ms: u64,
        port_limit: Option<usize>,
    ) -> Learned {
        let mut inner = self.inner.lock();
        let at_limit = |inner: &Inner| {
            port_limit.is_some_and(|l| inner.per_port.get(&dest.port).copied().unwrap_or(0) >= l)
        };
        if let Some(&slot) = inner.index.get(&(mac, vlan)) {
            let s = *inner.slots[slot].as_ref().expect("indexed slot is live");
            if s.dest == dest {
                self.touch(slot, now_ms);
                return Learned::Known(slot);
            }
            if s.is_static {
                return Learned::Static;
            }
            if s.dest.port != dest.port {
                if at_limit(&inner) {
                    inner.stats.port_limit += 1;
                    return Learned::PortLimit;
                }
                self.count_port(&mut inner, s.dest.port, false);
                self.count_port(&mut inner, dest.port, true);
            }
            inner.slots[slot]
                .as_mut()
                .expect("indexed slot is live")
                .dest = dest;
            inner.stats.moved += 1;
            self.last_seen[slot].store(now_ms, Relaxed);
            self.bump(mac, vlan);
            return Learned::Moved(slot);
        }
        if at_limit(&inner) {
            inner.stats.port_limit += 1;
            return Learned::PortLimit;
        }
        self.insert(&mut inner, mac, vlan, dest, false, now_ms)
            .map_or(Learned::Full, Learned::New)
    }

    /// Adjusts a port's learned-entry count; a decrease moves its tag.
    fn count_port(&self, inner: &mut Inner, port: PortNo, up: bool) {
        if up {
            *inner.per_port.entry(port).or_insert(0) += 1;
            return;
        }
        if let Some(n) = inner.per_port.get_mut(&port) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_port.remove(&port);
            }
        }
        let (mac, vlan) = port_tag_key(port);
        self.bump(mac, vlan);
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
        if !is_static {
            self.count_port(inner, dest.port, true);
        }
        self.last_seen[slot].store(now_ms, Relaxed);
        self.bump(mac, vlan);
        Some(slot)
    }

    fn remove_slot(&self, inner: &mut Inner, slot: usize) {
        if let Some(s) = inner.slots[slot].take() {
            inner.index.remove(&(s.mac, s.vlan));
            inner.free.push(slot);
            self.bump(s.mac, s.vlan);
            if !s.is_static {
                self.count_port(inner, s.dest.port, false);
            }
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
    fn port_limit_refuses_new_macs_and_frees_on_age_flush_and_move() {
        let fdb = Fdb::new(64, 1);
        let lim = Some(2);
        assert!(matches!(
            fdb.learn_limited(1, 0, dest(1), 0, lim),
            Learned::New(_)
        ));
        assert!(matches!(
            fdb.learn_limited(2, 0, dest(1), 0, lim),
            Learned::New(_)
        ));
        // Known MACs are still refreshed; a third one is refused.
        assert!(matches!(
            fdb.learn_limited(1, 0, dest(1), 500, lim),
            Learned::Known(_)
        ));
        let tag = fdb.port_tag(1);
        assert_eq!(
            fdb.learn_limited(3, 0, dest(1), 500, lim),
            Learned::PortLimit
        );
        assert!(fdb.would_hit_port_limit(3, 0, 1, 2));
        assert!(!fdb.would_hit_port_limit(1, 0, 1, 2));
        assert_eq!(fdb.stats().port_limit, 1);
        assert_eq!(fdb.stats().overflow, 0);
        // Other ports are not limited by port 1's count.
        assert!(matches!(
            fdb.learn_limited(3, 0, dest(2), 500, lim),
            Learned::New(_)
        ));
        // Static entries do not count.
        assert!(fdb.add_static(9, 0, dest(1), 0));
        assert_eq!(fdb.port_count(1), 2);
        // mac 2 ages (last seen 0); mac 1 was refreshed at 500.
        assert_eq!(fdb.age(1_000), 1);
        assert_eq!(fdb.port_count(1), 1);
        assert!(
            !fdb.tag_valid(tag),
            "the port's tag moves when room is made"
        );
        assert!(matches!(
            fdb.learn_limited(4, 0, dest(1), 1_000, lim),
            Learned::New(_)
        ));
        // Moving mac 3 from port 2 onto full port 1 is refused, mac 1
        // moving away from port 1 frees a place.
        assert_eq!(
            fdb.learn_limited(3, 0, dest(1), 1_000, lim),
            Learned::PortLimit
        );
        assert_eq!(fdb.lookup(3, 0), Some(dest(2)));
        assert!(matches!(
            fdb.learn_limited(1, 0, dest(2), 1_000, lim),
            Learned::Moved(_)
        ));
        assert_eq!((fdb.port_count(1), fdb.port_count(2)), (1, 2));
        fdb.flush_port(2);
        assert_eq!(fdb.port_count(2), 0);
        fdb.flush(false);
        assert_eq!(fdb.port_count(1), 0);
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
