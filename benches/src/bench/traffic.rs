//! Load generator and sink threads. Each enters its namespace (c1 or c2)
//! with setns on its own thread, pins itself to the load core, and opens an
//! AF_PACKET ring there: the generator a TPACKET_V2 TX ring with the qdisc
//! bypassed, the sink a TPACKET_V3 RX ring. The sink counts only frames
//! carrying this run's magic and nonce, each sequence number once, and
//! tracks the longest gap between kernel receive timestamps (a stall of
//! the switch shows up there).

use super::error::{BenchError, Result};
use super::frame::{parse_seq, FrameTemplate};
use super::sys::{self, packet::RxRing, packet::TxRing};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Slots of the generator's ring.
const TX_RING_FRAMES: usize = 1024;
/// Frames queued per `send()` at full rate.
const TX_BATCH: usize = 64;
/// Sequence numbers tracked for duplicates (8 MiB of bitmap); beyond,
/// frames are counted without the duplicate check.
const MAX_TRACKED_SEQ: u64 = 1 << 26;

/// Where a traffic thread runs.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Network namespace name.
    pub netns: String,
    /// Interface inside it.
    pub ifname: String,
    /// Core to pin to.
    pub core: usize,
}

fn spawn_in<T: Send + 'static>(
    name: &str,
    ep: &Endpoint,
    setup: impl FnOnce() -> Result<T> + Send + 'static,
    body: impl FnOnce(T) + Send + 'static,
) -> Result<JoinHandle<()>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<()>>(1);
    let ep2 = ep.clone();
    let join = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let ready = sys::enter_netns(&ep2.netns)
                .and_then(|()| sys::pin(ep2.core))
                .and_then(|()| setup());
            match ready {
                Ok(state) => {
                    let _ = tx.send(Ok(()));
                    body(state);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
        .map_err(|e| BenchError::io(format!("thread {name}"), "spawn", e))?;
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => Ok(join),
        Ok(Err(e)) => {
            let _ = join.join();
            Err(e)
        }
        Err(_) => Err(BenchError::Timeout {
            what: format!("thread {name} start"),
            secs: 10,
        }),
    }
}

#[derive(Default)]
struct GenShared {
    stop: AtomicBool,
    sent: AtomicU64,
    rejected: AtomicU64,
    error: AtomicBool,
}

/// A running generator.
pub struct Generator {
    shared: Arc<GenShared>,
    join: Option<JoinHandle<()>>,
}

/// What a generator did over its whole life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenTotals {
    /// Frames the kernel took.
    pub sent: u64,
    /// Frames the kernel refused.
    pub rejected: u64,
    /// `send()` failed with a hard error.
    pub failed: bool,
}

impl Generator {
    /// Starts sending `template` frames from `ep` as fast as possible, or at
    /// about `rate_pps` when given.
    pub fn start(
        ep: &Endpoint,
        template: FrameTemplate,
        rate_pps: Option<u64>,
    ) -> Result<Generator> {
        let shared = Arc::new(GenShared::default());
        let sh = shared.clone();
        let ifname = ep.ifname.clone();
        let join = spawn_in(
            "bench-gen",
            ep,
            move || TxRing::open(&ifname, TX_RING_FRAMES),
            move |ring| generate(ring, &template, rate_pps, &sh),
        )?;
        Ok(Generator {
            shared,
            join: Some(join),
        })
    }

    /// Frames sent so far (lags by at most one ring).
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Relaxed)
    }

    /// Stops, waits for the queued frames to leave, and returns the totals.
    pub fn stop(mut self) -> GenTotals {
        self.halt();
        GenTotals {
            sent: self.shared.sent.load(Relaxed),
            rejected: self.shared.rejected.load(Relaxed),
            failed: self.shared.error.load(Relaxed),
        }
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.halt();
    }
}

fn generate(mut ring: TxRing, tpl: &FrameTemplate, rate_pps: Option<u64>, sh: &GenShared) {
    let mut seq: u64 = 0;
    let start = Instant::now();
    // Paced mode sends small batches so the pacing gaps stay short.
    let batch = if rate_pps.is_some() { 8 } else { TX_BATCH };
    while !sh.stop.load(Relaxed) && !sys::interrupted() {
        if let Some(rate) = rate_pps {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            if seq >= due {
                let ahead = (seq - due) as f64 / rate as f64;
                std::thread::sleep(Duration::from_secs_f64(ahead.min(0.01)));
                continue;
            }
        }
        let mut queued = 0;
        for _ in 0..batch {
            if !ring.push(|buf| tpl.write(seq, buf)) {
                break;
            }
            seq += 1;
            queued += 1;
        }
        if queued == 0 {
            // Ring full: the kernel is the bottleneck; let the sink (same
            // core) run instead of spinning.
            std::thread::yield_now();
        }
        if ring.kick().is_err() {
            sh.error.store(true, Relaxed);
            break;
        }
        sh.sent.store(ring.sent, Relaxed);
        sh.rejected.store(ring.rejected, Relaxed);
    }
    // Let what is queued leave (bounded), so totals are exact.
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        let _ = ring.kick();
        if ring.pending() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    ring.pending();
    sh.sent.store(ring.sent, Relaxed);
    sh.rejected.store(ring.rejected, Relaxed);
}

#[derive(Default)]
struct SinkShared {
    stop: AtomicBool,
    unique: AtomicU64,
    duplicates: AtomicU64,
    ring_drops: AtomicU64,
    max_gap_ns: AtomicU64,
    reset_gap: AtomicBool,
}

/// A running sink.
pub struct Sink {
    shared: Arc<SinkShared>,
    join: Option<JoinHandle<()>>,
}

/// What a sink counted over its whole life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkTotals {
    /// Distinct generator frames received.
    pub unique: u64,
    /// Generator frames received more than once.
    pub duplicates: u64,
    /// Frames the kernel could not put in the ring (sink too slow).
    pub ring_drops: u64,
}

impl Sink {
    /// Starts counting frames of run `nonce` arriving at `ep`.
    pub fn start(ep: &Endpoint, nonce: u32) -> Result<Sink> {
        let shared = Arc::new(SinkShared::default());
        let sh = shared.clone();
        let ifname = ep.ifname.clone();
        let join = spawn_in(
            "bench-sink",
            ep,
            move || RxRing::open(&ifname, 1 << 18, 32, 2),
            move |ring| sink(ring, nonce, &sh),
        )?;
        Ok(Sink {
            shared,
            join: Some(join),
        })
    }

    /// Distinct generator frames so far.
    pub fn unique(&self) -> u64 {
        self.shared.unique.load(Relaxed)
    }

    /// Starts a new window for [`Sink::max_gap`].
    pub fn reset_gap(&self) {
        self.shared.reset_gap.store(true, Relaxed);
    }

    /// Longest gap between consecutive generator frames since the last
    /// [`Sink::reset_gap`].
    pub fn max_gap(&self) -> Duration {
        Duration::from_nanos(self.shared.max_gap_ns.load(Relaxed))
    }

    /// Stops and returns the totals.
    pub fn stop(mut self) -> SinkTotals {
        self.halt();
        SinkTotals {
            unique: self.shared.unique.load(Relaxed),
            duplicates: self.shared.duplicates.load(Relaxed),
            ring_drops: self.shared.ring_drops.load(Relaxed),
        }
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Counts distinct sequence numbers; a bitmap grown on demand.
#[derive(Default)]
pub struct SeqCounter {
    bits: Vec<u64>,
    /// Distinct sequence numbers seen.
    pub unique: u64,
    /// Repeats.
    pub duplicates: u64,
}

impl SeqCounter {
    /// Records one sequence number.
    pub fn see(&mut self, seq: u64) {
        if seq >= MAX_TRACKED_SEQ {
            self.unique += 1;
            return;
        }
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.bits.len() {
            self.bits.resize((w + 1).next_power_of_two(), 0);
        }
        if self.bits[w] & (1 << b) != 0 {
            self.duplicates += 1;
        } else {
            self.bits[w] |= 1 << b;
            self.unique += 1;
        }
    }
}

fn sink(mut ring: RxRing, nonce: u32, sh: &SinkShared) {
    let mut seqs = SeqCounter::default();
    let mut last_ts = 0u64;
    let mut max_gap = 0u64;
    let _ = ring.drops();
    let mut drops = 0;
    while !sh.stop.load(Relaxed) && !sys::interrupted() {
        if sh.reset_gap.swap(false, Relaxed) {
            max_gap = 0;
            last_ts = 0;
        }
        ring.poll(10, |frame, ts| {
            if let Some(seq) = parse_seq(frame, nonce) {
                seqs.see(seq);
                if last_ts != 0 && ts > last_ts {
                    max_gap = max_gap.max(ts - last_ts);
                }
                last_ts = ts;
            }
        });
        drops += ring.drops();
        sh.unique.store(seqs.unique, Relaxed);
        sh.duplicates.store(seqs.duplicates, Relaxed);
        sh.ring_drops.store(drops, Relaxed);
        sh.max_gap_ns.store(max_gap, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_counted_once() {
        let mut c = SeqCounter::default();
        for s in [0, 1, 1, 64, 1000, 0, MAX_TRACKED_SEQ + 5] {
            c.see(s);
        }
        assert_eq!(c.unique, 5);
        assert_eq!(c.duplicates, 2);
    }
}
