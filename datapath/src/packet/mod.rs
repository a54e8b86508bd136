//! Packet buffers, pools and batches.
//!
//! A [`Packet`] owns one buffer from a [`PacketPool`] size class. Every buffer
//! keeps [`HEADROOM`] bytes free in front of the frame so that encapsulation
//! (VXLAN: outer Ethernet + IP + UDP + VXLAN = 50 B over IPv4, 70 B over IPv6)
//! and VLAN pushes are prepends, never copies. The largest size class takes a
//! whole 64 KiB GSO frame from a TAP port, so a TSO segment crosses the switch
//! as one buffer and is only segmented at an egress port that cannot take it.
//!
//! Offload state travels with the packet in [`OffloadMeta`], field for field
//! the `virtio_net_hdr` of the Linux TUN driver (include/uapi/linux/virtio_net.h).
//!
//! After warm-up, allocating and freeing packets moves boxed buffers between
//! the pool's free lists and batches whose capacity is fixed: no heap
//! allocation per packet.

mod offload;
mod pool;

pub use offload::{GsoType, OffloadMeta};
pub use pool::{PacketPool, PoolStats, SizeClass, SIZE_CLASSES};

use crate::flow::PortNo;

/// Bytes kept free in front of every frame for encapsulation and tag pushes.
pub const HEADROOM: usize = 128;

/// Packets processed together: one rx burst, one classification pass.
pub const BATCH_SIZE: usize = 32;

/// Largest frame a buffer takes: a 64 KiB GSO frame plus its Ethernet header.
pub const MAX_FRAME: usize = 65_536 + 14 + 4 + 4;

/// Tunnel metadata of a packet that arrived through a tunnel port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelMeta {
    /// VXLAN network identifier, 0 when the packet did not come from a tunnel.
    pub vni: u32,
    /// Outer IPv4 source (the remote VTEP) in host order.
    pub src: u32,
    /// Outer IPv4 destination (our VTEP) in host order.
    pub dst: u32,
}

/// One frame in a pool buffer, with its offload state and ingress metadata.
pub struct Packet {
    buf: Box<[u8]>,
    /// Offset of the first frame byte in `buf` (starts at [`HEADROOM`]).
    head: usize,
    /// Frame length in bytes.
    len: usize,
    /// Offload state (checksum, GSO), as in virtio_net_hdr.
    pub offload: OffloadMeta,
    /// Port the packet arrived on.
    pub in_port: PortNo,
    /// Tunnel metadata, set by a tunnel port on decapsulation.
    pub tunnel: TunnelMeta,
    /// Tunnel id to use on output to a tunnel port (set by `set_tunnel`).
    pub out_tunnel_id: Option<u32>,
    /// Remote VTEP (IPv4, host order) for output to a tunnel port, when
    /// NORMAL learned where the destination lives.
    pub out_tunnel_dst: Option<u32>,
    class: SizeClass,
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.len)
            .field("headroom", &self.head)
            .field("in_port", &self.in_port)
            .field("offload", &self.offload)
            .finish()
    }
}

impl Packet {
    fn from_buffer(buf: Box<[u8]>, class: SizeClass) -> Self {
        Packet {
            buf,
            head: HEADROOM,
            len: 0,
            offload: OffloadMeta::default(),
            in_port: 0,
            tunnel: TunnelMeta::default(),
            out_tunnel_id: None,
            out_tunnel_dst: None,
            class,
        }
    }

    /// Resets a recycled packet to an empty frame with full headroom.
    fn reset(&mut self) {
        self.head = HEADROOM;
        self.len = 0;
        self.offload = OffloadMeta::default();
        self.in_port = 0;
        self.tunnel = TunnelMeta::default();
        self.out_tunnel_id = None;
        self.out_tunnel_dst = None;
    }

    /// The frame bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.head..self.head + self.len]
    }

    /// The frame bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..self.head + self.len]
    }

    /// Frame length in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Free bytes in front of the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.head
    }

    /// Free bytes after the frame.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.head - self.len
    }

    /// Size class of the underlying buffer.
    #[inline]
    pub fn size_class(&self) -> SizeClass {
        self.class
    }

    /// The whole writable area after the headroom, for a port to read a
    /// frame into; follow with [`Packet::set_len`].
    #[inline]
    pub fn spare_mut(&mut self) -> &mut [u8] {
        let head = self.head;
        &mut self.buf[head..]
    }

    /// The whole buffer including headroom, for ports whose header
    /// (e.g. virtio_net_hdr) is read directly in front of the frame.
    /// Returns the buffer and the current frame offset.
    #[inline]
    pub fn raw_buffer_mut(&mut self) -> (&mut [u8], usize) {
        (&mut self.buf[..], self.head)
    }

    /// Sets the frame to start `head` bytes into the buffer with `len` bytes.
    ///
    /// # Panics
    /// When the range does not fit the buffer: a port bug, not bad input.
    #[inline]
    pub fn set_frame(&mut self, head: usize, len: usize) {
        assert!(head + len <= self.buf.len(), "frame outside buffer");
        self.head = head;
        self.len = len;
    }

    /// Sets the frame length (bytes after the current head).
    ///
    /// # Panics
    /// When `len` exceeds the space after the head: a port bug.
    #[inline]
    pub fn set_len(&mut self, len: usize) {
        assert!(
            self.head + len <= self.buf.len(),
            "frame longer than buffer"
        );
        self.len = len;
    }

    /// Replaces the frame with a copy of `bytes`. Returns false (frame
    /// unchanged) when `bytes` does not fit this buffer.
    pub fn copy_from(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.buf.len() - HEADROOM {
            return false;
        }
        self.head = HEADROOM;
        self.len = bytes.len();
        self.buf[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(bytes);
        true
    }

    /// Grows the frame by `n` bytes at the front (into the headroom) and
    /// returns the new front bytes. None when the headroom is too small.
    #[inline]
    pub fn push_front(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.head {
            return None;
        }
        self.head -= n;
        self.len += n;
        Some(&mut self.buf[self.head..self.head + n])
    }

    /// Removes `n` bytes from the front of the frame. False when the frame
    /// is shorter than `n`.
    #[inline]
    pub fn pull_front(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.head += n;
        self.len -= n;
        true
    }

    /// Shortens the frame to `len` bytes (no-op when already shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Opens a gap of `n` bytes at frame offset `at` by moving the `at`
    /// bytes in front of it into the headroom; returns the gap. This is how
    /// an 802.1Q tag is inserted after the MAC addresses without copying
    /// the payload. The checksum start is moved with the data.
    pub fn insert_gap(&mut self, at: usize, n: usize) -> Option<&mut [u8]> {
        if n > self.head || at > self.len {
            return None;
        }
        let old = self.head;
        self.buf.copy_within(old..old + at, old - n);
        self.head -= n;
        self.len += n;
        if self.offload.needs_csum() && usize::from(self.offload.csum_start) >= at {
            self.offload.csum_start += n as u16;
        }
        if self.offload.hdr_len as usize >= at && self.offload.gso_type != GsoType::None {
            self.offload.hdr_len += n as u16;
        }
        Some(&mut self.buf[self.head + at..self.head + at + n])
    }

    /// Removes `n` bytes at frame offset `at` by moving the `at` bytes in
    /// front of them forward (the inverse of [`Packet::insert_gap`]).
    pub fn remove_range(&mut self, at: usize, n: usize) -> bool {
        if at + n > self.len {
            return false;
        }
        let old = self.head;
        self.buf.copy_within(old..old + at, old + n);
        self.head += n;
        self.len -= n;
        if self.offload.needs_csum() && usize::from(self.offload.csum_start) >= at + n {
            self.offload.csum_start -= n as u16;
        }
        if self.offload.hdr_len as usize >= at + n && self.offload.gso_type != GsoType::None {
            self.offload.hdr_len -= n as u16;
        }
        true
    }
}

/// Up to [`BATCH_SIZE`] packets, processed together. The vector's capacity
/// is reserved once, so pushing never allocates.
#[derive(Debug)]
pub struct Batch {
    pkts: Vec<Packet>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch with room for [`BATCH_SIZE`] packets.
    pub fn new() -> Self {
        Batch {
            pkts: Vec::with_capacity(BATCH_SIZE),
        }
    }

    /// A batch with no reserved room (allocates on first push); used as a
    /// placeholder while a real batch is borrowed out, without allocating.
    pub const fn placeholder() -> Self {
        Batch { pkts: Vec::new() }
    }

    /// Number of packets.
    #[inline]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// True when the batch holds no packet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// True when no further packet fits.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.pkts.len() >= BATCH_SIZE
    }

    /// Free slots.
    #[inline]
    pub fn room(&self) -> usize {
        BATCH_SIZE.saturating_sub(self.pkts.len())
    }

    /// Adds a packet; gives it back when the batch is full.
    #[inline]
    pub fn push(&mut self, pkt: Packet) -> Result<(), Packet> {
        if self.is_full() {
            return Err(pkt);
        }
        self.pkts.push(pkt);
        Ok(())
    }

    /// Removes and returns the last packet.
    #[inline]
    pub fn pop(&mut self) -> Option<Packet> {
        self.pkts.pop()
    }

    /// The packets.
    #[inline]
    pub fn as_slice(&self) -> &[Packet] {
        &self.pkts
    }

    /// The packets, writable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Packet] {
        &mut self.pkts
    }

    /// Takes all packets out, leaving the batch empty (capacity kept).
    #[inline]
    pub fn drain(&mut self) -> std::vec::Drain<'_, Packet> {
        self.pkts.drain(..)
    }

    /// Keeps the packets for which `keep` returns true, in order.
    pub fn retain_mut(&mut self, keep: impl FnMut(&mut Packet) -> bool) {
        self.pkts.retain_mut(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_front_uses_headroom_without_moving_payload() {
        let mut pool = PacketPool::new(4, 1, 1);
        let mut p = pool.alloc(60).unwrap();
        assert!(p.copy_from(&[0xab; 60]));
        let before = p.data().as_ptr() as usize;
        let hdr = p.push_front(50).unwrap();
        hdr.fill(1);
        assert_eq!(p.len(), 110);
        assert_eq!(p.data().as_ptr() as usize, before - 50);
        assert_eq!(&p.data()[50..], &[0xab; 60][..]);
        assert!(p.push_front(HEADROOM).is_none());
    }

    #[test]
    fn insert_gap_then_remove_range_restores_frame_and_csum_start() {
        let mut pool = PacketPool::new(4, 1, 1);
        let mut p = pool.alloc(64).unwrap();
        let frame: Vec<u8> = (0..64).collect();
        p.copy_from(&frame);
        p.offload.flags = OffloadMeta::F_NEEDS_CSUM;
        p.offload.csum_start = 34;
        p.insert_gap(12, 4)
            .unwrap()
            .copy_from_slice(&[0x81, 0, 0, 10]);
        assert_eq!(&p.data()[..12], &frame[..12]);
        assert_eq!(&p.data()[12..16], &[0x81, 0, 0, 10]);
        assert_eq!(&p.data()[16..], &frame[12..]);
        assert_eq!(p.offload.csum_start, 38);
        assert!(p.remove_range(12, 4));
        assert_eq!(p.data(), &frame[..]);
        assert_eq!(p.offload.csum_start, 34);
    }

    #[test]
    fn batch_refuses_the_thirty_third_packet() {
        let mut pool = PacketPool::new(40, 1, 1);
        let mut b = Batch::new();
        for _ in 0..BATCH_SIZE {
            b.push(pool.alloc(64).unwrap()).unwrap();
        }
        assert!(b.push(pool.alloc(64).unwrap()).is_err());
    }
}
