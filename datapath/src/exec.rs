//! Applying datapath actions to packets.
//!
//! Header edits happen in place: VLAN push/pop open or close a 4-byte gap
//! after the MAC addresses by moving those 12 bytes through the headroom,
//! never the payload. Address and port rewrites patch checksums
//! incrementally through [`crate::wire`] (RFC 1624), partial checksums
//! included.
//!
//! Every output but the last gets a copy from the pool; the last takes the
//! packet itself, so the common single-output case copies nothing.
//!
//! `StormCheck` meters a flooded packet against its ingress port's token
//! bucket ([`crate::security::StormMeter`], one per PMD, refilled by the
//! batch timestamp): no lock, no syscall, no allocation per packet.

use crate::drop::{DropCounters, DropReason};
use crate::flow::PortNo;
use crate::packet::{Packet, PacketPool};
use crate::pipeline::DpAction;
use crate::security::StormMeter;
use crate::wire::{self, HeaderLayout, L4Checksum};

/// Header offsets of a packet, as found by the parser and moved by edits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    /// Start of the L3 header.
    pub l3: u16,
    /// Start of the L4 header (0: none).
    pub l4: u16,
    /// IP protocol (after IPv6 extension headers).
    pub proto: u8,
}

/// A copy of `pkt` in a fresh pool buffer (same metadata), or None when
/// the pool is exhausted.
pub fn clone_packet(pkt: &Packet, pool: &mut PacketPool) -> Option<Packet> {
    let mut c = pool.alloc(pkt.len())?;
    if !c.copy_from(pkt.data()) {
        pool.free(c);
        return None;
    }
    c.offload = pkt.offload;
    c.in_port = pkt.in_port;
    c.tunnel = pkt.tunnel;
    c.out_tunnel_id = pkt.out_tunnel_id;
    c.out_tunnel_dst = pkt.out_tunnel_dst;
    Some(c)
}

/// What [`execute`] did with a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Executed {
    /// Copies handed to the sink.
    pub outputs: usize,
    /// The packet was dropped here and already counted in `drops` (storm
    /// control, expired TTL): the caller must not count it again.
    pub counted: bool,
}

/// Applies `actions` to `pkt`, handing every output to `sink`. Packets
/// that end nowhere go back to `pool`; drops decided here (storm control,
/// expired TTL, no buffer for a copy) are counted in `drops`. `storm`
/// meters `StormCheck`s at its batch timestamp.
pub fn execute(
    actions: &[DpAction],
    mut pkt: Packet,
    mut ofs: Offsets,
    pool: &mut PacketPool,
    drops: &mut DropCounters,
    storm: &mut StormMeter,
    sink: &mut impl FnMut(PortNo, Packet),
) -> Executed {
    let last_out = actions
        .iter()
        .rposition(|a| matches!(a, DpAction::Output(_)));
    let mut done = Executed::default();
    for (i, a) in actions.iter().enumerate() {
        match a {
            DpAction::Output(p) => {
                done.outputs += 1;
                if Some(i) == last_out {
                    sink(*p, pkt);
                    return done;
                }
                match clone_packet(&pkt, pool) {
                    Some(c) => sink(*p, c),
                    None => drops.add(DropReason::NoBuffer, 1),
                }
            }
            DpAction::Clone(inner) => match clone_packet(&pkt, pool) {
                Some(c) => {
                    let e = execute(inner, c, ofs, pool, drops, storm, sink);
                    done.outputs += e.outputs;
                    done.counted |= e.counted;
                }
                None => drops.add(DropReason::NoBuffer, 1),
            },
            DpAction::StormCheck(pps) => {
                if !storm.admit(pkt.in_port, *pps) {
                    drops.add(DropReason::Storm, 1);
                    pool.free(pkt);
                    done.counted = true;
                    return done;
                }
            }
            DpAction::SetVlanVid(vid) => {
                set_tci(&mut pkt, &mut ofs, |tci| (tci & 0xf000) | (vid & 0x0fff));
            }
            DpAction::SetVlanPcp(pcp) => {
                set_tci(&mut pkt, &mut ofs, |tci| {
                    (tci & 0x1fff) | (u16::from(*pcp) << 13)
                });
            }
            DpAction::PushVlan { tpid, tci } => {
                push_tag(&mut pkt, &mut ofs, *tpid, *tci & !crate::flow::VLAN_PRESENT);
            }
            DpAction::PopVlan => {
                if is_tagged(&pkt) && pkt.len() >= 18 && pkt.remove_range(12, 4) {
                    ofs.l3 = ofs.l3.saturating_sub(4);
                    ofs.l4 = ofs.l4.saturating_sub(4);
                }
            }
            DpAction::SetEthSrc(m) => {
                if pkt.len() >= 12 {
                    pkt.data_mut()[6..12].copy_from_slice(m);
                }
            }
            DpAction::SetEthDst(m) => {
                if pkt.len() >= 6 {
                    pkt.data_mut()[0..6].copy_from_slice(m);
                }
            }
            // A rewrite that does not fit the frame (truncated headers)
            // leaves it unchanged; the slow path only emits these for keys
            // that carry the fields.
            DpAction::SetIpv4Src(ip) => {
                let l = layout(&pkt, ofs);
                let _ = wire::set_ipv4_src(pkt.data_mut(), &l, ip.to_be_bytes());
            }
            DpAction::SetIpv4Dst(ip) => {
                let l = layout(&pkt, ofs);
                let _ = wire::set_ipv4_dst(pkt.data_mut(), &l, ip.to_be_bytes());
            }
            DpAction::SetTpSrc(port) => {
                let l = layout(&pkt, ofs);
                let _ = wire::set_tp_src(pkt.data_mut(), &l, *port);
            }
            DpAction::SetTpDst(port) => {
                let l = layout(&pkt, ofs);
                let _ = wire::set_tp_dst(pkt.data_mut(), &l, *port);
            }
            DpAction::DecTtl => {
                if !dec_ttl(&mut pkt, ofs) {
                    drops.add(DropReason::TtlExpired, 1);
                    pool.free(pkt);
                    done.counted = true;
                    return done;
                }
            }
            DpAction::SetTunnelId(id) => pkt.out_tunnel_id = Some(*id),
            DpAction::SetTunnelRemote(ip) => pkt.out_tunnel_dst = Some(*ip),
        }
    }
    pool.free(pkt);
    done
}

fn is_tagged(pkt: &Packet) -> bool {
    let d = pkt.data();
    d.len() >= 16 && matches!(u16::from_be_bytes([d[12], d[13]]), 0x8100 | 0x88a8)
}

fn push_tag(pkt: &mut Packet, ofs: &mut Offsets, tpid: u16, tci: u16) {
    if pkt.len() < 14 {
        return;
    }
    if let Some(gap) = pkt.insert_gap(12, 4) {
        gap[0..2].copy_from_slice(&tpid.to_be_bytes());
        gap[2..4].copy_from_slice(&tci.to_be_bytes());
        ofs.l3 += 4;
        if ofs.l4 != 0 {
            ofs.l4 += 4;
        }
    }
}

fn set_tci(pkt: &mut Packet, ofs: &mut Offsets, f: impl Fn(u16) -> u16) {
    if is_tagged(pkt) {
        let d = pkt.data_mut();
        let tci = f(u16::from_be_bytes([d[14], d[15]]));
        d[14..16].copy_from_slice(&tci.to_be_bytes());
    } else {
        push_tag(pkt, ofs, 0x8100, f(0));
    }
}

/// The header layout the wire rewrite helpers need.
fn layout(pkt: &Packet, ofs: Offsets) -> HeaderLayout {
    HeaderLayout {
        l3_ofs: usize::from(ofs.l3),
        l4_ofs: usize::from(ofs.l4),
        ip_proto: ofs.proto,
        l4_checksum: L4Checksum::of(&pkt.offload),
    }
}

/// Decrements TTL/hop limit; false when it was 0 or 1 (drop).
fn dec_ttl(pkt: &mut Packet, ofs: Offsets) -> bool {
    let l3 = usize::from(ofs.l3);
    let d = pkt.data_mut();
    if d.len() < l3 + 20 {
        return true;
    }
    match d[l3] >> 4 {
        4 => {
            let ttl = d[l3 + 8];
            if ttl <= 1 {
                return false;
            }
            // Cannot fail: the header fits (checked above).
            let _ = wire::set_ipv4_ttl(d, l3, ttl - 1);
            true
        }
        6 if d.len() >= l3 + 40 => {
            if d[l3 + 7] <= 1 {
                return false;
            }
            // The hop limit is in no checksum.
            d[l3 + 7] -= 1;
            true
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drop::DropCounters;

    /// Ethernet + IPv4 + UDP frame with valid checksums (built by hand).
    fn udp_frame() -> Vec<u8> {
        let payload = b"hello vswitch";
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn check(frame: &[u8]) -> etherparse::SlicedPacket<'_> {
        etherparse::SlicedPacket::from_ethernet(frame).unwrap()
    }

    fn run(actions: &[DpAction], frame: &[u8]) -> Vec<(PortNo, Vec<u8>)> {
        let mut pool = PacketPool::new(16, 0, 0);
        let mut p = pool.alloc(frame.len()).unwrap();
        p.copy_from(frame);
        let mut out = Vec::new();
        let mut drops = DropCounters::default();
        execute(
            actions,
            p,
            Offsets {
                l3: 14,
                l4: 34,
                proto: 17,
            },
            &mut pool,
            &mut drops,
            &mut StormMeter::default(),
            &mut |port, pkt| out.push((port, pkt.data().to_vec())),
        );
        out
    }

    fn udp_csum_ok(frame: &[u8]) -> bool {
        let s = check(frame);
        let Some(etherparse::NetSlice::Ipv4(ip)) = s.net else {
            return false;
        };
        let Some(etherparse::TransportSlice::Udp(udp)) = s.transport else {
            return false;
        };
        let want = udp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), udp.payload())
            .unwrap();
        udp.checksum() == want
            && ip.header().header_checksum() == ip.header().to_header().calc_header_checksum()
    }

    #[test]
    fn rewrites_keep_checksums_valid() {
        let f = udp_frame();
        assert!(udp_csum_ok(&f));
        let out = run(
            &[
                DpAction::SetIpv4Src(0x0a01_0203),
                DpAction::SetIpv4Dst(0xc0a8_0001),
                DpAction::SetTpSrc(4444),
                DpAction::SetTpDst(53),
                DpAction::DecTtl,
                DpAction::Output(3),
            ],
            &f,
        );
        assert_eq!(out.len(), 1);
        let g = &out[0].1;
        assert!(udp_csum_ok(g));
        assert_eq!(&g[26..30], &[10, 1, 2, 3]);
        assert_eq!(&g[30..34], &[192, 168, 0, 1]);
        assert_eq!(g[22], 63);
        assert_eq!(&g[34..38], &[0x11, 0x5c, 0, 53]);
    }

    #[test]
    fn push_then_pop_vlan_restores_the_frame_and_copies_go_to_each_output() {
        let f = udp_frame();
        let out = run(
            &[
                DpAction::Output(1),
                DpAction::PushVlan {
                    tpid: 0x8100,
                    tci: 10,
                },
                DpAction::Output(2),
                DpAction::PopVlan,
                DpAction::Output(3),
            ],
            &f,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].1, f);
        assert_eq!(&out[1].1[12..16], &[0x81, 0x00, 0x00, 10]);
        assert_eq!(out[1].1.len(), f.len() + 4);
        assert_eq!(out[2].1, f);
    }

    #[test]
    fn expired_ttl_drops_and_counts() {
        let mut f = udp_frame();
        f[22] = 1;
        let mut pool = PacketPool::new(4, 0, 0);
        let mut p = pool.alloc(f.len()).unwrap();
        p.copy_from(&f);
        let mut drops = DropCounters::default();
        let n = execute(
            &[DpAction::DecTtl, DpAction::Output(1)],
            p,
            Offsets {
                l3: 14,
                l4: 34,
                proto: 17,
            },
            &mut pool,
            &mut drops,
            &mut StormMeter::default(),
            &mut |_, _| panic!("must not output"),
        );
        assert_eq!(
            n,
            Executed {
                outputs: 0,
                counted: true
            }
        );
        assert_eq!(drops.get(DropReason::TtlExpired), 1);
    }

    #[test]
    fn storm_check_passes_the_rate_then_drops_and_counts() {
        let f = udp_frame();
        let mut pool = PacketPool::new(64, 0, 0);
        let mut drops = DropCounters::default();
        let mut storm = StormMeter::default();
        storm.reserve_ports(8);
        storm.now_ms = 1_000;
        let mut delivered = Vec::new();
        // Port 1 floods: an output before the check (a rule's explicit
        // output) goes out regardless, the flood outputs after it only
        // while the bucket has tokens.
        let acts = [
            DpAction::Output(4),
            DpAction::StormCheck(3),
            DpAction::Output(2),
            DpAction::Output(3),
        ];
        for _ in 0..5 {
            let mut p = pool.alloc(f.len()).unwrap();
            p.copy_from(&f);
            p.in_port = 1;
            execute(
                &acts,
                p,
                Offsets {
                    l3: 14,
                    l4: 34,
                    proto: 17,
                },
                &mut pool,
                &mut drops,
                &mut storm,
                &mut |port, pkt| {
                    delivered.push(port);
                    drop(pkt);
                },
            );
        }
        assert_eq!(drops.get(DropReason::Storm), 2);
        assert_eq!(delivered.iter().filter(|p| **p == 2).count(), 3);
        assert_eq!(delivered.iter().filter(|p| **p == 4).count(), 5);
    }

    #[test]
    fn edits_on_short_frames_do_not_panic() {
        let f = vec![0u8; 14];
        let out = run(
            &[
                DpAction::SetIpv4Src(1),
                DpAction::SetTpDst(2),
                DpAction::DecTtl,
                DpAction::PopVlan,
                DpAction::Output(1),
            ],
            &f,
        );
        assert_eq!(out.len(), 1);
    }
}
