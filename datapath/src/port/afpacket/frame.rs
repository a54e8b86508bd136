//! Byte layouts of the AF_PACKET rings: the TPACKET_V3 block descriptor and
//! per-frame header, the TPACKET_V2 fixed-size frame slot
//! (`struct tpacket2_hdr`) for rx and tx (include/uapi/linux/if_packet.h,
//! Documentation/networking/packet_mmap.rst "TPACKET_V2"/"TPACKET_V3") and the
//! `virtio_net_hdr` that PACKET_VNET_HDR puts in front of each frame
//! (include/uapi/linux/virtio_net.h; little-endian, as `vio_le()` is on
//! every Linux architecture without legacy big-endian virtio).
//!
//! Parsing is on byte slices with every offset bounds-checked, so a corrupt
//! ring yields an error, never an out-of-bounds read.

use crate::packet::{GsoType, OffloadMeta};

/// Size of `struct virtio_net_hdr` (no `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
/// Offset of `block_status` in `struct tpacket_block_desc`.
pub const BLOCK_STATUS: usize = 8;
/// Offset of `num_pkts`.
const BLOCK_NUM_PKTS: usize = 12;
/// Offset of `offset_to_first_pkt`.
const BLOCK_FIRST: usize = 16;
/// Offset of `tp_status` in `struct tpacket3_hdr`.
pub const TP_STATUS: usize = 20;
/// Offset of `tp_len` in `struct tpacket3_hdr`.
pub const TP_LEN: usize = 16;
/// Where a tx frame's data starts in its slot without PACKET_TX_HAS_OFF:
/// `TPACKET3_HDRLEN - sizeof(struct sockaddr_ll)` (af_packet.c,
/// tpacket_parse_header).
pub const TX_DATA_OFFSET: usize = 48;

/// Offset of `tp_status` in `struct tpacket2_hdr` (the slot's first word).
pub const V2_STATUS: usize = 0;
/// Offset of `tp_len` in `struct tpacket2_hdr`.
pub const V2_LEN: usize = 4;
/// Offset of `tp_snaplen`.
const V2_SNAPLEN: usize = 8;
/// Offset of `tp_mac` (u16, from the slot start).
const V2_MAC: usize = 12;
/// Offset of `tp_vlan_tci` (u16).
const V2_VLAN_TCI: usize = 24;
/// Offset of `tp_vlan_tpid` (u16).
const V2_VLAN_TPID: usize = 26;
/// `TPACKET_ALIGN(sizeof(struct tpacket2_hdr))`.
pub const V2_HDR_LEN: usize = 32;
/// Where a V2 tx frame's data starts: `TPACKET2_HDRLEN - sizeof(struct
/// sockaddr_ll)` = 52 - 20 (af_packet.c, tpacket_parse_header).
pub const V2_TX_DATA_OFFSET: usize = 32;

/// `tp_status`: the kernel owns the rx slot / block.
pub const TP_STATUS_KERNEL: u32 = 0;
/// `tp_status`: user space owns the rx slot / block.
pub const TP_STATUS_USER: u32 = 1;
/// `tp_status` (V1/V2 rx): the frame did not fit the slot and the kernel
/// also queued the whole skb on the socket's receive queue.
pub const TP_STATUS_COPY: u32 = 1 << 1;
/// `tp_status`: `tp_vlan_tci` is valid.
pub const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
/// `tp_status`: `tp_vlan_tpid` is valid.
pub const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
/// Tx `tp_status`: the slot is free for user space.
pub const TP_STATUS_AVAILABLE: u32 = 0;
/// Tx `tp_status`: user space asks the kernel to send the slot.
pub const TP_STATUS_SEND_REQUEST: u32 = 1;
/// Tx `tp_status`: the kernel rejected the slot's frame.
pub const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Packets and first-packet offset of a block the kernel handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// Packets in the block.
    pub num_pkts: u32,
    /// Offset of the first `tpacket3_hdr` from the block start.
    pub first: u32,
}

/// Reads a block descriptor.
pub fn block_header(block: &[u8]) -> Option<BlockHeader> {
    Some(BlockHeader {
        num_pkts: u32_at(block, BLOCK_NUM_PKTS)?,
        first: u32_at(block, BLOCK_FIRST)?,
    })
}

/// One received frame inside a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFrame {
    /// Offset of the next frame's header from this one's (0: last).
    pub next_offset: u32,
    /// Offset of the frame data (from the Ethernet header) in the block.
    pub data: usize,
    /// Bytes captured.
    pub snaplen: u32,
    /// Bytes on the wire (larger than snaplen when truncated).
    pub len: u32,
    /// `tp_status` bits (`TP_STATUS_VLAN_VALID`, ...).
    pub status: u32,
    /// 802.1Q TCI stripped by the device, when `TP_STATUS_VLAN_VALID`.
    pub vlan_tci: u16,
    /// Its TPID, when `TP_STATUS_VLAN_TPID_VALID`.
    pub vlan_tpid: u16,
}

/// Reads the `tpacket3_hdr` at `off` in `block`, checking that the data (and
/// the vnet header in front of it) lie inside the block.
pub fn rx_frame(block: &[u8], off: usize) -> Option<RxFrame> {
    let h = block.get(off..off + 48)?;
    let snaplen = u32_at(h, 12)?;
    let mac = usize::from(u16_at(h, 24)?);
    let data = off + mac;
    if mac < VNET_HDR_LEN || data + snaplen as usize > block.len() {
        return None;
    }
    Some(RxFrame {
        next_offset: u32_at(h, 0)?,
        data,
        snaplen,
        len: u32_at(h, 16)?,
        status: u32_at(h, TP_STATUS)?,
        vlan_tci: u32_at(h, 32)? as u16,
        vlan_tpid: u16_at(h, 36)?,
    })
}

impl RxFrame {
    /// True when the ring holds only part of the frame (`tp_snaplen <
    /// tp_len`): such a frame is never delivered from the ring.
    pub fn truncated(&self) -> bool {
        self.snaplen < self.len
    }

    /// True when the kernel queued the whole frame on the socket as well
    /// (`TP_STATUS_COPY`, TPACKET_V1/V2 only).
    pub fn copied(&self) -> bool {
        self.status & TP_STATUS_COPY != 0
    }
}

/// Reads the `tpacket2_hdr` at the start of an rx `slot` (the whole
/// fixed-size frame slot), checking that the data, and the vnet header in
/// front of it, lie inside the slot behind the header and that the kernel
/// did not claim more captured bytes than the frame has.
pub fn v2_rx_slot(slot: &[u8]) -> Option<RxFrame> {
    let h = slot.get(..V2_HDR_LEN)?;
    let snaplen = u32_at(h, V2_SNAPLEN)?;
    let len = u32_at(h, V2_LEN)?;
    let mac = usize::from(u16_at(h, V2_MAC)?);
    if mac < V2_HDR_LEN + VNET_HDR_LEN || snaplen > len || mac + snaplen as usize > slot.len() {
        return None;
    }
    Some(RxFrame {
        next_offset: 0,
        data: mac,
        snaplen,
        len,
        status: u32_at(h, V2_STATUS)?,
        vlan_tci: u16_at(h, V2_VLAN_TCI)?,
        vlan_tpid: u16_at(h, V2_VLAN_TPID)?,
    })
}

/// Where the tx header fields of one ring version sit in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLayout {
    /// Offset of `tp_status`.
    pub status: usize,
    /// Offset of `tp_len`.
    pub len: usize,
    /// Offset of the frame data (the vnet header comes first).
    pub data: usize,
    /// V3 slots start with `tp_next_offset`, which must be 0.
    pub has_next_offset: bool,
}

/// TPACKET_V3 tx slot layout.
pub const TX_V3: TxLayout = TxLayout {
    status: TP_STATUS,
    len: TP_LEN,
    data: TX_DATA_OFFSET,
    has_next_offset: true,
};

/// TPACKET_V2 tx slot layout.
pub const TX_V2: TxLayout = TxLayout {
    status: V2_STATUS,
    len: V2_LEN,
    data: V2_TX_DATA_OFFSET,
    has_next_offset: false,
};

/// Writes the tx header of a slot (all but `tp_status`, which the caller
/// publishes last) for a frame of `frame_len` bytes whose vnet header and
/// data the caller writes at `layout.data`. Returns false, writing nothing,
/// when the slot is too small.
pub fn write_tx_header(layout: &TxLayout, slot: &mut [u8], frame_len: usize) -> bool {
    let tp_len = frame_len + VNET_HDR_LEN;
    if layout.data + tp_len > slot.len() || slot.len() < layout.len + 4 {
        return false;
    }
    if layout.has_next_offset {
        slot[0..4].fill(0);
    }
    slot[layout.len..layout.len + 4].copy_from_slice(&(tp_len as u32).to_le_bytes());
    true
}

/// Offload state from a `virtio_net_hdr`; None for an unknown GSO type.
pub fn parse_vnet(h: &[u8]) -> Option<OffloadMeta> {
    let h = h.get(..VNET_HDR_LEN)?;
    let gso = h[1];
    Some(OffloadMeta {
        flags: h[0],
        gso_type: GsoType::from_virtio(gso)?,
        gso_ecn: gso & 0x80 != 0,
        hdr_len: u16_at(h, 2)?,
        gso_size: u16_at(h, 4)?,
        csum_start: u16_at(h, 6)?,
        csum_offset: u16_at(h, 8)?,
    })
}

/// Writes a `virtio_net_hdr` for `m` into the first 10 bytes of `out`.
pub fn write_vnet(m: &OffloadMeta, out: &mut [u8]) {
    out[0] = m.flags & (OffloadMeta::F_NEEDS_CSUM | OffloadMeta::F_DATA_VALID);
    out[1] = m.gso_type.to_virtio() | if m.gso_ecn { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&m.hdr_len.to_le_bytes());
    out[4..6].copy_from_slice(&m.gso_size.to_le_bytes());
    out[6..8].copy_from_slice(&m.csum_start.to_le_bytes());
    out[8..10].copy_from_slice(&m.csum_offset.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block as the kernel fills it: descriptor, then two frames, each
    /// header 16-byte aligned with the vnet header right before the MAC.
    fn block_with_two_frames() -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[BLOCK_NUM_PKTS..BLOCK_NUM_PKTS + 4].copy_from_slice(&2u32.to_le_bytes());
        b[BLOCK_FIRST..BLOCK_FIRST + 4].copy_from_slice(&48u32.to_le_bytes());
        let put = |b: &mut Vec<u8>, off: usize, next: u32, len: u32, mac: u16, byte: u8| {
            b[off..off + 4].copy_from_slice(&next.to_le_bytes());
            b[off + 12..off + 16].copy_from_slice(&len.to_le_bytes());
            b[off + 16..off + 20].copy_from_slice(&len.to_le_bytes());
            b[off + 20..off + 24].copy_from_slice(&1u32.to_le_bytes());
            b[off + 24..off + 26].copy_from_slice(&mac.to_le_bytes());
            let data = off + usize::from(mac);
            // vnet: NEEDS_CSUM, TCPv4 GSO, hdr_len 66, gso_size 1448,
            // csum_start 34, csum_offset 16
            b[data - 10..data].copy_from_slice(&[1, 1, 66, 0, 0xa8, 5, 34, 0, 16, 0]);
            b[data..data + len as usize].fill(byte);
        };
        put(&mut b, 48, 256, 100, 82, 0xaa);
        put(&mut b, 48 + 256, 0, 60, 82, 0xbb);
        b
    }

    #[test]
    fn frames_of_a_v3_block_are_walked_by_next_offset() {
        let b = block_with_two_frames();
        let h = block_header(&b).unwrap();
        assert_eq!(
            h,
            BlockHeader {
                num_pkts: 2,
                first: 48
            }
        );
        let f1 = rx_frame(&b, h.first as usize).unwrap();
        assert_eq!((f1.snaplen, f1.len, f1.data), (100, 100, 130));
        assert!(b[f1.data..f1.data + 100].iter().all(|x| *x == 0xaa));
        let f2 = rx_frame(&b, 48 + f1.next_offset as usize).unwrap();
        assert_eq!((f2.snaplen, f2.next_offset), (60, 0));
        assert!(b[f2.data..f2.data + 60].iter().all(|x| *x == 0xbb));
        let m = parse_vnet(&b[f1.data - VNET_HDR_LEN..f1.data]).unwrap();
        assert!(m.needs_csum());
        assert_eq!(m.gso_type, GsoType::TcpV4);
        assert_eq!(
            (m.hdr_len, m.gso_size, m.csum_start, m.csum_offset),
            (66, 1448, 34, 16)
        );
    }

    #[test]
    fn frame_pointing_outside_the_block_is_rejected() {
        let mut b = block_with_two_frames();
        b[48 + 12..48 + 16].copy_from_slice(&5000u32.to_le_bytes());
        assert!(rx_frame(&b, 48).is_none());
        assert!(rx_frame(&b, 4090).is_none());
    }

    /// A V2 rx slot as the kernel fills it with vnet_hdr on: header, the
    /// sockaddr_ll after it, the vnet header right before the MAC header at
    /// `tp_mac` = TPACKET_ALIGN(52 + 16) + 10 - 14 = 76.
    fn v2_slot(len: u32, snaplen: u32, status: u32) -> Vec<u8> {
        let mut s = vec![0u8; 2048];
        s[0..4].copy_from_slice(&status.to_le_bytes());
        s[4..8].copy_from_slice(&len.to_le_bytes());
        s[8..12].copy_from_slice(&snaplen.to_le_bytes());
        s[12..14].copy_from_slice(&76u16.to_le_bytes());
        s[14..16].copy_from_slice(&90u16.to_le_bytes());
        s[24..26].copy_from_slice(&0x200au16.to_le_bytes());
        s[26..28].copy_from_slice(&0x88a8u16.to_le_bytes());
        s[66..76].copy_from_slice(&[1, 4, 86, 0, 0x94, 5, 54, 0, 16, 0]);
        let end = 76 + snaplen as usize;
        for (i, b) in s[76..end].iter_mut().enumerate() {
            *b = i as u8;
        }
        s
    }

    #[test]
    fn v2_slot_is_parsed_with_vlan_and_vnet_header() {
        let st = TP_STATUS_USER | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID;
        let s = v2_slot(1514, 1514, st);
        let f = v2_rx_slot(&s).unwrap();
        assert_eq!((f.data, f.snaplen, f.len, f.status), (76, 1514, 1514, st));
        assert_eq!((f.vlan_tci, f.vlan_tpid), (0x200a, 0x88a8));
        assert!(!f.truncated() && !f.copied());
        assert_eq!(s[f.data + 300], 300u32 as u8);
        let m = parse_vnet(&s[f.data - VNET_HDR_LEN..f.data]).unwrap();
        assert_eq!(m.gso_type, GsoType::TcpV6);
        assert_eq!((m.hdr_len, m.gso_size, m.csum_start), (86, 1428, 54));
    }

    #[test]
    fn v2_slot_of_a_big_frame_is_truncated_and_flagged_copy() {
        // A 64 KiB GSO frame in a 2048-byte slot: 1972 bytes captured.
        let s = v2_slot(65_000, 1972, TP_STATUS_USER | TP_STATUS_COPY);
        let f = v2_rx_slot(&s).unwrap();
        assert!(f.truncated() && f.copied());
        assert_eq!((f.snaplen, f.len), (1972, 65_000));
        // The same truncation without COPY: the receive buffer was full.
        let f = v2_rx_slot(&v2_slot(9014, 1972, TP_STATUS_USER)).unwrap();
        assert!(f.truncated() && !f.copied());
    }

    #[test]
    fn v2_slot_with_bad_offsets_is_rejected() {
        // Data running past the slot end.
        let mut s = v2_slot(1514, 1514, TP_STATUS_USER);
        s[8..12].copy_from_slice(&1980u32.to_le_bytes());
        s[4..8].copy_from_slice(&1980u32.to_le_bytes());
        assert!(v2_rx_slot(&s).is_none());
        // tp_mac inside the header: no room for the vnet header.
        let mut s = v2_slot(60, 60, TP_STATUS_USER);
        s[12..14].copy_from_slice(&20u16.to_le_bytes());
        assert!(v2_rx_slot(&s).is_none());
        // More captured than the frame has.
        let mut s = v2_slot(60, 60, TP_STATUS_USER);
        s[8..12].copy_from_slice(&61u32.to_le_bytes());
        assert!(v2_rx_slot(&s).is_none());
        // A slot shorter than its header.
        assert!(v2_rx_slot(&s[..31]).is_none());
    }

    #[test]
    fn tx_headers_of_both_versions_put_the_length_where_the_kernel_reads_it() {
        let mut s = vec![0xeeu8; 4096];
        assert!(write_tx_header(&TX_V2, &mut s, 1514));
        assert_eq!(&s[4..8], &1524u32.to_le_bytes());
        assert_eq!(&s[0..4], &[0xee; 4], "V2 status left to the caller");
        let mut s = vec![0xeeu8; 4096];
        assert!(write_tx_header(&TX_V3, &mut s, 60));
        assert_eq!(&s[0..4], &[0; 4], "tp_next_offset cleared");
        assert_eq!(&s[16..20], &70u32.to_le_bytes());
        assert_eq!(&s[20..24], &[0xee; 4], "V3 status left to the caller");
        let mut s = vec![0u8; 4096];
        assert!(!write_tx_header(&TX_V2, &mut s, 4096 - 32 - 9));
        assert!(s.iter().all(|b| *b == 0));
    }

    #[test]
    fn vnet_header_round_trips() {
        let m = OffloadMeta {
            flags: OffloadMeta::F_NEEDS_CSUM,
            gso_type: GsoType::TcpV6,
            gso_ecn: true,
            hdr_len: 86,
            gso_size: 1428,
            csum_start: 54,
            csum_offset: 16,
        };
        let mut h = [0u8; VNET_HDR_LEN];
        write_vnet(&m, &mut h);
        assert_eq!(h, [1, 0x84, 86, 0, 0x94, 5, 54, 0, 16, 0]);
        assert_eq!(parse_vnet(&h), Some(m));
        assert_eq!(parse_vnet(&[0, 9, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}
