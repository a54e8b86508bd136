//! Batched TAP I/O through io_uring: one `io_uring_enter` per burst instead
//! of one `read`/`write` per frame (io_uring(7); `IORING_OP_READ`/`WRITE`).
//!
//! Every request carries `RWF_NOWAIT`, so the kernel completes it inline
//! during submission — with a frame, or EAGAIN when the queue is empty —
//! and never parks it on a poll. That keeps frames in order (requests are
//! issued in submission order) and lets a burst wait for all its
//! completions before the buffers are touched again. Without the flag the
//! kernel arms a poll for an empty queue and later frames can complete
//! out of order (seen on Linux 6.18).

use io_uring::{opcode, types, IoUring};
use parking_lot::Mutex;
use std::io;
use std::os::fd::RawFd;

/// Ring size: one burst of reads or writes at a time.
const RING_ENTRIES: u32 = 64;

/// One ring per TAP queue. The lock is taken once per burst and is
/// uncontended: one PMD polls each rx queue; tx queues are chosen per PMD.
/// A ring that failed is dropped (`None`) and never used again, so no
/// stale submission can ever reach the kernel; the port then falls back
/// to plain system calls for this queue.
pub struct UringQueue {
    ring: Mutex<Option<IoUring>>,
}

impl std::fmt::Debug for UringQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringQueue").finish_non_exhaustive()
    }
}

/// One I/O of a burst: a buffer and its length; the result is written
/// back in place (bytes, or a negative errno).
#[derive(Clone, Copy, Debug)]
pub struct Op {
    /// Start of the buffer.
    pub ptr: *mut u8,
    /// Its length.
    pub len: u32,
    /// Bytes transferred or `-errno`, after the burst.
    pub result: i32,
}

impl Default for Op {
    fn default() -> Self {
        Op {
            ptr: std::ptr::null_mut(),
            len: 0,
            result: 0,
        }
    }
}

/// Whether the ops read into or write from their buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// `IORING_OP_READ`.
    Read,
    /// `IORING_OP_WRITE`.
    Write,
}

impl UringQueue {
    /// A ring for one queue.
    pub fn new() -> io::Result<Self> {
        Ok(UringQueue {
            ring: Mutex::new(Some(IoUring::new(RING_ENTRIES)?)),
        })
    }

    /// Runs every op of `ops` on `fd` in one submission and waits for all
    /// completions; ops beyond the ring size get `-EAGAIN`. An error means
    /// the ring failed (it is dropped): the caller must then treat every
    /// buffer of `ops` as possibly still in use, i.e. leak it.
    ///
    /// # Safety
    /// Each `ptr` must be valid for `len` bytes of writes (`Dir::Read`) or
    /// reads (`Dir::Write`) until this returns, and `fd` must stay open.
    pub unsafe fn run(&self, fd: RawFd, dir: Dir, ops: &mut [Op]) -> io::Result<()> {
        let mut guard = self.ring.lock();
        let Some(ring) = guard.as_mut() else {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        };
        let mut n = 0;
        {
            let mut sq = ring.submission();
            for (i, op) in ops.iter().take(RING_ENTRIES as usize).enumerate() {
                let e = match dir {
                    Dir::Read => opcode::Read::new(types::Fd(fd), op.ptr, op.len)
                        .rw_flags(libc::RWF_NOWAIT)
                        .build(),
                    Dir::Write => opcode::Write::new(types::Fd(fd), op.ptr, op.len)
                        .rw_flags(libc::RWF_NOWAIT)
                        .build(),
                }
                .user_data(i as u64);
                // SAFETY: the caller keeps the buffer valid until every
                // completion is reaped below (or, if the ring fails, for
                // ever: the ring is then dropped with the request).
                if unsafe { sq.push(&e) }.is_err() {
                    break;
                }
                n += 1;
            }
        }
        let mut reaped = 0;
        while reaped < n {
            match ring.submit_and_wait(n - reaped) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                    ) => {}
                Err(e) => {
                    *guard = None;
                    return Err(e);
                }
            }
            for cqe in ring.completion() {
                if let Some(op) = ops.get_mut(cqe.user_data() as usize) {
                    op.result = cqe.result();
                }
                reaped += 1;
            }
        }
        for op in &mut ops[n..] {
            op.result = -libc::EAGAIN;
        }
        Ok(())
    }
}
