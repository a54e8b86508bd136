//! AF_XDP single-producer/single-consumer rings (Documentation/networking/
//! af_xdp.rst, "Rings"): a power-of-two array of descriptors plus free-running
//! u32 producer and consumer indices shared with the kernel through mmap.
//!
//! Indices wrap at 2^32 and are compared with wrapping arithmetic; the slot
//! of index `i` is `i & (size - 1)`. Ordering follows the kernel's
//! xsk_queue.h contract: a producer writes descriptors, then publishes the
//! producer index with Release; a consumer loads the producer index with
//! Acquire before reading descriptors and publishes the consumer index with
//! Release after it is done with them. Local cached copies of the peer's
//! index keep the shared cache lines cold until the cached view runs dry.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// `XDP_RING_NEED_WAKEUP` in a ring's flags word.
const NEED_WAKEUP: u32 = 1;

/// An mmap'd region, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; all concurrent access to it goes
// through the ring protocol (atomics) or through frames owned by exactly one
// side at a time.
unsafe impl Send for Mmap {}
// SAFETY: see Send; `Mmap` itself exposes only raw pointers.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `fd` at `offset` (shared, read-write, populated).
    pub(crate) fn map_fd(fd: i32, len: usize, offset: u64) -> io::Result<Self> {
        // SAFETY: a fresh mapping chosen by the kernel; no existing memory is
        // affected. The result is checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                offset as libc::off_t,
            )
        };
        Self::checked(p, len)
    }

    /// Anonymous zeroed memory (UMEM, or a test ring).
    pub(crate) fn anonymous(len: usize) -> io::Result<Self> {
        // SAFETY: anonymous private mapping, no fd, checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Self::checked(p, len)
    }

    fn checked(p: *mut libc::c_void, len: usize) -> io::Result<Self> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p as *mut u8).ok_or_else(|| io::Error::other("mmap returned 0"))?;
        Ok(Mmap { ptr, len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: ptr/len describe a mapping this value created and nobody
        // uses after drop (rings and queues holding pointers into it are
        // dropped with or before it).
        unsafe {
            libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len);
        }
    }
}

/// Where a ring's parts live inside its mapping (`struct xdp_ring_offset`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingLayout {
    pub producer: usize,
    pub consumer: usize,
    pub flags: usize,
    pub desc: usize,
}

/// Shared parts of a ring: pointers into its mapping.
struct RingMem<T> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    _map: Mmap,
}

impl<T: Copy> RingMem<T> {
    /// # Safety
    /// `map` must hold a ring of `size` (a power of two) entries of `T` laid
    /// out as `layout` says, with 4-byte aligned index words.
    unsafe fn new(map: Mmap, layout: RingLayout, size: u32) -> Self {
        debug_assert!(size.is_power_of_two());
        let base = map.as_ptr();
        // SAFETY: offsets come from the kernel (XDP_MMAP_OFFSETS) or from
        // the test layout and lie inside the mapping (caller's contract).
        unsafe {
            RingMem {
                producer: base.add(layout.producer) as *const AtomicU32,
                consumer: base.add(layout.consumer) as *const AtomicU32,
                flags: base.add(layout.flags) as *const AtomicU32,
                descs: base.add(layout.desc) as *mut T,
                mask: size - 1,
                _map: map,
            }
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping owned by self (see new).
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as producer().
        unsafe { &*self.consumer }
    }

    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as producer().
        unsafe { &*self.flags }
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }
}

/// Entries a producer may still write: ring size minus those in flight.
#[inline]
pub(crate) fn free_entries(size: u32, prod: u32, cons: u32) -> u32 {
    size - prod.wrapping_sub(cons)
}

/// Entries a consumer may read.
#[inline]
pub(crate) fn ready_entries(prod: u32, cons: u32) -> u32 {
    prod.wrapping_sub(cons)
}

/// The side of a ring this process produces into (fill, tx).
pub(crate) struct ProducerRing<T> {
    mem: RingMem<T>,
    cached_prod: u32,
    cached_cons: u32,
}

// SAFETY: the ring is used by one thread at a time (it lives behind the
// queue's mutex); the kernel is the only other party and synchronises
// through the atomics.
unsafe impl<T: Send> Send for ProducerRing<T> {}

impl<T: Copy> ProducerRing<T> {
    /// # Safety
    /// As [`RingMem::new`].
    pub(crate) unsafe fn new(map: Mmap, layout: RingLayout, size: u32) -> Self {
        // SAFETY: forwarded caller contract.
        let mem = unsafe { RingMem::new(map, layout, size) };
        let cached_prod = mem.producer().load(Ordering::Relaxed);
        let cached_cons = mem.consumer().load(Ordering::Acquire);
        ProducerRing {
            mem,
            cached_prod,
            cached_cons,
        }
    }

    /// How many of `want` entries can be written now (refreshing the
    /// consumer index only when the cached view is short).
    pub(crate) fn reserve(&mut self, want: u32) -> u32 {
        let size = self.mem.size();
        let mut free = free_entries(size, self.cached_prod, self.cached_cons);
        if free < want {
            self.cached_cons = self.mem.consumer().load(Ordering::Acquire);
            free = free_entries(size, self.cached_prod, self.cached_cons);
        }
        free.min(want)
    }

    /// Writes entry `i` (0-based after the last submitted) of a reservation.
    pub(crate) fn write(&mut self, i: u32, value: T) {
        let slot = self.cached_prod.wrapping_add(i) & self.mem.mask;
        // SAFETY: slot < size, so the write is inside the descriptor array;
        // the entry is reserved (not visible to the kernel until submit).
        unsafe { self.mem.descs.add(slot as usize).write_volatile(value) };
    }

    /// Publishes `n` written entries.
    pub(crate) fn submit(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.mem
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }

    /// True when the kernel asked for a syscall to notice new entries.
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.mem.flags().load(Ordering::Relaxed) & NEED_WAKEUP != 0
    }

    /// Entries submitted but not yet consumed by the kernel.
    pub(crate) fn in_flight(&mut self) -> u32 {
        self.cached_cons = self.mem.consumer().load(Ordering::Acquire);
        ready_entries(self.cached_prod, self.cached_cons)
    }
}

/// The side of a ring this process consumes from (rx, completion).
pub(crate) struct ConsumerRing<T> {
    mem: RingMem<T>,
    cached_prod: u32,
    cached_cons: u32,
}

// SAFETY: as ProducerRing.
unsafe impl<T: Send> Send for ConsumerRing<T> {}

impl<T: Copy> ConsumerRing<T> {
    /// # Safety
    /// As [`RingMem::new`].
    pub(crate) unsafe fn new(map: Mmap, layout: RingLayout, size: u32) -> Self {
        // SAFETY: forwarded caller contract.
        let mem = unsafe { RingMem::new(map, layout, size) };
        let cached_cons = mem.consumer().load(Ordering::Relaxed);
        let cached_prod = mem.producer().load(Ordering::Acquire);
        ConsumerRing {
            mem,
            cached_prod,
            cached_cons,
        }
    }

    /// How many entries (at most `want`) are ready to read.
    pub(crate) fn peek(&mut self, want: u32) -> u32 {
        let mut ready = ready_entries(self.cached_prod, self.cached_cons);
        if ready < want {
            self.cached_prod = self.mem.producer().load(Ordering::Acquire);
            ready = ready_entries(self.cached_prod, self.cached_cons);
        }
        ready.min(want)
    }

    /// Reads entry `i` (0-based after the last released) of a peek.
    pub(crate) fn read(&self, i: u32) -> T {
        let slot = self.cached_cons.wrapping_add(i) & self.mem.mask;
        // SAFETY: slot < size; the entry was published by the producer
        // (Acquire in peek) and is not reused before release.
        unsafe { self.mem.descs.add(slot as usize).read_volatile() }
    }

    /// Gives `n` read entries back to the producer.
    pub(crate) fn release(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.mem
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const LAYOUT: RingLayout = RingLayout {
        producer: 0,
        consumer: 64,
        flags: 128,
        desc: 192,
    };

    /// A producer and a consumer over the same anonymous mapping, with both
    /// indices starting at `start` — the kernel's view is the other side.
    fn pair(size: u32, start: u32) -> (ProducerRing<u64>, ConsumerRing<u64>) {
        let len = 192 + 8 * size as usize;
        // Two mappings of one memfd: each ring owns its own mapping of the
        // same memory, as this process and the kernel do.
        // SAFETY: memfd_create with a NUL-terminated name; checked below.
        let fd = unsafe { libc::memfd_create(c"xskring".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fd is a fresh memfd owned by this function.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: fd is a valid memfd.
        assert_eq!(unsafe { libc::ftruncate(fd, len as libc::off_t) }, 0);
        let a = Mmap::map_fd(fd, len, 0).unwrap();
        let b = Mmap::map_fd(fd, len, 0).unwrap();
        drop(owned);
        // SAFETY: the mapping is `len` >= 192 bytes; index words at 0 and 64.
        unsafe {
            *(a.as_ptr() as *mut u32) = start;
            *(a.as_ptr().add(64) as *mut u32) = start;
        }
        // SAFETY: LAYOUT lies inside `len` bytes; `size` is a power of two.
        let prod = unsafe { ProducerRing::new(a, LAYOUT, size) };
        // SAFETY: as above.
        let cons = unsafe { ConsumerRing::new(b, LAYOUT, size) };
        (prod, cons)
    }

    #[test]
    fn index_arithmetic_wraps_at_u32_max() {
        assert_eq!(free_entries(8, 2, u32::MAX - 1), 4);
        assert_eq!(ready_entries(2, u32::MAX - 1), 4);
        assert_eq!(free_entries(8, 5, 5), 8);
        assert_eq!(ready_entries(5, 5), 0);
    }

    #[test]
    fn producer_stops_at_ring_size_and_resumes_after_release() {
        let (mut p, mut c) = pair(4, 0);
        assert_eq!(p.reserve(10), 4);
        for i in 0..4 {
            p.write(i, 100 + u64::from(i));
        }
        p.submit(4);
        assert_eq!(p.reserve(1), 0, "ring full");
        assert_eq!(c.peek(2), 2);
        assert_eq!((c.read(0), c.read(1)), (100, 101));
        c.release(2);
        assert_eq!(p.reserve(4), 2);
        assert_eq!(p.in_flight(), 2);
    }

    #[test]
    fn entries_cross_the_index_wrap_in_order() {
        let (mut p, mut c) = pair(8, u32::MAX - 2);
        let mut next_in = 0u64;
        let mut next_out = 0u64;
        for _ in 0..10 {
            let n = p.reserve(5);
            for i in 0..n {
                p.write(i, next_in);
                next_in += 1;
            }
            p.submit(n);
            let m = c.peek(3);
            for i in 0..m {
                assert_eq!(c.read(i), next_out);
                next_out += 1;
            }
            c.release(m);
        }
        assert!(next_out > 20);
        assert_eq!(p.in_flight() as u64, next_in - next_out);
    }

    #[test]
    fn need_wakeup_reads_the_flags_word() {
        let (p, _c) = pair(4, 0);
        assert!(!p.needs_wakeup());
        p.mem.flags().store(NEED_WAKEUP, Ordering::Relaxed);
        assert!(p.needs_wakeup());
    }
}
