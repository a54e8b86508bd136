//! Packet capture on a port: copies of what a port receives and sends,
//! queued for a reader (vswitchd streams them to `vswitchctl capture`,
//! which writes the pcap file with the caller's own rights).
//!
//! Capture is off the hot path unless enabled: the PMD checks one
//! `Option` per burst. When enabled it copies each frame (capture is a
//! debugging tool; the allocation per captured frame is accepted). The
//! queue is bounded: frames beyond it are counted as dropped, never block
//! forwarding. The pcap format is the classic libpcap one (magic
//! 0xa1b2c3d4, microsecond timestamps, LINKTYPE_ETHERNET).

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest number of bytes kept of one frame.
pub const SNAPLEN: usize = 65_535;

/// Which way a captured frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received by the port (into the switch).
    Rx,
    /// Sent by the port (out of the switch).
    Tx,
}

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedFrame {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Direction.
    pub dir: Direction,
    /// Length on the wire (before truncation to [`SNAPLEN`]).
    pub orig_len: u32,
    /// The bytes (at most [`SNAPLEN`]).
    pub data: Vec<u8>,
}

/// A bounded queue of captured frames for one port.
#[derive(Debug)]
pub struct CaptureSink {
    queue: Mutex<VecDeque<CapturedFrame>>,
    capacity: usize,
    /// Frames still to capture (the `--count` limit).
    remaining: AtomicU64,
    dropped: AtomicU64,
    captured: AtomicU64,
}

impl CaptureSink {
    /// A sink holding at most `capacity` unread frames that stops after
    /// `count` frames (`u64::MAX`: no limit).
    pub fn new(capacity: usize, count: u64) -> Self {
        CaptureSink {
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            remaining: AtomicU64::new(count),
            dropped: AtomicU64::new(0),
            captured: AtomicU64::new(0),
        }
    }

    /// True once `count` frames were captured.
    pub fn is_done(&self) -> bool {
        self.remaining.load(Relaxed) == 0
    }

    /// Copies one frame in (called by PMDs).
    pub fn push(&self, dir: Direction, frame: &[u8]) {
        // Claim one of the remaining slots; none left means done.
        if self
            .remaining
            .fetch_update(Relaxed, Relaxed, |r| r.checked_sub(1))
            .is_err()
        {
            return;
        }
        let mut q = self.queue.lock();
        if q.len() >= self.capacity {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        let ts_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        q.push_back(CapturedFrame {
            ts_ns,
            dir,
            orig_len: frame.len() as u32,
            data: frame[..frame.len().min(SNAPLEN)].to_vec(),
        });
        self.captured.fetch_add(1, Relaxed);
    }

    /// Takes every queued frame.
    pub fn drain(&self) -> Vec<CapturedFrame> {
        self.queue.lock().drain(..).collect()
    }

    /// Takes at most `max` queued frames, oldest first.
    pub fn drain_max(&self, max: usize) -> Vec<CapturedFrame> {
        let mut q = self.queue.lock();
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    /// Frames waiting to be read.
    pub fn pending(&self) -> usize {
        self.queue.lock().len()
    }

    /// Frames lost because the reader fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Frames captured so far.
    pub fn captured(&self) -> u64 {
        self.captured.load(Relaxed)
    }
}

/// Writes the pcap global header (LINKTYPE_ETHERNET, [`SNAPLEN`]).
pub fn write_pcap_header(w: &mut impl Write) -> io::Result<()> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&(SNAPLEN as u32).to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    w.write_all(&h)
}

/// Writes one pcap record.
pub fn write_pcap_record(w: &mut impl Write, f: &CapturedFrame) -> io::Result<()> {
    let secs = (f.ts_ns / 1_000_000_000) as u32;
    let usecs = ((f.ts_ns % 1_000_000_000) / 1000) as u32;
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&secs.to_le_bytes());
    h[4..8].copy_from_slice(&usecs.to_le_bytes());
    h[8..12].copy_from_slice(&(f.data.len() as u32).to_le_bytes());
    h[12..16].copy_from_slice(&f.orig_len.to_le_bytes());
    w.write_all(&h)?;
    w.write_all(&f.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_limit_and_capacity_are_respected() {
        let sink = CaptureSink::new(2, 3);
        for _ in 0..5 {
            sink.push(Direction::Rx, &[1, 2, 3]);
        }
        assert!(sink.is_done());
        assert_eq!(sink.captured(), 2);
        assert_eq!(sink.dropped(), 1);
        assert_eq!(sink.drain().len(), 2);
    }

    #[test]
    fn pcap_bytes_are_the_classic_format() {
        let mut out = Vec::new();
        write_pcap_header(&mut out).unwrap();
        write_pcap_record(
            &mut out,
            &CapturedFrame {
                ts_ns: 1_500_000_123_000,
                dir: Direction::Tx,
                orig_len: 60,
                data: vec![0xab; 60],
            },
        )
        .unwrap();
        assert_eq!(&out[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(out[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(out[24..28].try_into().unwrap()), 1500);
        assert_eq!(u32::from_le_bytes(out[28..32].try_into().unwrap()), 123);
        assert_eq!(u32::from_le_bytes(out[32..36].try_into().unwrap()), 60);
        assert_eq!(out.len(), 24 + 16 + 60);
    }
}
