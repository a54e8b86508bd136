//! Checksums the sender left to the NIC, finished in software.
//!
//! Two cases reach a port that cannot offload them:
//! - a frame with virtio `NEEDS_CSUM` (virtio spec 1.1 §5.1.6.2): the L4
//!   checksum field holds the pseudo-header sum and the checksum over
//!   `csum_start..` to the end of the frame must be stored at
//!   `csum_start + csum_offset` ([`complete_partial_checksum`],
//!   [`finish_packet_checksum`]);
//! - an AF_XDP frame from a namespace with tx checksum offload on: the
//!   field holds the same partial sum but no metadata says so, so the
//!   checksum is computed from scratch from the IP header
//!   ([`fill_l4_checksum`], RFC 9293 §3.1 / RFC 768 / RFC 8200 §8.1).
//!
//! As Linux's `skb_checksum_help` does, a result of 0 is stored as 0xffff
//! (equivalent for TCP, required for UDP where 0 means "no checksum").

use super::checksum::{add_bytes, finish, pseudo_header_ipv4, pseudo_header_ipv6};
use super::rewrite::HeaderLayout;
use crate::packet::{OffloadMeta, Packet};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPV4_MIN_LEN: usize = 20;
const IPV6_LEN: usize = 40;

/// Why a checksum could not be finished; the frame is left unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChecksumError {
    /// `csum_start + csum_offset` does not leave room for the field.
    #[error(
        "frame of {len} bytes: checksum field at csum_start {start} + csum_offset {offset} \
         is outside the frame"
    )]
    FieldOutsideFrame {
        /// Frame length.
        len: usize,
        /// `csum_start`.
        start: usize,
        /// `csum_offset`.
        offset: usize,
    },
    /// A header is cut short.
    #[error("frame of {len} bytes: {header} header needs {need} bytes")]
    Truncated {
        /// Header that does not fit.
        header: &'static str,
        /// Bytes needed.
        need: usize,
        /// Frame length.
        len: usize,
    },
    /// The bytes at `l3_ofs` are neither IPv4 nor IPv6.
    #[error("frame: no IPv4 or IPv6 header at offset {l3_ofs}")]
    NotIp {
        /// Offset looked at.
        l3_ofs: usize,
    },
    /// The IP length ends before the L4 header or after the frame.
    #[error("frame of {len} bytes: IP packet ends at {ip_end}, L4 header starts at {l4_ofs}")]
    BadIpLength {
        /// Frame length.
        len: usize,
        /// End of the IP packet per its length field.
        ip_end: usize,
        /// Offset of the L4 header.
        l4_ofs: usize,
    },
    /// No L4 header, or one without a pseudo-header checksum.
    #[error("frame: IP protocol {proto} at offset {l4_ofs} has no checksum to fill")]
    Unsupported {
        /// IP protocol.
        proto: u8,
        /// L4 offset (0: none).
        l4_ofs: usize,
    },
}

#[inline]
fn read16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

#[inline]
fn store_nonzero(frame: &mut [u8], at: usize, v: u16) {
    let v = if v == 0 { 0xffff } else { v };
    frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Finishes a partial checksum: sums `frame[csum_start..]` (whose checksum
/// field holds the pseudo-header sum) and stores the result at
/// `csum_start + csum_offset`.
pub fn complete_partial_checksum(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), ChecksumError> {
    let field = csum_start + csum_offset;
    if field + 2 > frame.len() {
        return Err(ChecksumError::FieldOutsideFrame {
            len: frame.len(),
            start: csum_start,
            offset: csum_offset,
        });
    }
    let v = finish(add_bytes(0, &frame[csum_start..]));
    store_nonzero(frame, field, v);
    Ok(())
}

/// [`complete_partial_checksum`] driven by a packet's offload metadata;
/// clears `F_NEEDS_CSUM` afterwards. Returns false when the packet did not
/// need it.
pub fn finish_packet_checksum(pkt: &mut Packet) -> Result<bool, ChecksumError> {
    if !pkt.offload.needs_csum() {
        return Ok(false);
    }
    let start = usize::from(pkt.offload.csum_start);
    let offset = usize::from(pkt.offload.csum_offset);
    complete_partial_checksum(pkt.data_mut(), start, offset)?;
    pkt.offload.flags &= !OffloadMeta::F_NEEDS_CSUM;
    Ok(true)
}

/// Computes the TCP, UDP or ICMPv6 checksum of an IPv4/IPv6 frame from
/// scratch, ignoring whatever the field held. The L4 length comes from the
/// IP header, so Ethernet padding is not summed.
pub fn fill_l4_checksum(frame: &mut [u8], layout: &HeaderLayout) -> Result<(), ChecksumError> {
    let (l3, l4, proto) = (layout.l3_ofs, layout.l4_ofs, layout.ip_proto);
    let len = frame.len();
    let truncated = |header, need| ChecksumError::Truncated { header, need, len };
    let version = *frame.get(l3).ok_or(truncated("IP", l3 + 1))? >> 4;
    let ip_end = match version {
        4 if len >= l3 + IPV4_MIN_LEN => l3 + usize::from(read16(frame, l3 + 2)),
        6 if len >= l3 + IPV6_LEN => match read16(frame, l3 + 4) {
            0 => len,
            payload => l3 + IPV6_LEN + usize::from(payload),
        },
        4 => return Err(truncated("IPv4", l3 + IPV4_MIN_LEN)),
        6 => return Err(truncated("IPv6", l3 + IPV6_LEN)),
        _ => return Err(ChecksumError::NotIp { l3_ofs: l3 }),
    };
    let csum_ofs = match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        IPPROTO_ICMPV6 if version == 6 => 2,
        _ => 0,
    };
    if l4 == 0 || csum_ofs == 0 {
        return Err(ChecksumError::Unsupported { proto, l4_ofs: l4 });
    }
    if ip_end > len || ip_end < l4 + csum_ofs + 2 {
        return Err(ChecksumError::BadIpLength {
            len,
            ip_end,
            l4_ofs: l4,
        });
    }
    let l4_len = (ip_end - l4) as u32;
    let pseudo = if version == 4 {
        pseudo_header_ipv4(&frame[l3 + 12..], &frame[l3 + 16..], proto, l4_len)
    } else {
        pseudo_header_ipv6(&frame[l3 + 8..], &frame[l3 + 24..], proto, l4_len)
    };
    let field = l4 + csum_ofs;
    frame[field..field + 2].fill(0);
    let v = finish(add_bytes(pseudo, &frame[l4..ip_end]));
    store_nonzero(frame, field, v);
    Ok(())
}

/// Recomputes an IPv4 header checksum (RFC 791 §3.1) in place.
pub fn fill_ipv4_checksum(frame: &mut [u8], l3_ofs: usize) -> Result<(), ChecksumError> {
    let len = frame.len();
    if len < l3_ofs + IPV4_MIN_LEN {
        return Err(ChecksumError::Truncated {
            header: "IPv4",
            need: l3_ofs + IPV4_MIN_LEN,
            len,
        });
    }
    let ihl = usize::from(frame[l3_ofs] & 0x0f) * 4;
    if frame[l3_ofs] >> 4 != 4 || ihl < IPV4_MIN_LEN {
        return Err(ChecksumError::NotIp { l3_ofs });
    }
    if len < l3_ofs + ihl {
        return Err(ChecksumError::Truncated {
            header: "IPv4",
            need: l3_ofs + ihl,
            len,
        });
    }
    frame[l3_ofs + 10..l3_ofs + 12].fill(0);
    let v = finish(add_bytes(0, &frame[l3_ofs..l3_ofs + ihl]));
    frame[l3_ofs + 10..l3_ofs + 12].copy_from_slice(&v.to_be_bytes());
    Ok(())
}
