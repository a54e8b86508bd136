//! Software segmentation of GSO frames, for egress ports that cannot take
//! a 64 KiB frame: TCP segmentation as a TSO NIC does it (RFC 9293 §3.1
//! header rules, the behaviour of Linux `tcp_gso_segment`) and UDP L4
//! segmentation (USO, Linux `__udp_gso_segment`).
//!
//! Each segment gets a copy of the headers and up to `gso_size` payload
//! bytes in its own pool packet, then:
//! - IPv4: total length, identification (+1 per segment, wrapping) and the
//!   header checksum; IPv6: payload length;
//! - TCP: sequence number advanced by the payload already sent; FIN and PSH
//!   only on the last segment, CWR only on the first; full checksum;
//! - UDP: length and full checksum (0 sent as 0xffff).
//!
//! Header offsets are found again with [`crate::flow::extract`] rather than
//! taken from the ingress parse, because actions (VLAN push, encapsulation)
//! may have moved them; once per 64 KiB frame that costs nothing.

use super::offload::{fill_ipv4_checksum, fill_l4_checksum, ChecksumError};
use super::rewrite::{HeaderLayout, L4Checksum};
use crate::flow::{extract, Field, FlowKey};
use crate::packet::{Batch, GsoType, Packet, PacketPool, SizeClass, TunnelMeta};

const ETH_TYPE_IPV4: u16 = 0x0800;
const ETH_TYPE_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a GSO frame could not be segmented.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GsoError {
    /// The packet has no pending segmentation.
    #[error("frame of {len} bytes: no GSO type set, nothing to segment")]
    NotGso {
        /// Frame length.
        len: usize,
    },
    /// `gso_size` is 0.
    #[error("{gso_type:?} frame of {len} bytes: gso_size is 0")]
    ZeroSegmentSize {
        /// The GSO type.
        gso_type: GsoType,
        /// Frame length.
        len: usize,
    },
    /// The headers do not fit the GSO type.
    #[error("{gso_type:?} frame of {len} bytes: {reason}")]
    BadHeaders {
        /// The GSO type.
        gso_type: GsoType,
        /// Frame length.
        len: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Headers plus `gso_size` exceed the largest buffer.
    #[error("{gso_type:?} frame: segments of {seg_len} bytes fit no packet buffer")]
    SegmentTooLarge {
        /// The GSO type.
        gso_type: GsoType,
        /// Headers plus `gso_size`.
        seg_len: usize,
    },
    /// The pool ran out; the first `emitted` segments were delivered.
    #[error("GSO segment {emitted} of {total}: packet pool exhausted")]
    NoBuffer {
        /// Segments already handed out.
        emitted: usize,
        /// Segments the frame needed.
        total: usize,
    },
    /// The batch cannot take every segment; nothing was emitted.
    #[error("GSO frame needs {needed} batch slots, {room} free")]
    BatchFull {
        /// Segments the frame needs.
        needed: usize,
        /// Free slots in the batch.
        room: usize,
    },
    /// A segment's checksum could not be filled (a bug: headers were
    /// validated before).
    #[error("GSO segment {index}: checksum could not be filled")]
    Checksum {
        /// Segment index.
        index: usize,
        /// The cause.
        #[source]
        source: ChecksumError,
    },
}

/// Where the headers of a GSO frame end and how it is to be cut.
struct Plan {
    l3: usize,
    l4: usize,
    /// End of all headers (start of the payload).
    hdr_end: usize,
    /// End of the IP packet (padding after it is dropped).
    ip_end: usize,
    is_ipv6: bool,
    proto: u8,
    mss: usize,
    segments: usize,
}

fn plan(pkt: &Packet) -> Result<Plan, GsoError> {
    let frame = pkt.data();
    let len = frame.len();
    let gso_type = pkt.offload.gso_type;
    let bad = |reason| GsoError::BadHeaders {
        gso_type,
        len,
        reason,
    };
    let (proto, want_ipv6) = match gso_type {
        GsoType::None => return Err(GsoError::NotGso { len }),
        GsoType::TcpV4 => (IPPROTO_TCP, Some(false)),
        GsoType::TcpV6 => (IPPROTO_TCP, Some(true)),
        GsoType::UdpL4 => (IPPROTO_UDP, None),
    };
    let mss = usize::from(pkt.offload.gso_size);
    if mss == 0 {
        return Err(GsoError::ZeroSegmentSize { gso_type, len });
    }
    let x = extract(frame, 0, &TunnelMeta::default())
        .map_err(|_| bad("shorter than its Ethernet header"))?;
    if let Some(a) = x.anomaly {
        return Err(bad(a.name()));
    }
    let key: &FlowKey = &x.key;
    let is_ipv6 = match key.eth_type() {
        ETH_TYPE_IPV4 => false,
        ETH_TYPE_IPV6 => true,
        _ => return Err(bad("not IPv4 or IPv6")),
    };
    if want_ipv6.is_some_and(|v6| v6 != is_ipv6) {
        return Err(bad("IP version does not match the GSO type"));
    }
    if key.get(Field::NwFrag) != 0 {
        return Err(bad("IP fragment"));
    }
    if key.nw_proto() != proto {
        return Err(bad("L4 protocol does not match the GSO type"));
    }
    let (l3, l4) = (usize::from(x.l3_ofs), usize::from(x.l4_ofs));
    let hdr_end = if proto == IPPROTO_TCP {
        l4 + usize::from(frame[l4 + 12] >> 4) * 4
    } else {
        l4 + UDP_LEN
    };
    // extract validated the IP length against the frame.
    let ip_end = if is_ipv6 {
        match u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) {
            0 => len,
            payload => l3 + IPV6_LEN + usize::from(payload),
        }
    } else {
        l3 + usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]))
    };
    if SizeClass::for_len(hdr_end + mss).is_none() {
        return Err(GsoError::SegmentTooLarge {
            gso_type,
            seg_len: hdr_end + mss,
        });
    }
    let payload = ip_end - hdr_end;
    Ok(Plan {
        l3,
        l4,
        hdr_end,
        ip_end,
        is_ipv6,
        proto,
        mss,
        segments: payload.div_ceil(mss).max(1),
    })
}

/// Number of segments [`segment`] would make of `pkt`.
pub fn segment_count(pkt: &Packet) -> Result<usize, GsoError> {
    plan(pkt).map(|p| p.segments)
}

#[inline]
fn write16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
fn read16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// Fixes the headers of segment `index` whose payload starts `sent` bytes
/// into the original payload.
fn fix_headers(f: &mut [u8], p: &Plan, index: usize, sent: usize) -> Result<(), ChecksumError> {
    let seg_len = f.len();
    let last = index + 1 == p.segments;
    if p.is_ipv6 {
        write16(f, p.l3 + 4, (seg_len - p.l3 - IPV6_LEN) as u16);
    } else {
        write16(f, p.l3 + 2, (seg_len - p.l3) as u16);
        let id = read16(f, p.l3 + 4).wrapping_add(index as u16);
        write16(f, p.l3 + 4, id);
        fill_ipv4_checksum(f, p.l3)?;
    }
    if p.proto == IPPROTO_TCP {
        let seq_at = p.l4 + 4;
        let seq = u32::from_be_bytes([f[seq_at], f[seq_at + 1], f[seq_at + 2], f[seq_at + 3]]);
        let seq = seq.wrapping_add(sent as u32);
        f[seq_at..seq_at + 4].copy_from_slice(&seq.to_be_bytes());
        if !last {
            f[p.l4 + 13] &= !(TCP_FIN | TCP_PSH);
        }
        if index != 0 {
            f[p.l4 + 13] &= !TCP_CWR;
        }
    } else {
        write16(f, p.l4 + 4, (seg_len - p.l4) as u16);
    }
    let layout = HeaderLayout {
        l3_ofs: p.l3,
        l4_ofs: p.l4,
        ip_proto: p.proto,
        l4_checksum: L4Checksum::Complete,
    };
    fill_l4_checksum(f, &layout)
}

/// Cuts the GSO frame `pkt` into segments of at most `gso_size` payload
/// bytes, each in a packet from `pool` with complete checksums and no
/// offload flags, handed to `emit` in order. Returns the segment count.
/// `pkt` itself is not changed; the caller frees it.
pub fn segment(
    pkt: &Packet,
    pool: &mut PacketPool,
    mut emit: impl FnMut(Packet),
) -> Result<usize, GsoError> {
    let p = plan(pkt)?;
    let frame = pkt.data();
    for index in 0..p.segments {
        let sent = index * p.mss;
        let start = p.hdr_end + sent;
        let end = (start + p.mss).min(p.ip_end);
        let seg_len = p.hdr_end + (end - start);
        let Some(mut out) = pool.alloc(seg_len) else {
            return Err(GsoError::NoBuffer {
                emitted: index,
                total: p.segments,
            });
        };
        let buf = out.spare_mut();
        buf[..p.hdr_end].copy_from_slice(&frame[..p.hdr_end]);
        buf[p.hdr_end..seg_len].copy_from_slice(&frame[start..end]);
        out.set_len(seg_len);
        out.in_port = pkt.in_port;
        out.tunnel = pkt.tunnel;
        out.out_tunnel_id = pkt.out_tunnel_id;
        if let Err(source) = fix_headers(out.data_mut(), &p, index, sent) {
            pool.free(out);
            return Err(GsoError::Checksum { index, source });
        }
        emit(out);
    }
    Ok(p.segments)
}

/// [`segment`] into a batch; refuses (emitting nothing) when the batch has
/// fewer free slots than segments.
pub fn segment_into_batch(
    pkt: &Packet,
    pool: &mut PacketPool,
    batch: &mut Batch,
) -> Result<usize, GsoError> {
    let needed = segment_count(pkt)?;
    if batch.room() < needed {
        return Err(GsoError::BatchFull {
            needed,
            room: batch.room(),
        });
    }
    segment(pkt, pool, |seg| {
        // Room was checked above, so the batch takes every segment.
        let pushed = batch.push(seg);
        debug_assert!(pushed.is_ok());
    })
}
