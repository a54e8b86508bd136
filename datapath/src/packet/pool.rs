//! Per-PMD packet buffer pool with size classes.
//!
//! Three classes: standard frames, jumbo frames and whole 64 KiB GSO frames.
//! Each class keeps a free list of boxed buffers; `alloc` pops and `free`
//! pushes, so after warm-up no packet costs a heap allocation. When a class
//! is empty the pool allocates a fresh buffer up to its limit and counts it;
//! past the limit `alloc` fails and the caller drops with a counted reason.

use super::{Packet, HEADROOM, MAX_FRAME};

/// A buffer size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeClass {
    /// Up to 2 KiB frames (MTU 1500 and headers).
    Standard,
    /// Up to 10 KiB frames (MTU 9000).
    Jumbo,
    /// Whole GSO frames up to [`MAX_FRAME`].
    Gso,
}

/// Frame bytes each class takes (after the headroom), smallest first.
pub const SIZE_CLASSES: [(SizeClass, usize); 3] = [
    (SizeClass::Standard, 2048),
    (SizeClass::Jumbo, 10 * 1024),
    (SizeClass::Gso, MAX_FRAME),
];

impl SizeClass {
    /// The smallest class whose frames hold `len` bytes.
    pub fn for_len(len: usize) -> Option<SizeClass> {
        SIZE_CLASSES
            .iter()
            .find(|(_, cap)| *cap >= len)
            .map(|(class, _)| *class)
    }

    /// Frame bytes a buffer of this class holds after the headroom.
    pub fn capacity(self) -> usize {
        SIZE_CLASSES[self.index()].1
    }

    fn index(self) -> usize {
        match self {
            SizeClass::Standard => 0,
            SizeClass::Jumbo => 1,
            SizeClass::Gso => 2,
        }
    }
}

/// Counters of one pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers allocated from the heap, per class (warm-up).
    pub allocated: [u64; 3],
    /// `alloc` calls refused because a class reached its limit.
    pub exhausted: u64,
    /// Buffers currently free, per class.
    pub free: [usize; 3],
}

/// Buffers for one PMD thread (or one test).
#[derive(Debug)]
pub struct PacketPool {
    free: [Vec<Box<[u8]>>; 3],
    limit: [usize; 3],
    outstanding: [usize; 3],
    stats: PoolStats,
}

impl PacketPool {
    /// A pool that holds at most the given number of buffers per class.
    /// Standard buffers are allocated up front; the larger classes on demand.
    pub fn new(standard: usize, jumbo: usize, gso: usize) -> Self {
        let limit = [standard, jumbo, gso];
        let mut pool = PacketPool {
            free: [
                Vec::with_capacity(standard),
                Vec::with_capacity(jumbo),
                Vec::with_capacity(gso),
            ],
            limit,
            outstanding: [0; 3],
            stats: PoolStats::default(),
        };
        for _ in 0..standard {
            pool.free[0].push(Self::new_buffer(SizeClass::Standard));
            pool.stats.allocated[0] += 1;
        }
        pool
    }

    /// A pool sized for one PMD thread: 4096 standard, 256 jumbo and 256
    /// GSO buffers at most (the larger ones allocated only when used).
    pub fn for_pmd() -> Self {
        Self::new(4096, 256, 256)
    }

    fn new_buffer(class: SizeClass) -> Box<[u8]> {
        vec![0u8; HEADROOM + class.capacity()].into_boxed_slice()
    }

    /// A packet whose buffer holds at least `len` frame bytes, or None when
    /// `len` exceeds [`MAX_FRAME`] or the class is exhausted.
    pub fn alloc(&mut self, len: usize) -> Option<Packet> {
        let class = SizeClass::for_len(len)?;
        self.alloc_class(class)
    }

    /// A packet from a given class, or None when the class is exhausted.
    pub fn alloc_class(&mut self, class: SizeClass) -> Option<Packet> {
        let i = class.index();
        if let Some(buf) = self.free[i].pop() {
            self.outstanding[i] += 1;
            return Some(Packet::from_buffer(buf, class));
        }
        if self.outstanding[i] + self.free[i].len() >= self.limit[i] {
            self.stats.exhausted += 1;
            return None;
        }
        self.stats.allocated[i] += 1;
        self.outstanding[i] += 1;
        Some(Packet::from_buffer(Self::new_buffer(class), class))
    }

    /// Returns a packet's buffer to its free list.
    pub fn free(&mut self, mut pkt: Packet) {
        let i = pkt.class.index();
        self.outstanding[i] = self.outstanding[i].saturating_sub(1);
        if self.free[i].len() < self.limit[i] {
            pkt.reset();
            self.free[i].push(pkt.buf);
        }
    }

    /// Returns every packet of an iterator to the pool.
    pub fn free_all(&mut self, pkts: impl IntoIterator<Item = Packet>) {
        for p in pkts {
            self.free(p);
        }
    }

    /// Counters and free-list sizes.
    pub fn stats(&self) -> PoolStats {
        let mut s = self.stats;
        for i in 0..3 {
            s.free[i] = self.free[i].len();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_chosen_by_length() {
        assert_eq!(SizeClass::for_len(60), Some(SizeClass::Standard));
        assert_eq!(SizeClass::for_len(9018), Some(SizeClass::Jumbo));
        assert_eq!(SizeClass::for_len(65_238), Some(SizeClass::Gso));
        assert_eq!(SizeClass::for_len(MAX_FRAME + 1), None);
    }

    #[test]
    fn exhausted_class_is_counted_and_recovers_after_free() {
        let mut pool = PacketPool::new(1, 0, 0);
        let a = pool.alloc(64).unwrap();
        assert!(pool.alloc(64).is_none());
        assert_eq!(pool.stats().exhausted, 1);
        assert!(pool.alloc(9000).is_none());
        pool.free(a);
        assert!(pool.alloc(64).is_some());
    }

    #[test]
    fn gso_buffer_takes_a_whole_64k_frame() {
        let mut pool = PacketPool::new(0, 0, 1);
        let mut p = pool.alloc(65_238).unwrap();
        assert!(p.spare_mut().len() >= 65_238);
        assert!(p.copy_from(&vec![7u8; 65_238]));
        assert_eq!(p.len(), 65_238);
    }
}
