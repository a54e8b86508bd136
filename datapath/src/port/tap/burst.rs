//! The TAP data path: receive and transmit bursts, either one `read`/
//! `write` per frame on the non-blocking queue fd, or one io_uring
//! submission per burst ([`super::uring`]). Both share the per-frame
//! handling: the vnet header lives in the packet headroom right in front
//! of the frame, so there is no copy besides the kernel's.
//!
//! Counters are summed locally and added to the shared atomics once per
//! burst.

use super::uring::{Dir, Op};
use super::vnet::{self, VNET_HDR_LEN};
use super::{is_device_gone, TapIo, TapPort};
use crate::packet::{Batch, Packet, PacketPool, SizeClass, BATCH_SIZE};
use crate::port::PortError;
use std::io;
use std::sync::atomic::Ordering::Relaxed;

/// Per-burst receive tallies.
#[derive(Default)]
struct Rx {
    packets: u64,
    bytes: u64,
    gso: u64,
    partial: u64,
    copied: u64,
    bad: u64,
    truncated: u64,
    errors: u64,
    gone: bool,
}

/// Per-burst transmit tallies.
#[derive(Default)]
struct Tx {
    sent: u64,
    bytes: u64,
    dropped: u64,
    errors: u64,
    gso: u64,
    unsupported: u64,
    link_down: u64,
    gone: bool,
}

/// What one failed read means.
enum ReadFault {
    /// Queue empty.
    Empty,
    /// Interrupted: try again.
    Retry,
    /// The frame was dropped by the kernel (did not fit the buffer).
    Truncated,
    /// The device is gone.
    Gone,
    /// Anything else.
    Error,
}

fn classify_read_error(errno: i32) -> ReadFault {
    match errno {
        libc::EAGAIN => ReadFault::Empty,
        libc::EINTR => ReadFault::Retry,
        libc::EFAULT | libc::EINVAL => ReadFault::Truncated,
        e if is_device_gone(&io::Error::from_raw_os_error(e)) => ReadFault::Gone,
        _ => ReadFault::Error,
    }
}

impl TapPort {
    fn hdr_len(&self) -> usize {
        if self.vnet_hdr {
            VNET_HDR_LEN
        } else {
            0
        }
    }

    /// Turns a filled buffer (`len` bytes read at `head - hdr`) into a
    /// frame and appends it to `out`, or drops it counted.
    fn accept_frame(
        &self,
        pool: &mut PacketPool,
        mut pkt: Packet,
        len: usize,
        rx: &mut Rx,
        out: &mut Batch,
    ) {
        let hdr = self.hdr_len();
        if len < hdr {
            rx.bad += 1;
            pool.free(pkt);
            return;
        }
        let (buf, head) = pkt.raw_buffer_mut();
        if hdr != 0 {
            match vnet::decode(&buf[head - hdr..head]) {
                Ok(meta) => pkt.offload = meta,
                Err(_) => {
                    rx.bad += 1;
                    pool.free(pkt);
                    return;
                }
            }
        }
        let frame_len = len - hdr;
        pkt.set_frame(head, frame_len);
        rx.gso += u64::from(pkt.offload.is_gso());
        rx.partial += u64::from(pkt.offload.needs_csum());
        if self.copy_small_frames
            && pkt.size_class() != SizeClass::Standard
            && frame_len <= SizeClass::Standard.capacity()
        {
            if let Some(mut small) = pool.alloc_class(SizeClass::Standard) {
                small.copy_from(pkt.data());
                small.offload = pkt.offload;
                // The big buffer goes back on top of its free list, so the
                // next read lands in the same (cache-warm) buffer.
                pool.free(std::mem::replace(&mut pkt, small));
                rx.copied += 1;
            }
        }
        rx.packets += 1;
        rx.bytes += frame_len as u64;
        if let Err(p) = out.push(pkt) {
            // Callers never offer more than `out.room()` frames.
            pool.free(p);
        }
    }

    /// Receives a burst from queue `rxq` (see [`crate::port::Port::rx_burst`]).
    pub(super) fn receive(
        &self,
        rxq: usize,
        pool: &mut PacketPool,
        out: &mut Batch,
    ) -> Result<usize, PortError> {
        if self.is_gone() {
            return Err(self.gone_error());
        }
        let mut rx = Rx::default();
        let q = rxq % self.queues.len();
        if !self.uring_usable(q) || !self.receive_uring(q, pool, out, &mut rx) {
            self.receive_syscalls(q, pool, out, &mut rx);
        }
        let t = &self.tap;
        self.counters.rx(rx.packets, rx.bytes);
        super::add(&t.rx_gso_frames, rx.gso);
        super::add(&t.rx_partial_csum, rx.partial);
        super::add(&t.rx_small_copied, rx.copied);
        super::add(&t.rx_bad_header, rx.bad);
        super::add(&t.rx_truncated, rx.truncated);
        if rx.bad + rx.truncated != 0 {
            self.counters.rx_dropped(rx.bad + rx.truncated);
        }
        if rx.errors != 0 {
            self.counters.rx_error(rx.errors);
        }
        if rx.gone {
            self.counters.rx_error(1);
            self.mark_gone();
            if rx.packets == 0 {
                return Err(self.gone_error());
            }
        }
        Ok(rx.packets as usize)
    }

    fn receive_syscalls(&self, q: usize, pool: &mut PacketPool, out: &mut Batch, rx: &mut Rx) {
        let queue = &self.queues[q];
        let hdr = self.hdr_len();
        while !out.is_full() {
            let Some(mut pkt) = pool.alloc_class(self.rx_class) else {
                self.tap.rx_no_buffer.fetch_add(1, Relaxed);
                break;
            };
            let (buf, head) = pkt.raw_buffer_mut();
            match queue.read(&mut buf[head - hdr..]) {
                Ok(len) => self.accept_frame(pool, pkt, len, rx, out),
                Err(e) => {
                    pool.free(pkt);
                    match classify_read_error(e.raw_os_error().unwrap_or(0)) {
                        ReadFault::Empty => break,
                        ReadFault::Retry => {}
                        ReadFault::Truncated => rx.truncated += 1,
                        ReadFault::Gone => {
                            rx.gone = true;
                            break;
                        }
                        ReadFault::Error => {
                            rx.errors += 1;
                            break;
                        }
                    }
                }
            }
        }
    }

    /// One io_uring submission of `out.room()` reads. False when the ring
    /// cannot be used (then nothing was read and the caller falls back).
    fn receive_uring(&self, q: usize, pool: &mut PacketPool, out: &mut Batch, rx: &mut Rx) -> bool {
        let Some(ring) = self.urings.get(q).and_then(Option::as_ref) else {
            return false;
        };
        let hdr = self.hdr_len();
        let mut slots: [Option<Packet>; BATCH_SIZE] = std::array::from_fn(|_| None);
        let mut ops = [Op::default(); BATCH_SIZE];
        // Submit as many reads as the queue is likely to hold: an idle
        // queue costs one read per poll, a busy one doubles up to a batch.
        let window = &self.uring_window[q];
        let want = window.load(Relaxed).clamp(1, BATCH_SIZE).min(out.room());
        let mut k = 0;
        for (slot, op) in slots.iter_mut().zip(ops.iter_mut()).take(want) {
            let Some(mut pkt) = pool.alloc_class(self.rx_class) else {
                self.tap.rx_no_buffer.fetch_add(1, Relaxed);
                break;
            };
            let (buf, head) = pkt.raw_buffer_mut();
            let area = &mut buf[head - hdr..];
            *op = Op {
                ptr: area.as_mut_ptr(),
                len: area.len().min(u32::MAX as usize) as u32,
                result: 0,
            };
            // Moving the packet moves its Box, not the heap buffer: `ptr`
            // stays valid.
            *slot = Some(pkt);
            k += 1;
        }
        // SAFETY: every op points into the heap buffer of a packet held in
        // `slots`, which lives until `run` has reaped all completions; the
        // queue fd is owned by `self`.
        let res = unsafe { ring.run(self.queues[q].raw_fd(), Dir::Read, &mut ops[..k]) };
        if res.is_err() {
            // The kernel may still write into these buffers: never reuse
            // them. The ring is gone; later bursts use plain reads.
            for p in slots.iter_mut().filter_map(Option::take) {
                std::mem::forget(p);
            }
            rx.errors += 1;
            return true;
        }
        let before = rx.packets;
        let mut unsupported = false;
        for (slot, op) in slots.iter_mut().zip(ops.iter()).take(k) {
            let Some(pkt) = slot.take() else { continue };
            if op.result >= 0 {
                self.accept_frame(pool, pkt, op.result as usize, rx, out);
                continue;
            }
            pool.free(pkt);
            if -op.result == libc::EOPNOTSUPP {
                unsupported = true;
                continue;
            }
            match classify_read_error(-op.result) {
                ReadFault::Empty | ReadFault::Retry => {}
                ReadFault::Truncated => rx.truncated += 1,
                ReadFault::Gone => rx.gone = true,
                ReadFault::Error => rx.errors += 1,
            }
        }
        let got = (rx.packets - before) as usize;
        let next = if got == k { 2 * k } else { got + 1 };
        window.store(next.clamp(1, BATCH_SIZE), Relaxed);
        if unsupported {
            // RWF_NOWAIT not supported on this kernel's TUN: plain reads.
            self.uring_off.store(true, Relaxed);
            return rx.packets != 0;
        }
        true
    }

    fn uring_usable(&self, q: usize) -> bool {
        self.io == TapIo::IoUring
            && !self.uring_off.load(Relaxed)
            && matches!(self.urings.get(q), Some(Some(_)))
    }

    /// Sends a burst on queue `txq` (see [`crate::port::Port::tx_burst`]).
    pub(super) fn transmit(
        &self,
        txq: usize,
        pkts: &mut Batch,
        pool: &mut PacketPool,
    ) -> Result<usize, PortError> {
        let mut tx = Tx {
            gone: self.is_gone(),
            ..Tx::default()
        };
        let q = txq % self.queues.len();
        if tx.gone {
            tx.dropped += pkts.len() as u64;
            pool.free_all(pkts.drain());
        } else {
            if !self.vnet_hdr {
                // A plain TAP takes neither GSO frames nor partial
                // checksums: the switch must finish them before.
                pkts.retain_mut(|p| {
                    let ok = !p.offload.is_gso() && !p.offload.needs_csum();
                    tx.unsupported += u64::from(!ok);
                    ok
                });
                tx.dropped += tx.unsupported;
            }
            let all_fit = pkts.as_slice().iter().all(|p| p.headroom() >= VNET_HDR_LEN);
            if !(self.uring_usable(q) && all_fit && self.transmit_uring(q, pkts, &mut tx)) {
                self.transmit_syscalls(q, pkts, &mut tx);
            }
            pool.free_all(pkts.drain());
        }
        let t = &self.tap;
        self.counters.tx(tx.sent, tx.bytes);
        if tx.dropped != 0 {
            self.counters.tx_dropped(tx.dropped);
        }
        if tx.errors != 0 {
            self.counters.tx_error(tx.errors);
        }
        super::add(&t.tx_gso_frames, tx.gso);
        super::add(&t.tx_offload_unsupported, tx.unsupported);
        super::add(&t.tx_link_down, tx.link_down);
        if tx.gone {
            self.mark_gone();
            return Err(self.gone_error());
        }
        Ok(tx.sent as usize)
    }

    /// Counts the outcome of writing one frame.
    fn count_write(&self, res: Result<usize, i32>, pkt: &Packet, tx: &mut Tx) {
        match res {
            Ok(_) => {
                tx.sent += 1;
                tx.bytes += pkt.len() as u64;
                tx.gso += u64::from(pkt.offload.is_gso());
            }
            Err(libc::EAGAIN) => tx.dropped += 1,
            // The container set its interface down: tun refuses writes.
            Err(libc::EIO) => {
                tx.link_down += 1;
                tx.dropped += 1;
            }
            Err(e) if is_device_gone(&io::Error::from_raw_os_error(e)) => {
                tx.gone = true;
                tx.dropped += 1;
                tx.errors += 1;
            }
            Err(_) => tx.errors += 1,
        }
    }

    fn transmit_syscalls(&self, q: usize, pkts: &mut Batch, tx: &mut Tx) {
        let queue = &self.queues[q];
        for pkt in pkts.as_mut_slice() {
            if tx.gone {
                tx.dropped += 1;
                continue;
            }
            let meta = pkt.offload;
            let res = if self.vnet_hdr {
                match pkt.push_front(VNET_HDR_LEN) {
                    Some(h) => {
                        vnet::encode(&meta, h);
                        let r = queue.write(pkt.data());
                        pkt.pull_front(VNET_HDR_LEN);
                        r
                    }
                    None => {
                        let mut h = [0u8; VNET_HDR_LEN];
                        vnet::encode(&meta, &mut h);
                        queue.write2(&h, pkt.data())
                    }
                }
            } else {
                queue.write(pkt.data())
            };
            self.count_write(res.map_err(|e| e.raw_os_error().unwrap_or(0)), pkt, tx);
        }
    }

    /// One io_uring submission of every write. False when the ring cannot
    /// be used (then nothing was written and the caller falls back).
    fn transmit_uring(&self, q: usize, pkts: &mut Batch, tx: &mut Tx) -> bool {
        let Some(ring) = self.urings.get(q).and_then(Option::as_ref) else {
            return false;
        };
        let hdr = self.hdr_len();
        let mut ops = [Op::default(); BATCH_SIZE];
        let n = pkts.len().min(BATCH_SIZE);
        for (pkt, op) in pkts.as_mut_slice().iter_mut().zip(ops.iter_mut()) {
            if hdr != 0 {
                let meta = pkt.offload;
                if let Some(h) = pkt.push_front(hdr) {
                    vnet::encode(&meta, h);
                }
            }
            let d = pkt.data();
            *op = Op {
                ptr: d.as_ptr().cast_mut(),
                len: d.len() as u32,
                result: 0,
            };
        }
        // SAFETY: every op points at a frame of a packet in `pkts`, which
        // is neither moved nor freed until `run` has reaped all
        // completions; writes only read the buffers.
        let res = unsafe { ring.run(self.queues[q].raw_fd(), Dir::Write, &mut ops[..n]) };
        if res.is_err() {
            // The kernel may still read these buffers: never reuse them.
            for p in pkts.drain() {
                std::mem::forget(p);
            }
            tx.errors += n as u64;
            return true;
        }
        let mut unsupported = false;
        for (pkt, op) in pkts.as_mut_slice().iter_mut().zip(ops.iter()).take(n) {
            if hdr != 0 {
                pkt.pull_front(hdr);
            }
            if -op.result == libc::EOPNOTSUPP {
                unsupported = true;
            }
            let res = if op.result >= 0 {
                Ok(op.result as usize)
            } else {
                Err(-op.result)
            };
            if !unsupported {
                self.count_write(res, pkt, tx);
            }
        }
        if unsupported {
            // Nothing was sent this way; plain writes from now on.
            self.uring_off.store(true, Relaxed);
            *tx = Tx {
                unsupported: tx.unsupported,
                dropped: tx.unsupported,
                ..Tx::default()
            };
            return false;
        }
        true
    }
}

/// The data path on real bytes without root: a `SOCK_SEQPACKET` pair keeps
/// frame boundaries exactly like a TAP fd (one frame per read/write), so
/// the port's queue is one end and the test plays the kernel on the other.
#[cfg(test)]
mod tests {
    use super::super::device::TunQueue;
    use super::super::{TapConfig, TapIo, TapPort};
    use crate::packet::{Batch, GsoType, OffloadMeta, PacketPool, SizeClass};
    use crate::port::{OffloadCaps, Port};
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;

    /// A port whose single queue is a seqpacket socket; returns the peer.
    fn port(offloads: bool, io: TapIo) -> (TapPort, std::fs::File) {
        let (a, b) = seqpacket_pair();
        let mut cfg = TapConfig::new("utap0");
        cfg.offloads = offloads;
        cfg.io = io;
        let caps = OffloadCaps {
            partial_csum: offloads,
            tso: offloads,
            uso: false,
        };
        let p = TapPort::from_parts(
            &cfg,
            vec![TunQueue::from_fd(a)],
            caps,
            [2, 0, 0, 0, 0, 1],
            1500,
        );
        (p, std::fs::File::from(b))
    }

    /// False (with a message) when this kernel gives no io_uring, e.g.
    /// `kernel.io_uring_disabled`; the port then runs on plain calls.
    fn uring_available(p: &TapPort, test: &str) -> bool {
        if p.io_mode() == TapIo::IoUring {
            return true;
        }
        eprintln!("SKIP {test}: io_uring not available");
        false
    }

    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        // std has no seqpacket pair; a stream pair would merge frames.
        let mut fds = [0; 2];
        // SAFETY: `fds` is valid for two ints.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        use std::os::fd::FromRawFd;
        // SAFETY: both descriptors were just created and are owned here.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// A TCPv4 frame as a container's stack hands it to a TAP with TSO:
    /// Ethernet + IPv4 + TCP headers, `payload` bytes, and the vnet header.
    fn gso_frame(payload: usize) -> (Vec<u8>, Vec<u8>) {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let meta = OffloadMeta {
            flags: OffloadMeta::F_NEEDS_CSUM,
            gso_type: GsoType::TcpV4,
            gso_ecn: false,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut h = vec![0u8; 12];
        super::vnet::encode(&meta, &mut h);
        (h, f)
    }

    fn receives_gso_and_small_frames_with_their_offload_state(io: TapIo) {
        let (p, mut peer) = port(true, io);
        if io == TapIo::IoUring && !uring_available(&p, "receives_gso_and_small_frames") {
            return;
        }
        let (h, big) = gso_frame(65_000);
        let (_, small) = gso_frame(40);
        let mut w = h.clone();
        w.extend_from_slice(&big);
        peer.write_all(&w).unwrap();
        let mut w = vec![0u8; 12];
        w.extend_from_slice(&small);
        peer.write_all(&w).unwrap();
        let mut pool = PacketPool::new(8, 0, 8);
        let mut out = Batch::new();
        // io_uring starts an idle queue with a one-read window.
        let mut n = 0;
        for _ in 0..2 {
            n += p.rx_burst(0, &mut pool, &mut out).unwrap();
        }
        assert_eq!(n, 2);
        let pk = out.as_slice();
        assert_eq!(pk[0].data(), &big[..]);
        assert_eq!(pk[0].offload.gso_type, GsoType::TcpV4);
        assert_eq!(pk[0].offload.csum_start, 34);
        assert_eq!(pk[0].offload.gso_size, 1448);
        assert_eq!(pk[0].size_class(), SizeClass::Gso);
        assert_eq!(pk[1].data(), &small[..]);
        assert_eq!(pk[1].offload, OffloadMeta::default());
        // The small frame was moved out of the 64 KiB buffer.
        assert_eq!(pk[1].size_class(), SizeClass::Standard);
        let t = p.tap_stats();
        assert_eq!(
            (t.rx_gso_frames, t.rx_partial_csum, t.rx_small_copied),
            (1, 1, 1)
        );
        let s = p.stats();
        assert_eq!(s.rx_packets, 2);
        assert_eq!(s.rx_bytes, (big.len() + small.len()) as u64);
        // Queue empty now: no frame, no error.
        assert_eq!(p.rx_burst(0, &mut pool, &mut out).unwrap(), 0);
        pool.free_all(out.drain());
    }

    #[test]
    fn receives_gso_and_small_frames_with_their_offload_state_syscalls() {
        receives_gso_and_small_frames_with_their_offload_state(TapIo::Syscalls);
    }

    #[test]
    fn receives_gso_and_small_frames_with_their_offload_state_io_uring() {
        receives_gso_and_small_frames_with_their_offload_state(TapIo::IoUring);
    }

    fn transmits_with_vnet_header_in_front_in_order(io: TapIo) {
        let (p, mut peer) = port(true, io);
        if io == TapIo::IoUring && !uring_available(&p, "transmits_with_vnet_header") {
            return;
        }
        let mut pool = PacketPool::new(40, 0, 2);
        let mut batch = Batch::new();
        let (h, big) = gso_frame(30_000);
        let mut pkt = pool.alloc(big.len()).unwrap();
        pkt.copy_from(&big);
        pkt.offload = super::vnet::decode(&h).unwrap();
        batch.push(pkt).unwrap();
        for i in 0..20u8 {
            let mut pkt = pool.alloc(60).unwrap();
            pkt.copy_from(&[i; 60]);
            batch.push(pkt).unwrap();
        }
        assert_eq!(p.tx_burst(0, &mut batch, &mut pool).unwrap(), 21);
        assert!(batch.is_empty());
        let mut buf = vec![0u8; 70_000];
        let n = peer.read(&mut buf).unwrap();
        assert_eq!(&buf[..12], &h[..]);
        assert_eq!(&buf[12..n], &big[..]);
        for i in 0..20u8 {
            let n = peer.read(&mut buf).unwrap();
            assert_eq!(n, 72);
            assert_eq!(&buf[..12], &[0u8; 12]);
            assert_eq!(&buf[12..72], &[i; 60]);
        }
        let s = p.stats();
        assert_eq!((s.tx_packets, s.tx_dropped, s.tx_errors), (21, 0, 0));
        assert_eq!(p.tap_stats().tx_gso_frames, 1);
        // Every buffer went back to the pool.
        assert_eq!(pool.stats().free[0], 40);
    }

    #[test]
    fn transmits_with_vnet_header_in_front_in_order_syscalls() {
        transmits_with_vnet_header_in_front_in_order(TapIo::Syscalls);
    }

    #[test]
    fn transmits_with_vnet_header_in_front_in_order_io_uring() {
        transmits_with_vnet_header_in_front_in_order(TapIo::IoUring);
    }

    #[test]
    fn full_queue_on_transmit_is_a_counted_drop_not_an_error() {
        let (p, _peer) = port(true, TapIo::Syscalls);
        let mut pool = PacketPool::new(64, 0, 0);
        // Fill the socket until it refuses (EAGAIN), never reading.
        let mut sent_total = 0;
        for _ in 0..200 {
            let mut batch = Batch::new();
            for _ in 0..32 {
                let mut pkt = pool.alloc(1500).unwrap();
                pkt.copy_from(&[7u8; 1500]);
                batch.push(pkt).unwrap();
            }
            sent_total += p.tx_burst(0, &mut batch, &mut pool).unwrap();
            if p.stats().tx_dropped > 0 {
                break;
            }
        }
        let s = p.stats();
        assert!(s.tx_dropped > 0, "socket never filled");
        assert_eq!(s.tx_errors, 0);
        assert_eq!(s.tx_packets, sent_total as u64);
    }

    #[test]
    fn plain_tap_refuses_gso_and_partial_checksum_frames_counted() {
        let (p, mut peer) = port(false, TapIo::Syscalls);
        let mut pool = PacketPool::new(8, 1, 1);
        let mut batch = Batch::new();
        let (h, big) = gso_frame(3000);
        let mut pkt = pool.alloc(big.len()).unwrap();
        pkt.copy_from(&big);
        pkt.offload = super::vnet::decode(&h).unwrap();
        batch.push(pkt).unwrap();
        let mut pkt = pool.alloc(60).unwrap();
        pkt.copy_from(&[9u8; 60]);
        batch.push(pkt).unwrap();
        assert_eq!(p.tx_burst(0, &mut batch, &mut pool).unwrap(), 1);
        assert_eq!(p.tap_stats().tx_offload_unsupported, 1);
        assert_eq!(p.stats().tx_dropped, 1);
        let mut buf = [0u8; 100];
        // No vnet header on a plain TAP.
        assert_eq!(peer.read(&mut buf).unwrap(), 60);
        assert_eq!(&buf[..60], &[9u8; 60]);
    }

    #[test]
    fn malformed_vnet_header_is_a_counted_drop() {
        let (p, mut peer) = port(true, TapIo::Syscalls);
        let mut w = vec![0u8; 12 + 60];
        w[1] = 3; // UFO, never negotiated
        peer.write_all(&w).unwrap();
        peer.write_all(&[0u8; 5]).unwrap(); // shorter than the header
        let mut pool = PacketPool::new(8, 0, 4);
        let mut out = Batch::new();
        assert_eq!(p.rx_burst(0, &mut pool, &mut out).unwrap(), 0);
        assert_eq!(p.tap_stats().rx_bad_header, 2);
        assert_eq!(p.stats().rx_dropped, 2);
    }

    #[test]
    fn empty_pool_stops_the_burst_and_is_counted() {
        let (p, mut peer) = port(true, TapIo::IoUring);
        let mut w = vec![0u8; 12 + 60];
        w[12] = 1;
        peer.write_all(&w).unwrap();
        let mut pool = PacketPool::new(0, 0, 0);
        let mut out = Batch::new();
        assert_eq!(p.rx_burst(0, &mut pool, &mut out).unwrap(), 0);
        assert_eq!(p.tap_stats().rx_no_buffer, 1);
        // With buffers the frame is still there.
        let mut pool = PacketPool::new(4, 0, 4);
        assert_eq!(p.rx_burst(0, &mut pool, &mut out).unwrap(), 1);
    }

    #[test]
    fn io_uring_read_window_grows_under_load_and_shrinks_when_idle() {
        let (p, mut peer) = port(true, TapIo::IoUring);
        if !uring_available(&p, "io_uring_read_window") {
            return;
        }
        let mut pool = PacketPool::new(64, 0, 64);
        let mut out = Batch::new();
        let frame = vec![0u8; 12 + 60];
        for _ in 0..40 {
            peer.write_all(&frame).unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..8 {
            let n = p.rx_burst(0, &mut pool, &mut out).unwrap();
            got.push(n);
            pool.free_all(out.drain());
        }
        // 1, 2, 4, 8, 16, then the rest (9), then nothing.
        assert_eq!(got, vec![1, 2, 4, 8, 16, 9, 0, 0]);
        assert_eq!(
            p.uring_window[0].load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(p.io_mode(), TapIo::IoUring);
    }
}
