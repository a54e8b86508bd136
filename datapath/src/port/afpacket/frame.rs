//! Byte layouts of the AF_PACKET rings: the TPACKET_V3 block descriptor and
//! per-frame header (include/uapi/linux/if_packet.h,
//! Documentation/networking/packet_mmap.rst "TPACKET_V3") and the
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
/// Where a tx frame's data starts in its slot without PACKET_TX_HAS_OFF:
/// `TPACKET3_HDRLEN - sizeof(struct sockaddr_ll)` (af_packet.c,
/// tpacket_parse_header).
pub const TX_DATA_OFFSET: usize = 48;

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
