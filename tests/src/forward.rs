//! A test-only forwarder: one thread per direction moves every frame from
//! one port to the other (rx_burst → tx_burst), so port backends can be
//! proven with real traffic before the switch exists. Bounded in time,
//! stopped through an `AtomicBool` (also on drop), sleeping on the ports'
//! fds when idle so it does not steal the CPU the traffic needs.

use datapath::packet::{Batch, GsoType, PacketPool};
use datapath::port::{LinkState, Port};
use datapath::sys::poll::wait_readable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one direction moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Frames taken from the ingress port.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames the egress port accepted.
    pub tx_packets: u64,
    /// Frames that carried a pending segmentation (GSO type set).
    pub gso_frames: u64,
    /// Of those, TCP (v4 or v6) GSO frames.
    pub tcp_gso_frames: u64,
    /// Frames with a partial checksum.
    pub partial_csum_frames: u64,
    /// Largest frame seen.
    pub max_frame: usize,
    /// rx_burst errors.
    pub rx_errors: u64,
    /// tx_burst errors.
    pub tx_errors: u64,
}

/// Two forwarding threads between two ports; stopped and joined on drop.
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<DirectionStats>>,
}

impl Forwarder {
    /// Starts forwarding `a`→`b` and `b`→`a` for at most `limit`.
    pub fn start(a: Arc<dyn Port>, b: Arc<dyn Port>, limit: Duration) -> Forwarder {
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + limit;
        let threads = [(a.clone(), b.clone()), (b, a)]
            .into_iter()
            .map(|(from, to)| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name("test-fwd".into())
                    .spawn(move || forward(&*from, &*to, &stop, deadline))
                    .expect("spawn forwarder")
            })
            .collect();
        Forwarder { stop, threads }
    }

    /// Stops both threads; returns (a→b, b→a) statistics.
    pub fn stop(mut self) -> (DirectionStats, DirectionStats) {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = self
            .threads
            .drain(..)
            .map(|t| t.join().expect("forwarder thread panicked"));
        let ab = out.next().unwrap_or_default();
        let ba = out.next().unwrap_or_default();
        (ab, ba)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn forward(from: &dyn Port, to: &dyn Port, stop: &AtomicBool, deadline: Instant) -> DirectionStats {
    let mut pool = PacketPool::new(1024, 64, 128);
    let mut batch = Batch::new();
    let mut s = DirectionStats::default();
    let fds: Vec<_> = (0..from.rx_queues())
        .filter_map(|q| from.rx_fd(q))
        .collect();
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut moved = 0;
        for q in 0..from.rx_queues() {
            match from.rx_burst(q, &mut pool, &mut batch) {
                Ok(0) => {}
                Ok(n) => {
                    moved += n;
                    s.rx_packets += n as u64;
                    for p in batch.as_slice() {
                        s.rx_bytes += p.len() as u64;
                        s.max_frame = s.max_frame.max(p.len());
                        if p.offload.is_gso() {
                            s.gso_frames += 1;
                        }
                        if matches!(p.offload.gso_type, GsoType::TcpV4 | GsoType::TcpV6) {
                            s.tcp_gso_frames += 1;
                        }
                        if p.offload.needs_csum() {
                            s.partial_csum_frames += 1;
                        }
                    }
                    match to.tx_burst(q, &mut batch, &mut pool) {
                        Ok(sent) => s.tx_packets += sent as u64,
                        Err(_) => s.tx_errors += 1,
                    }
                }
                Err(_) => s.rx_errors += 1,
            }
        }
        if moved == 0 {
            if from.link() != LinkState::Up {
                std::thread::sleep(Duration::from_millis(10));
            } else {
                let _ = wait_readable(&fds, 10);
            }
        }
    }
    pool.free_all(batch.drain());
    s
}
