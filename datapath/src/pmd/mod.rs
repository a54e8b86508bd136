//! Poll-mode driver (PMD) contexts: the per-thread packet loop.
//!
//! A [`Pmd`] owns everything one thread touches per packet — its buffer
//! pool, EMC, megaflow cache, transmit batches and counters — so the hot
//! path shares nothing writable with other threads except the FDB's
//! lock-free timestamps and the rules' counters (credited once per flow
//! per batch). It reads the datapath through an immutable [`Snapshot`]
//! that the control side swaps atomically; a new generation flushes the
//! caches between batches.
//!
//! One iteration: for each assigned rx queue, receive a burst, parse each
//! packet once, look it up in EMC → megaflow → slow path, apply the actions
//! collecting outputs in per-port transmit batches, then send the batches.

mod thread;

pub use thread::{pin_to_core, IdleMode, PmdHandle, PmdThreadConfig};

use crate::classifier::{Emc, EmcStats, MegaflowCache, MegaflowEntry, MegaflowId, MegaflowStats};
use crate::drop::{DropCounters, DropReason};
use crate::exec::{execute, Offsets};
use crate::flow::{extract, Anomaly, FlowKey, PortNo};
use crate::packet::GsoType;
use crate::packet::{Batch, Packet, PacketPool, BATCH_SIZE};
use crate::pipeline::{translate, BridgeView, InstalledRule};
use crate::port::capture::Direction;
use crate::port::{LinkState, OffloadCaps, Port};
use crate::security::StormMeter;
use crate::switch::Snapshot;
use crate::wire;
use std::sync::Arc;

/// Per-PMD counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmdStats {
    /// Packets received.
    pub packets: u64,
    /// Non-empty rx bursts.
    pub batches: u64,
    /// EMC hits.
    pub emc_hits: u64,
    /// Megaflow hits.
    pub megaflow_hits: u64,
    /// Slow-path translations (upcalls).
    pub upcalls: u64,
    /// Cached flows found stale (FDB change) and re-translated.
    pub revalidations: u64,
    /// Nanoseconds spent in iterations that moved packets.
    pub busy_ns: u64,
    /// Nanoseconds spent in iterations that moved nothing or sleeping.
    pub idle_ns: u64,
    /// Packets sent to ports.
    pub tx_packets: u64,
    /// Parser anomalies, indexed by [`Anomaly::index`].
    pub anomalies: [u64; Anomaly::ALL.len()],
}

impl PmdStats {
    /// Adds another PMD's counters.
    pub fn merge(&mut self, o: &PmdStats) {
        self.packets += o.packets;
        self.batches += o.batches;
        self.emc_hits += o.emc_hits;
        self.megaflow_hits += o.megaflow_hits;
        self.upcalls += o.upcalls;
        self.revalidations += o.revalidations;
        self.busy_ns += o.busy_ns;
        self.idle_ns += o.idle_ns;
        self.tx_packets += o.tx_packets;
        for (a, b) in self.anomalies.iter_mut().zip(o.anomalies.iter()) {
            *a += *b;
        }
    }
}

/// Tunables of a PMD context.
#[derive(Clone, Copy, Debug)]
pub struct PmdConfig {
    /// EMC entries (0 disables the EMC).
    pub emc_entries: usize,
    /// One in this many megaflow hits is inserted into the EMC.
    pub emc_insert_inv_prob: u32,
    /// Megaflow cache capacity.
    pub megaflow_max: usize,
}

impl Default for PmdConfig {
    fn default() -> Self {
        PmdConfig {
            emc_entries: crate::classifier::EMC_ENTRIES,
            emc_insert_inv_prob: 100,
            megaflow_max: crate::classifier::MEGAFLOW_MAX,
        }
    }
}

/// Ethernet header plus two VLAN tags: what a frame may add to the MTU.
const ETH_OVERHEAD: usize = 14 + 8;

/// True when `pkt` cannot go to a port with `caps` as it is.
#[inline]
fn needs_egress_work(pkt: &Packet, caps: OffloadCaps, max_frame: usize) -> bool {
    match pkt.offload.gso_type {
        GsoType::None => pkt.len() > max_frame || (pkt.offload.needs_csum() && !caps.partial_csum),
        GsoType::TcpV4 | GsoType::TcpV6 => !(caps.tso && caps.partial_csum),
        GsoType::UdpL4 => !(caps.uso && caps.partial_csum),
    }
}

/// A flow hit within one batch, credited to its rules once per batch.
#[derive(Clone, Copy)]
struct BatchFlow {
    id: MegaflowId,
    packets: u64,
    bytes: u64,
}

/// One PMD's processing context.
pub struct Pmd {
    /// Index of this PMD (also its transmit queue number).
    pub index: usize,
    pool: PacketPool,
    emc: Emc,
    megaflow: MegaflowCache,
    /// Per-port transmit batches, indexed by port number.
    tx: Vec<Batch>,
    /// Port numbers with a non-empty transmit batch.
    tx_dirty: Vec<PortNo>,
    rx: Batch,
    /// Output staging for the slow egress path.
    egress: Batch,
    /// Segments of one GSO frame being cut in software.
    segments: Vec<Packet>,
    flows: Vec<BatchFlow>,
    generation: u64,
    stats: PmdStats,
    drops: DropCounters,
    /// Storm-control token buckets of this PMD, per ingress port.
    storm: StormMeter,
}

impl std::fmt::Debug for Pmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pmd")
            .field("index", &self.index)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Pmd {
    /// A context with its own pool and caches.
    pub fn new(index: usize, cfg: PmdConfig, pool: PacketPool) -> Self {
        Pmd {
            index,
            pool,
            emc: Emc::new(cfg.emc_entries, cfg.emc_insert_inv_prob),
            megaflow: MegaflowCache::new(cfg.megaflow_max),
            tx: Vec::new(),
            tx_dirty: Vec::with_capacity(64),
            rx: Batch::new(),
            egress: Batch::new(),
            segments: Vec::with_capacity(64),
            flows: Vec::with_capacity(BATCH_SIZE),
            generation: u64::MAX,
            stats: PmdStats::default(),
            drops: DropCounters::default(),
            storm: StormMeter::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> PmdStats {
        self.stats
    }

    /// Drop counters.
    pub fn drops(&self) -> DropCounters {
        self.drops
    }

    /// EMC counters.
    pub fn emc_stats(&self) -> EmcStats {
        self.emc.stats()
    }

    /// Megaflow counters.
    pub fn megaflow_stats(&self) -> MegaflowStats {
        self.megaflow.stats()
    }

    /// The megaflow cache (for `dump-cache`).
    pub fn megaflows(&self) -> &MegaflowCache {
        &self.megaflow
    }

    /// The buffer pool (for hosts that inject into memory ports).
    pub fn pool_mut(&mut self) -> &mut PacketPool {
        &mut self.pool
    }

    /// Re-orders megaflow subtables by recent hits (call about once a second).
    pub fn housekeeping(&mut self) {
        self.megaflow.sort_subtables();
    }

    /// Adds idle time (spent sleeping or polling empty queues).
    pub fn add_idle_ns(&mut self, ns: u64) {
        self.stats.idle_ns += ns;
    }

    /// Adds busy time.
    pub fn add_busy_ns(&mut self, ns: u64) {
        self.stats.busy_ns += ns;
    }

    /// Installs a megaflow directly (benches and tests that need an exact
    /// cache shape, e.g. N subtables). The entry must be consistent with
    /// what the slow path would produce for the traffic it is used on.
    pub fn install_megaflow(
        &mut self,
        snap: &Snapshot,
        key: FlowKey,
        mask: crate::flow::FlowMask,
        actions: Vec<crate::pipeline::DpAction>,
    ) -> MegaflowId {
        self.sync_generation(snap);
        self.megaflow.insert(MegaflowEntry {
            key: key.masked(&mask),
            mask,
            actions: actions.into_boxed_slice(),
            drop: None,
            tags: Box::new([]),
            fdb: None,
            src_slot: None,
            rules: Box::new([]),
            packets: 0,
            bytes: 0,
            used_ms: 0,
        })
    }

    fn sync_generation(&mut self, snap: &Snapshot) {
        if self.generation == snap.generation {
            return;
        }
        self.generation = snap.generation;
        self.emc.flush();
        self.megaflow.flush();
        // Packets still queued for ports of an older generation go out
        // first; flush() below handles it, here only make room.
        if self.tx.len() < snap.ports.len() {
            self.tx.resize_with(snap.ports.len(), Batch::new);
        }
        self.storm.reserve_ports(snap.ports.len());
    }

    /// Polls every queue in `queues` once. Returns packets received.
    pub fn poll(&mut self, snap: &Snapshot, queues: &[(PortNo, usize)], now_ms: u64) -> usize {
        self.sync_generation(snap);
        let mut total = 0;
        for &(port_no, q) in queues {
            let Some(entry) = snap.port(port_no) else {
                continue;
            };
            if entry.port.link() != LinkState::Up {
                continue;
            }
            let mut rx = std::mem::replace(&mut self.rx, Batch::placeholder());
            // A failing port counts its own errors and reports its link
            // state; the PMD just moves on to the next queue.
            let n = entry.port.rx_burst(q, &mut self.pool, &mut rx).unwrap_or(0);
            if n > 0 {
                if let Some(sink) = &entry.capture {
                    for p in rx.as_slice() {
                        sink.push(Direction::Rx, p.data());
                    }
                }
                total += n;
                self.stats.batches += 1;
                self.process_batch(snap, port_no, &mut rx, now_ms);
                // Send per burst: transmit batches never exceed one rx
                // burst's worth of packets, and latency stays one burst.
                self.flush(snap);
            }
            self.rx = rx;
        }
        total
    }

    /// Classifies and forwards one received batch from `in_port`.
    pub fn process_batch(
        &mut self,
        snap: &Snapshot,
        in_port: PortNo,
        batch: &mut Batch,
        now_ms: u64,
    ) {
        self.sync_generation(snap);
        self.flows.clear();
        self.storm.now_ms = now_ms;
        for mut pkt in batch.drain() {
            self.stats.packets += 1;
            pkt.in_port = in_port;
            let ex = match extract(pkt.data(), in_port, &pkt.tunnel) {
                Ok(ex) => ex,
                Err(reason) => {
                    self.drops.add(reason, 1);
                    self.pool.free(pkt);
                    continue;
                }
            };
            if let Some(a) = ex.anomaly {
                self.stats.anomalies[a.index()] += 1;
            }
            let Some(id) = self.classify(snap, &ex.key, now_ms) else {
                self.drops.add(DropReason::TableLimit, 1);
                self.pool.free(pkt);
                continue;
            };
            let len = pkt.len() as u64;
            // Bursts are mostly runs of one flow: try the last one first.
            let found = match self.flows.last_mut() {
                Some(f) if f.id == id => Some(f),
                _ => self.flows.iter_mut().find(|f| f.id == id),
            };
            match found {
                Some(f) => {
                    f.packets += 1;
                    f.bytes += len;
                }
                None => self.flows.push(BatchFlow {
                    id,
                    packets: 1,
                    bytes: len,
                }),
            }
            self.forward(
                snap,
                id,
                pkt,
                Offsets {
                    l3: ex.l3_ofs,
                    l4: ex.l4_ofs,
                    proto: ex.key.nw_proto(),
                },
            );
        }
        self.credit_flows(now_ms);
    }

    /// Finds (or creates) the megaflow for `key`.
    fn classify(&mut self, snap: &Snapshot, key: &FlowKey, now_ms: u64) -> Option<MegaflowId> {
        let hash = key.hash_with(0);
        if let Some(id) = self.emc.lookup(key, hash) {
            match self.megaflow.get(id) {
                Some(e) if e.is_current() => {
                    self.stats.emc_hits += 1;
                    return Some(id);
                }
                Some(_) => {
                    self.stats.revalidations += 1;
                    self.megaflow.remove(id);
                    self.emc.remove(key, hash);
                }
                None => self.emc.remove(key, hash),
            }
        }
        if let Some(id) = self.megaflow.lookup(key) {
            let current = self.megaflow.get(id).is_some_and(|e| e.is_current());
            if current {
                self.stats.megaflow_hits += 1;
                self.emc.maybe_insert(key, hash, id);
                return Some(id);
            }
            self.stats.revalidations += 1;
            self.megaflow.remove(id);
        }
        self.stats.upcalls += 1;
        let entry = snap.port(key.in_port())?;
        let bridge = snap.bridges.get(entry.bridge)?;
        let view = BridgeView {
            pipeline: &bridge.pipeline,
            fdb: &bridge.fdb,
            ports: &bridge.ports,
        };
        let t = translate(view, key, now_ms, false);
        let fdb = (!t.tags.is_empty()).then(|| bridge.fdb.clone());
        let id = self.megaflow.insert(MegaflowEntry {
            key: key.masked(&t.mask),
            mask: t.mask,
            actions: t.actions.into_boxed_slice(),
            drop: t.drop,
            tags: t.tags.into_boxed_slice(),
            fdb,
            src_slot: t.src_slot,
            rules: t.rules.into_boxed_slice(),
            packets: 0,
            bytes: 0,
            used_ms: now_ms,
        });
        self.emc.maybe_insert(key, hash, id);
        Some(id)
    }

    fn forward(&mut self, snap: &Snapshot, id: MegaflowId, pkt: Packet, ofs: Offsets) {
        let Some(entry) = self.megaflow.get(id) else {
            self.drops.add(DropReason::TableLimit, 1);
            self.pool.free(pkt);
            return;
        };
        let drop_reason = entry.drop;
        let tx = &mut self.tx;
        let dirty = &mut self.tx_dirty;
        let drops = &mut self.drops;
        let pool = &mut self.pool;
        let storm = &mut self.storm;
        let mut overflow: Option<PortNo> = None;
        let done = execute(
            &entry.actions,
            pkt,
            ofs,
            pool,
            drops,
            storm,
            &mut |port, p| {
                let Some(b) = tx.get_mut(port as usize) else {
                    return;
                };
                if b.is_empty() {
                    dirty.push(port);
                }
                if let Err(p) = b.push(p) {
                    // Only when one packet is sent to the same port more
                    // than once: the extra copy is dropped and counted.
                    overflow = Some(port);
                    drop(p);
                }
            },
        );
        if done.outputs == 0 && !done.counted {
            self.drops
                .add(drop_reason.unwrap_or(DropReason::ActionDrop), 1);
        }
        if let Some(port) = overflow {
            // Rare: the dropped packet above is counted as tx_queue_full.
            self.drops.add(DropReason::TxQueueFull, 1);
            self.flush_port(snap, port);
        }
    }

    fn credit_flows(&mut self, now_ms: u64) {
        for f in &self.flows {
            if let Some(e) = self.megaflow.get_mut(f.id) {
                e.packets += f.packets;
                e.bytes += f.bytes;
                e.used_ms = now_ms;
                if let (Some(slot), Some(fdb)) = (e.src_slot, e.fdb.as_ref()) {
                    fdb.touch(slot, now_ms);
                }
                let rules: &[Arc<InstalledRule>] = &e.rules;
                for r in rules {
                    r.stats.credit(f.packets, f.bytes, now_ms);
                }
            }
        }
    }

    fn flush_port(&mut self, snap: &Snapshot, port_no: PortNo) {
        let Some(mut batch) = self
            .tx
            .get_mut(port_no as usize)
            .map(|b| std::mem::replace(b, Batch::placeholder()))
        else {
            return;
        };
        if !batch.is_empty() {
            let n = batch.len() as u64;
            match snap.port(port_no) {
                Some(entry) if entry.port.link() == LinkState::Up => {
                    if let Some(sink) = &entry.capture {
                        for p in batch.as_slice() {
                            sink.push(Direction::Tx, p.data());
                        }
                    }
                    let port: &dyn Port = &*entry.port;
                    let caps = port.offload_caps();
                    let max_frame = port.mtu() as usize + ETH_OVERHEAD;
                    if batch
                        .as_slice()
                        .iter()
                        .any(|p| needs_egress_work(p, caps, max_frame))
                    {
                        self.send_prepared(port, &mut batch, caps, max_frame);
                    } else {
                        let sent = port
                            .tx_burst(self.index, &mut batch, &mut self.pool)
                            .unwrap_or(0) as u64;
                        self.stats.tx_packets += sent;
                        if sent < n {
                            self.drops.add(DropReason::TxQueueFull, n - sent);
                        }
                    }
                }
                Some(_) => self.drops.add(DropReason::PortDown, n),
                None => self.drops.add(DropReason::NoSuchPort, n),
            }
            // tx_burst leaves the batch empty; the drop paths land here.
            self.pool.free_all(batch.drain());
        }
        self.tx[port_no as usize] = batch;
    }

    /// The slow egress path: some packet needs software segmentation, a
    /// completed checksum, or is too large for the port.
    fn send_prepared(
        &mut self,
        port: &dyn Port,
        batch: &mut Batch,
        caps: OffloadCaps,
        max_frame: usize,
    ) {
        let mut out = std::mem::replace(&mut self.egress, Batch::placeholder());
        let mut segs = std::mem::take(&mut self.segments);
        for mut pkt in batch.drain() {
            let gso_ok = match pkt.offload.gso_type {
                GsoType::None => true,
                GsoType::TcpV4 | GsoType::TcpV6 => caps.tso && caps.partial_csum,
                GsoType::UdpL4 => caps.uso && caps.partial_csum,
            };
            if !gso_ok {
                let res = wire::segment(&pkt, &mut self.pool, |seg| segs.push(seg));
                self.pool.free(pkt);
                if res.is_err() {
                    self.drops.add(DropReason::Malformed, 1);
                }
                for seg in segs.drain(..) {
                    if seg.len() > max_frame {
                        self.drops.add(DropReason::Mtu, 1);
                        self.pool.free(seg);
                        continue;
                    }
                    self.queue_egress(port, &mut out, seg);
                }
                continue;
            }
            if !pkt.offload.is_gso() && pkt.len() > max_frame {
                self.drops.add(DropReason::Mtu, 1);
                self.pool.free(pkt);
                continue;
            }
            if pkt.offload.needs_csum()
                && !caps.partial_csum
                && wire::finish_packet_checksum(&mut pkt).is_err()
            {
                self.drops.add(DropReason::Malformed, 1);
                self.pool.free(pkt);
                continue;
            }
            self.queue_egress(port, &mut out, pkt);
        }
        self.send_egress(port, &mut out);
        self.egress = out;
        self.segments = segs;
    }

    fn queue_egress(&mut self, port: &dyn Port, out: &mut Batch, pkt: Packet) {
        if out.is_full() {
            self.send_egress(port, out);
        }
        // Cannot fail: the batch was emptied above when full.
        let _ = out.push(pkt);
    }

    fn send_egress(&mut self, port: &dyn Port, out: &mut Batch) {
        let n = out.len() as u64;
        if n == 0 {
            return;
        }
        let sent = port.tx_burst(self.index, out, &mut self.pool).unwrap_or(0) as u64;
        self.stats.tx_packets += sent;
        if sent < n {
            self.drops.add(DropReason::TxQueueFull, n - sent);
        }
        self.pool.free_all(out.drain());
    }

    /// Sends every pending transmit batch.
    pub fn flush(&mut self, snap: &Snapshot) {
        while let Some(port) = self.tx_dirty.pop() {
            self.flush_port(snap, port);
        }
    }
}
