//! In-process port: a pair of bounded rings between the switch and a test
//! or bench "host" holding the [`MemoryPortHandle`].
//!
//! Deterministic and syscall-free, for the in-memory integration tests and
//! the end-to-end criterion benches. Frames cross as owned byte vectors on
//! the host side; on the switch side they live in pool packets like any
//! other port's.

use super::{LinkState, Port, PortCounters, PortError, PortKind, PortStats};
use crate::packet::{Batch, Packet, PacketPool, BATCH_SIZE};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::Arc;

struct Rings {
    /// Host → switch.
    to_switch: VecDeque<Packet>,
    /// Switch → host.
    to_host: VecDeque<Packet>,
    /// Spare buffers for the host side to inject with.
    spare: Vec<Packet>,
}

struct Shared {
    rings: Mutex<Rings>,
    capacity: usize,
}

/// The switch side of an in-process port.
pub struct MemoryPort {
    name: String,
    mac: [u8; 6],
    mtu: u32,
    shared: Arc<Shared>,
    counters: PortCounters,
}

/// The host side of an in-process port: inject frames, collect output.
#[derive(Clone)]
pub struct MemoryPortHandle {
    shared: Arc<Shared>,
}

impl MemoryPort {
    /// A port with rings of `capacity` frames each way.
    pub fn new(name: &str, mac: [u8; 6], capacity: usize) -> (Self, MemoryPortHandle) {
        let shared = Arc::new(Shared {
            rings: Mutex::new(Rings {
                to_switch: VecDeque::with_capacity(capacity),
                to_host: VecDeque::with_capacity(capacity),
                spare: Vec::new(),
            }),
            capacity,
        });
        (
            MemoryPort {
                name: name.to_owned(),
                mac,
                mtu: 1500,
                shared: shared.clone(),
                counters: PortCounters::default(),
            },
            MemoryPortHandle { shared },
        )
    }
}

impl MemoryPortHandle {
    /// Queues a frame towards the switch, copying it into a buffer from
    /// `pool`. False when the ring is full or no buffer was available.
    pub fn inject(&self, frame: &[u8], pool: &mut PacketPool) -> bool {
        let mut r = self.shared.rings.lock();
        if r.to_switch.len() >= self.shared.capacity {
            return false;
        }
        let Some(mut p) = r.spare.pop().or_else(|| pool.alloc(frame.len())) else {
            return false;
        };
        if !p.copy_from(frame) {
            pool.free(p);
            return false;
        }
        r.to_switch.push_back(p);
        true
    }

    /// Queues several frames towards the switch under one lock (a burst, as
    /// a NIC would deliver it). Returns how many were queued; it stops at
    /// the first that does not fit the ring or the pool.
    pub fn inject_burst(&self, frames: &[Vec<u8>], pool: &mut PacketPool) -> usize {
        let mut r = self.shared.rings.lock();
        let mut n = 0;
        for frame in frames {
            if r.to_switch.len() >= self.shared.capacity {
                break;
            }
            let Some(mut p) = r.spare.pop().or_else(|| pool.alloc(frame.len())) else {
                break;
            };
            if !p.copy_from(frame) {
                pool.free(p);
                break;
            }
            r.to_switch.push_back(p);
            n += 1;
        }
        n
    }

    /// Takes every frame the switch sent to this host, as byte vectors.
    pub fn take_frames(&self) -> Vec<Vec<u8>> {
        let mut r = self.shared.rings.lock();
        let r = &mut *r;
        let mut out = Vec::with_capacity(r.to_host.len());
        while let Some(p) = r.to_host.pop_front() {
            out.push(p.data().to_vec());
            r.spare.push(p);
        }
        out
    }

    /// Recycles every frame the switch sent without copying it out; returns
    /// how many there were. The buffers are reused by [`Self::inject`],
    /// which is how the benches run without per-packet allocation.
    pub fn recycle_output(&self) -> usize {
        let mut r = self.shared.rings.lock();
        let r = &mut *r;
        let n = r.to_host.len();
        while let Some(p) = r.to_host.pop_front() {
            r.spare.push(p);
        }
        n
    }

    /// Shows every frame the switch sent to this host to `seen`, then
    /// returns its buffer to `pool` (the switch's): for hosts that mostly
    /// receive, whose buffers would otherwise pile up in this port's spares
    /// while the pool runs dry. Returns how many there were.
    pub fn release_output(&self, pool: &mut PacketPool, mut seen: impl FnMut(&[u8])) -> usize {
        let mut r = self.shared.rings.lock();
        let n = r.to_host.len();
        for p in r.to_host.drain(..) {
            seen(p.data());
            pool.free(p);
        }
        n
    }

    /// Frames waiting towards the switch.
    pub fn pending_to_switch(&self) -> usize {
        self.shared.rings.lock().to_switch.len()
    }
}

impl Port for MemoryPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> PortKind {
        PortKind::Memory
    }

    fn rx_burst(
        &self,
        _rxq: usize,
        _pool: &mut PacketPool,
        out: &mut Batch,
    ) -> Result<usize, PortError> {
        let mut r = self.shared.rings.lock();
        let mut n = 0;
        let mut bytes = 0;
        while !out.is_full() {
            let Some(p) = r.to_switch.pop_front() else {
                break;
            };
            bytes += p.len() as u64;
            // Cannot fail: checked is_full above.
            let _ = out.push(p);
            n += 1;
        }
        self.counters.rx(n as u64, bytes);
        Ok(n)
    }

    fn tx_burst(
        &self,
        _txq: usize,
        pkts: &mut Batch,
        pool: &mut PacketPool,
    ) -> Result<usize, PortError> {
        let mut r = self.shared.rings.lock();
        let mut sent = 0u64;
        let mut bytes = 0u64;
        let mut dropped = 0u64;
        for p in pkts.drain() {
            if r.to_host.len() >= self.shared.capacity {
                dropped += 1;
                pool.free(p);
                continue;
            }
            sent += 1;
            bytes += p.len() as u64;
            r.to_host.push_back(p);
        }
        // Buffers the host recycled come from the switch's pool: keep a
        // couple of bursts' worth for the host to inject with and give the
        // rest back, so the pool never starves and steady state allocates
        // nothing.
        while r.spare.len() > 2 * BATCH_SIZE {
            if let Some(p) = r.spare.pop() {
                pool.free(p);
            }
        }
        drop(r);
        self.counters.tx(sent, bytes);
        if dropped != 0 {
            self.counters.tx_dropped(dropped);
        }
        Ok(sent as usize)
    }

    fn rx_fd(&self, _rxq: usize) -> Option<RawFd> {
        None
    }

    fn link(&self) -> LinkState {
        LinkState::Up
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    fn stats(&self) -> PortStats {
        self.counters.snapshot()
    }
}
