//! The 12-byte `virtio_net_hdr_v1` a TAP with `IFF_VNET_HDR` puts in front
//! of every frame (virtio spec 1.1 §5.1.6; include/uapi/linux/virtio_net.h),
//! converted to and from [`OffloadMeta`].
//!
//! Fields are in the host's byte order: the TUN driver uses legacy virtio
//! endianness (native) unless TUNSETVNETLE/BE is set, which we never do.
//! `csum_start` counts from the Ethernet header, as in `OffloadMeta`.

use crate::packet::{GsoType, OffloadMeta};

/// Header length set with TUNSETVNETHDRSZ (`virtio_net_hdr_v1`, with the
/// `num_buffers` field the kernel leaves unwritten on read).
pub const VNET_HDR_LEN: usize = 12;

const GSO_ECN: u8 = 0x80;

/// Why a header from the kernel was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnetHdrError {
    /// Fewer than [`VNET_HDR_LEN`] bytes.
    Short,
    /// A `gso_type` this switch does not know.
    UnknownGsoType(u8),
}

/// Parses a header. Unknown flag bits are kept; unknown GSO types refused.
pub fn decode(b: &[u8]) -> Result<OffloadMeta, VnetHdrError> {
    let b: &[u8; VNET_HDR_LEN] = b
        .get(..VNET_HDR_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(VnetHdrError::Short)?;
    let gso_raw = b[1];
    let gso_type = GsoType::from_virtio(gso_raw).ok_or(VnetHdrError::UnknownGsoType(gso_raw))?;
    let field = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    Ok(OffloadMeta {
        flags: b[0],
        gso_type,
        gso_ecn: gso_raw & GSO_ECN != 0,
        hdr_len: field(2),
        gso_size: field(4),
        csum_start: field(6),
        csum_offset: field(8),
    })
}

/// Writes the header for `meta` into `out` (which must be
/// [`VNET_HDR_LEN`] bytes; shorter slices are left untouched).
#[inline]
pub fn encode(meta: &OffloadMeta, out: &mut [u8]) {
    let Some(out) = out.get_mut(..VNET_HDR_LEN) else {
        return;
    };
    let mut gso = meta.gso_type.to_virtio();
    if meta.gso_ecn && meta.gso_type != GsoType::None {
        gso |= GSO_ECN;
    }
    out[0] = meta.flags;
    out[1] = gso;
    out[2..4].copy_from_slice(&meta.hdr_len.to_ne_bytes());
    out[4..6].copy_from_slice(&meta.gso_size.to_ne_bytes());
    out[6..8].copy_from_slice(&meta.csum_start.to_ne_bytes());
    out[8..10].copy_from_slice(&meta.csum_offset.to_ne_bytes());
    out[10..12].copy_from_slice(&0u16.to_ne_bytes()); // num_buffers: unused by TAP
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as read from a TAP (x86-64, Linux 6.18) in front of a
    /// 65,226-byte TCPv4 GSO frame: NEEDS_CSUM, TCPV4, hdr_len 66,
    /// gso_size 1448, csum_start 34 (14 Ethernet + 20 IPv4), csum_offset 16.
    fn tcp4_gso_header() -> [u8; 12] {
        let mut h = [0u8; 12];
        h[0] = 1;
        h[1] = 1;
        h[2..4].copy_from_slice(&66u16.to_ne_bytes());
        h[4..6].copy_from_slice(&1448u16.to_ne_bytes());
        h[6..8].copy_from_slice(&34u16.to_ne_bytes());
        h[8..10].copy_from_slice(&16u16.to_ne_bytes());
        h[10..12].copy_from_slice(&0xabcdu16.to_ne_bytes()); // stale num_buffers
        h
    }

    #[test]
    fn tcp4_gso_header_decodes_to_offload_meta() {
        let m = decode(&tcp4_gso_header()).unwrap();
        assert_eq!(
            m,
            OffloadMeta {
                flags: OffloadMeta::F_NEEDS_CSUM,
                gso_type: GsoType::TcpV4,
                gso_ecn: false,
                hdr_len: 66,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
            }
        );
        assert!(m.needs_csum() && m.is_gso());
    }

    #[test]
    fn encode_then_decode_round_trips_and_zeroes_num_buffers() {
        let m = decode(&tcp4_gso_header()).unwrap();
        let mut out = [0xffu8; 12];
        encode(&m, &mut out);
        assert_eq!(&out[..10], &tcp4_gso_header()[..10]);
        assert_eq!(&out[10..], &[0, 0]);
        assert_eq!(decode(&out).unwrap(), m);
    }

    #[test]
    fn ecn_bit_is_kept_for_gso_frames_only() {
        let mut h = tcp4_gso_header();
        h[1] = 4 | 0x80; // TCPV6 | ECN
        let m = decode(&h).unwrap();
        assert_eq!(m.gso_type, GsoType::TcpV6);
        assert!(m.gso_ecn);
        let mut out = [0u8; 12];
        encode(&m, &mut out);
        assert_eq!(out[1], 0x84);
        let plain = OffloadMeta {
            gso_ecn: true,
            ..OffloadMeta::default()
        };
        encode(&plain, &mut out);
        assert_eq!(out[1], 0);
    }

    #[test]
    fn plain_frame_header_is_all_zero() {
        let mut out = [0xffu8; 12];
        encode(&OffloadMeta::default(), &mut out);
        assert_eq!(out, [0u8; 12]);
    }

    #[test]
    fn short_or_unknown_headers_are_refused() {
        assert_eq!(decode(&[0u8; 11]), Err(VnetHdrError::Short));
        let mut h = tcp4_gso_header();
        h[1] = 3; // VIRTIO_NET_HDR_GSO_UDP (UFO), never negotiated
        assert_eq!(decode(&h), Err(VnetHdrError::UnknownGsoType(3)));
    }
}
