//! Property tests for frame parsing (`flow::extract`) and the wire helpers.
//!
//! Frames are built from random header specs with etherparse's header
//! types (the oracle for the byte layout), and the extracted `FlowKey` must
//! equal the key the spec describes, field by field (OVS field semantics,
//! see `datapath/src/flow/extract.rs`). Random bytes, truncations and bit
//! flips of valid frames must never panic (a panic is how an out-of-bounds
//! read would show in safe Rust) and must give offsets inside the frame;
//! the wire helpers get the same treatment.

use datapath::flow::{
    extract, mac_to_u64, Anomaly, Field, FlowKey, FRAG_ANY, FRAG_LATER, MAX_IPV6_EXT_HEADERS,
    VLAN_PRESENT,
};
use datapath::packet::{GsoType, OffloadMeta, PacketPool, SizeClass, TunnelMeta};
use datapath::wire::{self, HeaderLayout};
use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, Icmpv4Header, Icmpv4Type,
    Icmpv6Header, Icmpv6Type, IpAuthHeader, IpDscp, IpEcn, IpFragOffset, IpNumber, Ipv4Header,
    Ipv6FlowLabel, Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, SingleVlanHeader, TcpHeader,
    UdpHeader, VlanId, VlanPcp,
};
use proptest::collection::vec;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Vlan {
    tpid: u16,
    pcp: u8,
    dei: bool,
    vid: u16,
}

impl Vlan {
    fn tci(&self) -> u16 {
        u16::from(self.pcp) << 13 | u16::from(self.dei) << 12 | self.vid
    }
}

#[derive(Clone, Debug)]
enum L4 {
    Tcp {
        src: u16,
        dst: u16,
        seq: u32,
        flags: u8,
        ns: bool,
        options: usize,
    },
    Udp {
        src: u16,
        dst: u16,
    },
    /// ICMPv4 under IPv4, ICMPv6 under IPv6.
    Icmp {
        ty: u8,
        code: u8,
    },
    /// A protocol without L4 fields.
    Opaque {
        proto: u8,
    },
}

#[derive(Clone, Debug)]
enum Ext {
    /// Hop-by-hop (0), routing (43) or destination options (60), with
    /// `units` extra 8-byte units.
    Raw {
        kind: u8,
        units: usize,
    },
    Fragment {
        offset: u16,
        more: bool,
    },
    Auth {
        icv_words: usize,
    },
}

#[derive(Clone, Debug)]
enum L3 {
    Arp {
        rarp: bool,
        op: u16,
        sha: [u8; 6],
        spa: [u8; 4],
        tha: [u8; 6],
        tpa: [u8; 4],
    },
    Ipv4 {
        src: [u8; 4],
        dst: [u8; 4],
        dscp: u8,
        ecn: u8,
        ttl: u8,
        id: u16,
        df: bool,
        mf: bool,
        frag_offset: u16,
        options: Vec<u8>,
        l4: L4,
    },
    Ipv6 {
        src: [u8; 16],
        dst: [u8; 16],
        tclass: u8,
        label: u32,
        hops: u8,
        exts: Vec<Ext>,
        l4: L4,
    },
    Other {
        eth_type: u16,
    },
}

#[derive(Clone, Debug)]
struct Spec {
    in_port: u32,
    tunnel: TunnelMeta,
    src: [u8; 6],
    dst: [u8; 6],
    vlans: Vec<Vlan>,
    l3: L3,
    payload: Vec<u8>,
    pad_to_60: bool,
}

fn vlan() -> impl Strategy<Value = Vlan> {
    (
        prop_oneof![Just(0x8100u16), Just(0x88a8)],
        0u8..8,
        any::<bool>(),
        0u16..4096,
    )
        .prop_map(|(tpid, pcp, dei, vid)| Vlan {
            tpid,
            pcp,
            dei,
            vid,
        })
}

fn l4(ipv6: bool) -> impl Strategy<Value = L4> {
    let opaque = if ipv6 {
        prop_oneof![Just(47u8), Just(50), Just(59), Just(89), Just(103)].boxed()
    } else {
        prop_oneof![Just(47u8), Just(50), Just(89), Just(103), Just(58)].boxed()
    };
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u8>(),
            any::<bool>(),
            0usize..11
        )
            .prop_map(|(src, dst, seq, flags, ns, words)| L4::Tcp {
                src,
                dst,
                seq,
                flags,
                ns,
                options: words * 4,
            }),
        (any::<u16>(), any::<u16>()).prop_map(|(src, dst)| L4::Udp { src, dst }),
        (any::<u8>(), any::<u8>()).prop_map(|(ty, code)| L4::Icmp { ty, code }),
        opaque.prop_map(|proto| L4::Opaque { proto }),
    ]
}

fn ext() -> impl Strategy<Value = Ext> {
    prop_oneof![
        (prop_oneof![Just(0u8), Just(43), Just(60)], 0usize..3)
            .prop_map(|(kind, units)| Ext::Raw { kind, units }),
        (prop_oneof![Just(0u16), Just(0), 1..8192u16], any::<bool>())
            .prop_map(|(offset, more)| Ext::Fragment { offset, more }),
        (0usize..5).prop_map(|icv_words| Ext::Auth { icv_words }),
    ]
}

fn l3() -> impl Strategy<Value = L3> {
    let arp = (
        any::<bool>(),
        any::<u16>(),
        any::<[u8; 6]>(),
        any::<[u8; 4]>(),
        any::<[u8; 6]>(),
        any::<[u8; 4]>(),
    )
        .prop_map(|(rarp, op, sha, spa, tha, tpa)| L3::Arp {
            rarp,
            op,
            sha,
            spa,
            tha,
            tpa,
        });
    let ipv4 = (
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            0u8..64,
            0u8..4,
            any::<u8>(),
        ),
        (
            any::<u16>(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(0u16), Just(0), 1..8192u16],
        ),
        (0usize..11).prop_flat_map(|words| vec(any::<u8>(), words * 4)),
        l4(false),
    )
        .prop_map(
            |((src, dst, dscp, ecn, ttl), (id, df, mf, frag_offset), options, l4)| L3::Ipv4 {
                src,
                dst,
                dscp,
                ecn,
                ttl,
                id,
                df,
                mf,
                frag_offset,
                options,
                l4,
            },
        );
    let ipv6 = (
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            0u32..(1 << 20),
            any::<u8>(),
        ),
        vec(ext(), 0..=MAX_IPV6_EXT_HEADERS + 1),
        l4(true),
    )
        .prop_map(|((src, dst, tclass, label, hops), exts, l4)| L3::Ipv6 {
            src,
            dst,
            tclass,
            label,
            hops,
            exts,
            l4,
        });
    // Below 0x600 is an IEEE 802.3 length (random payload is never SNAP).
    let other = prop_oneof![
        Just(0x88ccu16),
        Just(0x8847),
        Just(0x9100),
        0x0600..0x0800u16,
        0u16..0x0600
    ]
    .prop_map(|eth_type| L3::Other { eth_type });
    prop_oneof![1 => arp, 2 => ipv4, 2 => ipv6, 1 => other]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<u32>(),
        prop_oneof![
            Just(TunnelMeta::default()),
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(vni, src, dst)| TunnelMeta {
                vni,
                src,
                dst
            })
        ],
        (any::<[u8; 6]>(), any::<[u8; 6]>()),
        vec(vlan(), 0..=3),
        l3(),
        vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(
            |(in_port, tunnel, (src, dst), vlans, l3, payload, pad_to_60)| Spec {
                in_port,
                tunnel,
                src,
                dst,
                vlans,
                l3,
                payload,
                pad_to_60,
            },
        )
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

fn l4_proto(l4: &L4, ipv6: bool) -> u8 {
    match l4 {
        L4::Tcp { .. } => IPPROTO_TCP,
        L4::Udp { .. } => IPPROTO_UDP,
        L4::Icmp { .. } if ipv6 => 58,
        L4::Icmp { .. } => 1,
        L4::Opaque { proto } => *proto,
    }
}

fn l4_bytes(l4: &L4, ipv6: bool) -> Vec<u8> {
    match l4 {
        L4::Tcp {
            src,
            dst,
            seq,
            flags,
            ns,
            options,
        } => {
            let mut t = TcpHeader::new(*src, *dst, *seq, 1000);
            t.set_options_raw(&vec![1u8; *options]).unwrap();
            let mut b = t.to_bytes().to_vec();
            b[12] |= u8::from(*ns);
            b[13] = *flags;
            b
        }
        L4::Udp { src, dst } => UdpHeader {
            source_port: *src,
            destination_port: *dst,
            length: 8,
            checksum: 0,
        }
        .to_bytes()
        .to_vec(),
        L4::Icmp { ty, code } if ipv6 => Icmpv6Header::new(Icmpv6Type::Unknown {
            type_u8: *ty,
            code_u8: *code,
            bytes5to8: [1, 2, 3, 4],
        })
        .to_bytes()
        .to_vec(),
        L4::Icmp { ty, code } => Icmpv4Header::new(Icmpv4Type::Unknown {
            type_u8: *ty,
            code_u8: *code,
            bytes5to8: [1, 2, 3, 4],
        })
        .to_bytes()
        .to_vec(),
        L4::Opaque { .. } => Vec::new(),
    }
}

fn l4_fields(l4: &L4, want: &mut FlowKey) {
    match l4 {
        L4::Tcp {
            src,
            dst,
            flags,
            ns,
            ..
        } => {
            want.set(Field::TpSrc, u128::from(*src));
            want.set(Field::TpDst, u128::from(*dst));
            want.set(
                Field::TcpFlags,
                u128::from(u16::from(*ns) << 8 | u16::from(*flags)),
            );
        }
        L4::Udp { src, dst } => {
            want.set(Field::TpSrc, u128::from(*src));
            want.set(Field::TpDst, u128::from(*dst));
        }
        L4::Icmp { ty, code } => {
            want.set(Field::TpSrc, u128::from(*ty));
            want.set(Field::TpDst, u128::from(*code));
        }
        L4::Opaque { .. } => {}
    }
}

fn ext_number(e: &Ext) -> u8 {
    match e {
        Ext::Raw { kind, .. } => *kind,
        Ext::Fragment { .. } => 44,
        Ext::Auth { .. } => 51,
    }
}

fn ext_bytes(e: &Ext, next: u8) -> Vec<u8> {
    let next = IpNumber(next);
    match e {
        Ext::Raw { units, .. } => Ipv6RawExtHeader::new_raw(next, &vec![0u8; 6 + 8 * units])
            .unwrap()
            .to_bytes()
            .to_vec(),
        Ext::Fragment { offset, more } => {
            Ipv6FragmentHeader::new(next, IpFragOffset::try_new(*offset).unwrap(), *more, 99)
                .to_bytes()
                .to_vec()
        }
        Ext::Auth { icv_words } => IpAuthHeader::new(next, 1, 2, &vec![0u8; icv_words * 4])
            .unwrap()
            .to_bytes()
            .to_vec(),
    }
}

/// The frame bytes, and the key, L3/L4 offsets and anomaly the spec means.
fn build(spec: &Spec) -> (Vec<u8>, FlowKey, usize, usize, Option<Anomaly>) {
    let mut want = FlowKey::ZERO;
    want.set(Field::InPort, u128::from(spec.in_port));
    if spec.tunnel.vni != 0 || spec.tunnel.src != 0 {
        want.set(Field::TunId, u128::from(spec.tunnel.vni));
        want.set(Field::TunSrc, u128::from(spec.tunnel.src));
        want.set(Field::TunDst, u128::from(spec.tunnel.dst));
    }
    want.set(Field::EthSrc, u128::from(mac_to_u64(spec.src)));
    want.set(Field::EthDst, u128::from(mac_to_u64(spec.dst)));
    let eth_type = match &spec.l3 {
        L3::Arp { rarp: true, .. } => 0x8035,
        L3::Arp { .. } => 0x0806,
        L3::Ipv4 { .. } => 0x0800,
        L3::Ipv6 { .. } => 0x86dd,
        L3::Other { eth_type } => *eth_type,
    };
    want.set(
        Field::EthType,
        u128::from(if eth_type < 0x600 { 0x05ff } else { eth_type }),
    );
    let first_type = spec.vlans.first().map_or(eth_type, |v| v.tpid);
    let mut f = Ethernet2Header {
        source: spec.src,
        destination: spec.dst,
        ether_type: EtherType(first_type),
    }
    .to_bytes()
    .to_vec();
    for (i, v) in spec.vlans.iter().enumerate() {
        let next = spec.vlans.get(i + 1).map_or(eth_type, |n| n.tpid);
        f.extend(
            SingleVlanHeader {
                pcp: VlanPcp::try_new(v.pcp).unwrap(),
                drop_eligible_indicator: v.dei,
                vlan_id: VlanId::try_new(v.vid).unwrap(),
                ether_type: EtherType(next),
            }
            .to_bytes(),
        );
        let field = [Field::VlanTci, Field::Vlan2Tci].get(i);
        if let Some(field) = field {
            want.set(*field, u128::from(v.tci() | VLAN_PRESENT));
        }
    }
    let l3_ofs = f.len();
    let mut l4_ofs = 0;
    let mut anomaly = None;
    match &spec.l3 {
        L3::Arp {
            op,
            sha,
            spa,
            tha,
            tpa,
            ..
        } => {
            let arp = ArpPacket::new(
                ArpHardwareId::ETHERNET,
                EtherType::IPV4,
                ArpOperation(*op),
                sha,
                spa,
                tha,
                tpa,
            )
            .unwrap();
            f.extend(arp.to_bytes());
            want.set(Field::NwProto, u128::from(op & 0xff));
            want.set(Field::ArpSha, u128::from(mac_to_u64(*sha)));
            want.set(Field::ArpTha, u128::from(mac_to_u64(*tha)));
            want.set(Field::NwSrc, u128::from(u32::from_be_bytes(*spa)));
            want.set(Field::NwDst, u128::from(u32::from_be_bytes(*tpa)));
            f.extend_from_slice(&spec.payload);
        }
        L3::Ipv4 {
            src,
            dst,
            dscp,
            ecn,
            ttl,
            id,
            df,
            mf,
            frag_offset,
            options,
            l4,
        } => {
            let proto = l4_proto(l4, false);
            let mut body = l4_bytes(l4, false);
            body.extend_from_slice(&spec.payload);
            let mut h = Ipv4Header::new(0, *ttl, IpNumber(proto), *src, *dst).unwrap();
            h.dscp = IpDscp::try_new(*dscp).unwrap();
            h.ecn = IpEcn::try_new(*ecn).unwrap();
            h.identification = *id;
            h.dont_fragment = *df;
            h.more_fragments = *mf;
            h.fragment_offset = IpFragOffset::try_new(*frag_offset).unwrap();
            h.options = options.as_slice().try_into().unwrap();
            h.set_payload_len(body.len()).unwrap();
            h.header_checksum = h.calc_header_checksum();
            f.extend(h.to_bytes());
            want.set(Field::NwSrc, u128::from(u32::from_be_bytes(*src)));
            want.set(Field::NwDst, u128::from(u32::from_be_bytes(*dst)));
            want.set(Field::NwProto, u128::from(proto));
            want.set(Field::NwTos, u128::from(dscp << 2 | ecn));
            want.set(Field::NwTtl, u128::from(*ttl));
            if *frag_offset != 0 {
                want.set(Field::NwFrag, u128::from(FRAG_ANY | FRAG_LATER));
            } else {
                if *mf {
                    want.set(Field::NwFrag, u128::from(FRAG_ANY));
                }
                if !matches!(l4, L4::Opaque { .. }) {
                    l4_ofs = f.len();
                }
                l4_fields(l4, &mut want);
            }
            f.extend(body);
        }
        L3::Ipv6 {
            src,
            dst,
            tclass,
            label,
            hops,
            exts,
            l4,
        } => {
            let proto = l4_proto(l4, true);
            let mut body = Vec::new();
            for (i, e) in exts.iter().enumerate() {
                let next = exts.get(i + 1).map_or(proto, ext_number);
                body.extend(ext_bytes(e, next));
            }
            let ext_len = body.len();
            body.extend(l4_bytes(l4, true));
            body.extend_from_slice(&spec.payload);
            let h = Ipv6Header {
                traffic_class: *tclass,
                flow_label: Ipv6FlowLabel::try_new(*label).unwrap(),
                payload_length: body.len() as u16,
                next_header: IpNumber(exts.first().map_or(proto, ext_number)),
                hop_limit: *hops,
                source: *src,
                destination: *dst,
            };
            f.extend(h.to_bytes());
            want.set(Field::NwSrc, u128::from_be_bytes(*src));
            want.set(Field::NwDst, u128::from_be_bytes(*dst));
            want.set(Field::NwTos, u128::from(*tclass));
            want.set(Field::Ipv6Label, u128::from(*label));
            want.set(Field::NwTtl, u128::from(*hops));
            // Walk the spec's chain as RFC 8200 §4 describes it.
            let mut frag = 0u8;
            let mut outcome = None;
            for (i, e) in exts.iter().enumerate() {
                if i == MAX_IPV6_EXT_HEADERS {
                    outcome = Some(Err(Anomaly::BadIpv6Header));
                    break;
                }
                if let Ext::Fragment { offset, more } = e {
                    if *offset != 0 || *more {
                        frag = FRAG_ANY;
                    }
                    if *offset != 0 {
                        let next = exts.get(i + 1).map_or(proto, ext_number);
                        outcome = Some(Ok((next, FRAG_ANY | FRAG_LATER)));
                        break;
                    }
                }
            }
            match outcome {
                Some(Err(a)) => anomaly = Some(a),
                Some(Ok((next, later))) => {
                    want.set(Field::NwProto, u128::from(next));
                    want.set(Field::NwFrag, u128::from(later));
                }
                None => {
                    want.set(Field::NwProto, u128::from(proto));
                    want.set(Field::NwFrag, u128::from(frag));
                    if !matches!(l4, L4::Opaque { .. }) {
                        l4_ofs = f.len() + ext_len;
                    }
                    l4_fields(l4, &mut want);
                }
            }
            f.extend(body);
        }
        L3::Other { .. } => f.extend_from_slice(&spec.payload),
    }
    if spec.pad_to_60 && f.len() < 60 {
        f.resize(60, 0);
    }
    (f, want, l3_ofs, l4_ofs, anomaly)
}

/// Offsets a parse reports must lie inside the frame.
fn assert_offsets_inside(frame: &[u8], in_port: u32) {
    if let Ok(x) = extract(frame, in_port, &TunnelMeta::default()) {
        assert!(usize::from(x.l3_ofs) <= frame.len());
        assert!(usize::from(x.l4_ofs) <= frame.len());
        assert!(x.l4_ofs == 0 || x.l4_ofs >= x.l3_ofs);
        assert_eq!(x.key.in_port(), in_port);
    } else {
        assert!(frame.len() < 14 + 4 * 8 + 2, "only L2 cut short is a runt");
    }
}

/// Runs every wire helper on whatever `frame` is; none may panic.
fn exercise_wire_helpers(frame: &[u8]) {
    let Ok(x) = extract(frame, 1, &TunnelMeta::default()) else {
        return;
    };
    for partial in [false, true] {
        let mut meta = OffloadMeta::default();
        if partial {
            meta.flags = OffloadMeta::F_NEEDS_CSUM;
        }
        let layout = HeaderLayout::new(&x, &meta);
        let mut f = frame.to_vec();
        let _ = wire::set_ipv4_src(&mut f, &layout, [1, 2, 3, 4]);
        let _ = wire::set_ipv4_dst(&mut f, &layout, [5, 6, 7, 8]);
        let _ = wire::set_ipv6_src(&mut f, &layout, [9; 16]);
        let _ = wire::set_ipv6_dst(&mut f, &layout, [10; 16]);
        let _ = wire::set_ipv4_tos(&mut f, layout.l3_ofs, 0xfc);
        let _ = wire::set_ipv4_ttl(&mut f, layout.l3_ofs, 0);
        let _ = wire::set_tp_src(&mut f, &layout, 1);
        let _ = wire::set_tp_dst(&mut f, &layout, 2);
        let _ = wire::fill_l4_checksum(&mut f, &layout);
        let _ = wire::fill_ipv4_checksum(&mut f, layout.l3_ofs);
        let _ = wire::complete_partial_checksum(&mut f, layout.l4_ofs, 16);
        assert_eq!(f.len(), frame.len());
        let mut pkt = PacketPool::new(1, 0, 0)
            .alloc_class(SizeClass::Standard)
            .unwrap();
        if pkt.copy_from(frame) {
            let _ = wire::make_partial_checksum(&mut pkt, &layout);
            let _ = wire::finish_packet_checksum(&mut pkt);
        }
    }
}

/// Random set-field values for the rewrite property.
#[derive(Clone, Debug)]
struct Rewrite {
    src4: [u8; 4],
    dst4: [u8; 4],
    src6: [u8; 16],
    dst6: [u8; 16],
    tp_src: u16,
    tp_dst: u16,
    tos: u8,
    ttl: u8,
}

fn rewrite() -> impl Strategy<Value = Rewrite> {
    (
        (any::<[u8; 4]>(), any::<[u8; 4]>()),
        (any::<[u8; 16]>(), any::<[u8; 16]>()),
        (any::<u16>(), any::<u16>(), any::<u8>(), any::<u8>()),
    )
        .prop_map(
            |((src4, dst4), (src6, dst6), (tp_src, tp_dst, tos, ttl))| Rewrite {
                src4,
                dst4,
                src6,
                dst6,
                tp_src,
                tp_dst,
                tos,
                ttl,
            },
        )
}

/// Applies `r` through the wire helpers (incremental checksum updates).
fn apply(frame: &mut [u8], layout: &HeaderLayout, ipv6: bool, r: &Rewrite) {
    if ipv6 {
        wire::set_ipv6_src(frame, layout, r.src6).unwrap();
        wire::set_ipv6_dst(frame, layout, r.dst6).unwrap();
    } else {
        wire::set_ipv4_src(frame, layout, r.src4).unwrap();
        wire::set_ipv4_dst(frame, layout, r.dst4).unwrap();
        wire::set_ipv4_tos(frame, layout.l3_ofs, r.tos).unwrap();
        wire::set_ipv4_ttl(frame, layout.l3_ofs, r.ttl).unwrap();
    }
    if layout.l4_ofs != 0 {
        wire::set_tp_src(frame, layout, r.tp_src).unwrap();
        wire::set_tp_dst(frame, layout, r.tp_dst).unwrap();
    }
}

/// The checksum field bytes of `frame`'s L4 header, 0xffff read as 0.
fn l4_checksum_field(frame: &[u8], layout: &HeaderLayout) -> u16 {
    let at = layout.l4_ofs
        + match layout.ip_proto {
            6 => 16,
            17 => 6,
            _ => 2,
        };
    match u16::from_be_bytes([frame[at], frame[at + 1]]) {
        0xffff => 0,
        v => v,
    }
}

proptest! {
    // Only IP frames with an L4 checksum qualify: about a quarter of specs.
    #![proptest_config(ProptestConfig {
        cases: 1000,
        max_global_rejects: 50_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn incremental_rewrites_equal_a_full_recompute(
        spec in spec(),
        r in rewrite(),
        partial in any::<bool>(),
    ) {
        let (mut frame, ..) = build(&spec);
        let x = extract(&frame, 1, &TunnelMeta::default()).unwrap();
        let ipv6 = x.key.eth_type() == 0x86dd;
        let proto = x.key.nw_proto();
        let later_fragment = x.key.get(Field::NwFrag) & u128::from(FRAG_LATER) != 0;
        let has_csum = matches!((proto, ipv6), (6 | 17, _) | (58, true));
        prop_assume!(x.anomaly.is_none() && (ipv6 || x.key.eth_type() == 0x0800));
        prop_assume!(has_csum && !later_fragment);
        let mut layout = HeaderLayout::new(&x, &OffloadMeta::default());
        if !ipv6 {
            wire::fill_ipv4_checksum(&mut frame, layout.l3_ofs).unwrap();
        }
        wire::fill_l4_checksum(&mut frame, &layout).unwrap();
        let csum_ofs = match proto { 6 => 16, 17 => 6, _ => 2 };
        // A partial checksum is a complete one minus the L4 data: build it
        // the way Linux does, from the pseudo header alone.
        let partial = partial && proto != 58;
        if partial {
            let mut pseudo_only = frame.clone();
            let end = pseudo_only.len();
            pseudo_only[layout.l4_ofs..end].fill(0);
            wire::fill_l4_checksum(&mut pseudo_only, &layout).unwrap();
            let at = layout.l4_ofs + csum_ofs;
            let v = !u16::from_be_bytes([pseudo_only[at], pseudo_only[at + 1]]);
            frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
            layout.l4_checksum = wire::L4Checksum::Partial;
        }

        apply(&mut frame, &layout, ipv6, &r);
        if partial {
            wire::complete_partial_checksum(&mut frame, layout.l4_ofs, csum_ofs).unwrap();
        }
        let mut full = frame.clone();
        if !ipv6 {
            wire::fill_ipv4_checksum(&mut full, layout.l3_ofs).unwrap();
            prop_assert_eq!(&frame[layout.l3_ofs + 10..layout.l3_ofs + 12],
                &full[layout.l3_ofs + 10..layout.l3_ofs + 12]);
        }
        wire::fill_l4_checksum(&mut full, &layout).unwrap();
        prop_assert_eq!(l4_checksum_field(&frame, &layout), l4_checksum_field(&full, &layout));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn key_matches_the_spec_field_by_field(spec in spec()) {
        let (frame, want, l3_ofs, l4_ofs, anomaly) = build(&spec);
        let x = extract(&frame, spec.in_port, &spec.tunnel).expect("well-formed L2");
        for field in Field::ALL {
            prop_assert_eq!(x.key.get(field), want.get(field), "field {:?}", field);
        }
        prop_assert_eq!(x.key, want);
        prop_assert_eq!(usize::from(x.l3_ofs), l3_ofs);
        prop_assert_eq!(usize::from(x.l4_ofs), l4_ofs);
        prop_assert_eq!(x.anomaly, anomaly);
    }

    #[test]
    fn truncated_and_bit_flipped_frames_never_panic(
        spec in spec(),
        cut in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), 0u8..8), 0..6),
    ) {
        let (mut frame, ..) = build(&spec);
        for (at, bit) in flips {
            let i = at.index(frame.len());
            frame[i] ^= 1 << bit;
        }
        let len = cut.index(frame.len() + 1);
        assert_offsets_inside(&frame[..len], spec.in_port);
        assert_offsets_inside(&frame, spec.in_port);
        exercise_wire_helpers(&frame[..len]);
        exercise_wire_helpers(&frame);
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..200), port in any::<u32>()) {
        assert_offsets_inside(&bytes, port);
        exercise_wire_helpers(&bytes);
    }

    #[test]
    fn random_ip_looking_bytes_never_panic(
        tags in vec(prop_oneof![Just(0x8100u16), Just(0x88a8)], 0..10),
        eth_type in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806), Just(0x0040)],
        body in vec(any::<u8>(), 0..120),
    ) {
        // Random bytes rarely get past L2; start them on a plausible header.
        let mut f = vec![2u8; 12];
        for t in &tags {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&[0, 1]);
        }
        f.extend_from_slice(&eth_type.to_be_bytes());
        let mut body = body;
        if let Some(b) = body.first_mut() {
            *b = if eth_type == 0x86dd { 0x60 | (*b & 0x0f) } else { 0x40 | (*b & 0x0f) };
        }
        f.extend_from_slice(&body);
        assert_offsets_inside(&f, 3);
        exercise_wire_helpers(&f);
    }

    #[test]
    fn segmentation_of_random_gso_frames_never_panics(
        spec in spec(),
        gso_type in prop_oneof![Just(GsoType::TcpV4), Just(GsoType::TcpV6), Just(GsoType::UdpL4)],
        mss in 0u16..200,
    ) {
        let (frame, ..) = build(&spec);
        let mut pool = PacketPool::new(64, 0, 0);
        let mut pkt = PacketPool::new(0, 0, 1).alloc_class(SizeClass::Gso).unwrap();
        pkt.copy_from(&frame);
        pkt.offload.gso_type = gso_type;
        pkt.offload.gso_size = mss;
        let result = wire::segment(&pkt, &mut pool, |seg| {
            assert!(seg.len() <= frame.len() + usize::from(mss));
        });
        if let Ok(n) = result {
            prop_assert!(n >= 1);
            prop_assert_eq!(Ok(n), wire::segment_count(&pkt));
        }
    }
}

/// The checked-in corpus of hostile frames (`tests/corpus/frames/*.bin`,
/// outcomes in `EXPECT`): each gives exactly its expected outcome, offsets
/// stay inside the frame, and the wire helpers survive it.
#[test]
fn frame_corpus_gives_the_expected_outcomes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/frames");
    let expect = std::fs::read_to_string(dir.join("EXPECT")).expect("EXPECT manifest");
    let mut wrong = Vec::new();
    let mut seen = 0;
    for line in expect
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (name, want) = line.split_once(' ').expect("NAME OUTCOME");
        let frame = std::fs::read(dir.join(format!("{name}.bin")))
            .unwrap_or_else(|e| panic!("{name}.bin: {e}"));
        let got = match extract(&frame, 3, &TunnelMeta::default()) {
            Err(reason) => format!("drop:{}", reason.name()),
            Ok(x) => x.anomaly.map_or("ok", Anomaly::name).to_owned(),
        };
        if got != want {
            wrong.push(format!("{name}: expected {want}, got {got}"));
        }
        assert_offsets_inside(&frame, 3);
        exercise_wire_helpers(&frame);
        seen += 1;
    }
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "bin")
        })
        .count();
    assert_eq!(seen, files, "every .bin file has an EXPECT line");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
