//! Hostile frames for the live-switch test of issue 8 part 2: every header
//! truncated at every byte boundary (Ethernet, 802.1Q/802.1ad, IPv4,
//! IPv6, TCP, UDP, ICMP, ARP), bogus IPv4 IHL and total length, zero-length
//! payloads, frames above the MTU, VLAN stacks of 3 to 12 tags, IPv6
//! extension chains (long and looping-looking), and IPv4/IPv6 fragments
//! (first, middle, last, overlapping, tiny).
//!
//! Each frame carries the verdict the switch owes it, derived here from
//! the header formats (RFC 791 §3.1, RFC 8200 §4, RFC 826, IEEE 802.1Q) and
//! the parser policy in `datapath/src/flow/extract.rs` — not by running the
//! parser: a frame is a [`Verdict::Drop`] under a named drop reason (only
//! `runt` for a cut VLAN tag and `mtu` for an oversized frame), or it is
//! switched on its L2 fields, with the parser anomaly it must be counted
//! under (or none, for odd but valid frames such as fragments). The unit
//! tests cross-check the verdicts against the parser; the system test
//! `tests/hostile_frames.rs` checks them against a running vswitchd.
//!
//! The frames are sent with AF_PACKET, so nothing below 14 bytes (the
//! kernel refuses a frame shorter than the link-layer header): the
//! sub-Ethernet runts are covered by the parser's unit tests instead.

/// What the switch must do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Dropped and counted under this `stats drops` reason.
    Drop(&'static str),
    /// Switched on its L2 fields; counted under this parser anomaly
    /// (`stats pmd` counter `anomaly_<name>`), if any.
    Forward(Option<&'static str>),
}

/// One hostile frame.
#[derive(Clone, Debug)]
pub struct Frame {
    /// What it is, for messages.
    pub name: String,
    /// What the switch owes it.
    pub verdict: Verdict,
    /// The bytes, from the destination MAC on.
    pub bytes: Vec<u8>,
}

/// Largest frame [`frames`] builds (the sender's MTU must allow it).
pub const MAX_FRAME: usize = 9014;

const TRUNC_L3: Verdict = Verdict::Forward(Some("truncated_l3"));
const BAD_V4: Verdict = Verdict::Forward(Some("bad_ipv4_header"));
const BAD_V6: Verdict = Verdict::Forward(Some("bad_ipv6_header"));
const BAD_ARP: Verdict = Verdict::Forward(Some("bad_arp"));
const TRUNC_L4: Verdict = Verdict::Forward(Some("truncated_l4"));
const BAD_TCP: Verdict = Verdict::Forward(Some("bad_tcp_header"));
const TAGS: Verdict = Verdict::Forward(Some("too_many_vlan_tags"));
const CLEAN: Verdict = Verdict::Forward(None);

const IPV4: u16 = 0x0800;
const IPV6: u16 = 0x86dd;
const ARP: u16 = 0x0806;
const QINQ: u16 = 0x88a8;
const DOT1Q: u16 = 0x8100;
/// IEEE 802 "local experimental" EtherType: no header the parser knows.
const EXPERIMENTAL: u16 = 0x88b5;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const HOPOPTS: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DSTOPTS: u8 = 60;
const NO_NEXT: u8 = 59;

/// Builds every frame from `src` to `dst` (MACs); IPv4 10.217.0.1 →
/// 10.217.0.2, IPv6 fd17::1 → fd17::2. `max_frame` bounds the oversized
/// frames (the egress port's MTU + 14 must be below 1600).
pub fn frames(src: [u8; 6], dst: [u8; 6], max_frame: usize) -> Vec<Frame> {
    let b = Builder { src, dst };
    let mut v = Vec::new();
    let mut add = |name: String, verdict: Verdict, bytes: Vec<u8>| {
        v.push(Frame {
            name,
            verdict,
            bytes,
        })
    };

    // Ethernet header alone: nothing after the EtherType.
    add("eth only, ipv4".into(), TRUNC_L3, b.eth(IPV4, &[]));
    add("eth only, ipv6".into(), TRUNC_L3, b.eth(IPV6, &[]));
    add("eth only, arp".into(), BAD_ARP, b.eth(ARP, &[]));
    add(
        "eth only, experimental".into(),
        CLEAN,
        b.eth(EXPERIMENTAL, &[]),
    );

    // 802.1Q / 802.1ad tags cut short: the frame has no usable EtherType.
    let udp_frame = b.eth(IPV4, &ipv4(UDP, &udp(&[0x5a; 16])));
    for tpid in [DOT1Q, QINQ] {
        let tagged = tag(&udp_frame, tpid, 7);
        for len in 14..18 {
            add(
                format!("tag {tpid:#x} cut at {len}"),
                Verdict::Drop("runt"),
                tagged[..len].to_vec(),
            );
        }
    }
    let double = tag(&tag(&udp_frame, DOT1Q, 7), QINQ, 8);
    for len in 18..22 {
        add(
            format!("second tag cut at {len}"),
            Verdict::Drop("runt"),
            double[..len].to_vec(),
        );
    }
    // (Two L3 bytes: a receiving Linux host discards a tagged frame with
    // less than that before its packet sockets see it.)
    add(
        "tag complete, ipv4 cut at 2".into(),
        TRUNC_L3,
        tag(&udp_frame, DOT1Q, 7)[..20].to_vec(),
    );

    // IPv4 header cut at every byte (the L3 part of the frame is 1..19
    // bytes), then a 24-byte header with options cut inside its options.
    for len in 1..20 {
        add(
            format!("ipv4 cut at {len}"),
            TRUNC_L3,
            udp_frame[..14 + len].to_vec(),
        );
    }
    let with_opts = b.eth(IPV4, &ipv4_opts(UDP, &[1, 1, 1, 0], &udp(&[])));
    for len in 20..24 {
        add(
            format!("ipv4 options cut at {len}"),
            TRUNC_L3,
            with_opts[..14 + len].to_vec(),
        );
    }
    // Cut after the IPv4 header, total length left as sent: it now
    // claims more than the frame holds.
    let l3_len = udp_frame.len() - 14;
    for len in 21..l3_len {
        add(
            format!("ipv4 total length beyond a cut at {len}"),
            BAD_V4,
            udp_frame[..14 + len].to_vec(),
        );
    }
    // Cut inside the L4 header with the IPv4 length made to agree.
    let l4s: [(&str, u8, Vec<u8>); 4] = [
        ("udp", UDP, udp(&[1, 2, 3])),
        ("tcp", TCP, tcp(5, &[])),
        ("tcp+options", TCP, tcp(8, &[])),
        ("icmp", ICMP, vec![8, 0, 0xf7, 0xff, 0, 1, 0, 1]),
    ];
    for (what, proto, l4) in &l4s {
        let full = header_len(*proto, l4);
        for len in 0..full {
            add(
                format!("{what} header cut at {len}"),
                TRUNC_L4,
                b.eth(IPV4, &ipv4(*proto, &l4[..len])),
            );
        }
    }
    for off in 0..5u8 {
        add(
            format!("tcp data offset {off}"),
            BAD_TCP,
            b.eth(IPV4, &ipv4(TCP, &tcp(off, &[]))),
        );
    }

    // Bogus IPv4 version, IHL and total length.
    for version in [0u8, 5, 6, 15] {
        let mut f = udp_frame.clone();
        f[14] = (version << 4) | 5;
        add(format!("ipv4 version {version}"), BAD_V4, f);
    }
    for ihl in 0..5u8 {
        let mut f = udp_frame.clone();
        f[14] = 0x40 | ihl;
        add(format!("ipv4 ihl {ihl}"), BAD_V4, f);
    }
    for ihl in [12u8, 15] {
        // IHL 15 = 60 bytes: more than the 44-byte packet holds.
        let mut f = udp_frame.clone();
        f[14] = 0x40 | ihl;
        add(format!("ipv4 ihl {ihl} beyond the frame"), TRUNC_L3, f);
    }
    for total in [0u16, 19, l3_len as u16 + 1, 1500, 65535] {
        let mut f = udp_frame.clone();
        f[16..18].copy_from_slice(&total.to_be_bytes());
        add(format!("ipv4 total length {total}"), BAD_V4, f);
    }

    // Zero-length payloads: legal, switched without an anomaly.
    add(
        "udp, empty payload".into(),
        CLEAN,
        b.eth(IPV4, &ipv4(UDP, &udp(&[]))),
    );
    add(
        "tcp, empty payload".into(),
        CLEAN,
        b.eth(IPV4, &ipv4(TCP, &tcp(5, &[]))),
    );
    add(
        "ipv4 proto 253, empty".into(),
        CLEAN,
        b.eth(IPV4, &ipv4(253, &[])),
    );
    add(
        "ipv6 no next header, empty".into(),
        CLEAN,
        b.eth(IPV6, &ipv6(NO_NEXT, &[])),
    );

    // Frames above the egress MTU: dropped as `mtu` at the egress port.
    for len in [1600, 4000, max_frame] {
        let payload = vec![0xa5; len - 14 - 20 - 8];
        add(
            format!("{len}-byte frame"),
            Verdict::Drop("mtu"),
            b.eth(IPV4, &ipv4(UDP, &udp(&payload))),
        );
    }

    // VLAN stacks: up to 8 tags are walked, a 9th is an anomaly.
    for (n, verdict) in [(3, CLEAN), (8, CLEAN), (9, TAGS), (12, TAGS)] {
        let mut f = udp_frame.clone();
        for i in 0..n {
            f = tag(&f, if i % 2 == 0 { DOT1Q } else { QINQ }, 7);
        }
        add(format!("{n} vlan tags"), verdict, f);
    }

    // IPv6 fixed header cut at every byte, bogus version and length.
    let v6_udp = b.eth(IPV6, &ipv6(UDP, &udp(&[7; 8])));
    for len in 1..40 {
        add(
            format!("ipv6 cut at {len}"),
            TRUNC_L3,
            v6_udp[..14 + len].to_vec(),
        );
    }
    let mut f = v6_udp.clone();
    f[14] = 0x40;
    add("ipv6 version 4".into(), BAD_V6, f);
    let mut f = v6_udp.clone();
    f[18..20].copy_from_slice(&1000u16.to_be_bytes());
    add("ipv6 payload length beyond the frame".into(), BAD_V6, f);
    // Extension header chains: 8 walked, the 9th is too many, whatever
    // the types; a chain of routing headers each naming the next
    // routing header "loops" until the limit.
    for (n, kind, verdict) in [
        (8, DSTOPTS, CLEAN),
        (9, DSTOPTS, BAD_V6),
        (20, ROUTING, BAD_V6),
        (64, HOPOPTS, BAD_V6),
    ] {
        add(
            format!("{n} ipv6 extension headers ({kind})"),
            verdict,
            b.eth(IPV6, &ipv6_chain(&vec![kind; n], UDP, &udp(&[]))),
        );
    }
    let chain = ipv6_chain(&[HOPOPTS, DSTOPTS], UDP, &udp(&[]));
    for len in [41, 47, 49, 55] {
        let mut p = chain[..len].to_vec();
        set_ipv6_payload_len(&mut p);
        add(
            format!("ipv6 extension header cut at {len}"),
            TRUNC_L3,
            b.eth(IPV6, &p),
        );
    }
    for len in 56..63 {
        let mut p = chain[..len].to_vec();
        set_ipv6_payload_len(&mut p);
        add(
            format!("udp after ipv6 extensions cut at {len}"),
            TRUNC_L4,
            b.eth(IPV6, &p),
        );
    }
    let mut p = ipv6_chain(&[DSTOPTS], UDP, &udp(&[]));
    p[41] = 200; // hdr ext len: 1608 bytes, far beyond the packet
    add(
        "ipv6 extension length beyond the packet".into(),
        TRUNC_L3,
        b.eth(IPV6, &p),
    );

    // IPv4 fragments: not reassembled; a later fragment has no L4 header.
    let data = udp(&[0x33; 32]);
    for (what, flags_off, body) in [
        ("first", 0x2000u16, data.clone()),
        ("middle", 0x2000 | 2, vec![0x44; 16]),
        ("last", 4, vec![0x55; 16]),
        ("overlapping the first", 0x2000 | 1, vec![0x66; 24]),
        ("overlapping, same offset", 0x2000 | 2, vec![0x77; 16]),
        ("later, empty", 6, Vec::new()),
    ] {
        add(
            format!("ipv4 fragment, {what}"),
            CLEAN,
            b.eth(IPV4, &ipv4_frag(UDP, flags_off, &body)),
        );
    }
    add(
        "ipv4 first fragment with a cut udp header".into(),
        TRUNC_L4,
        b.eth(IPV4, &ipv4_frag(UDP, 0x2000, &data[..4])),
    );
    // IPv6 fragments (RFC 8200 §4.5).
    for (what, off_flags, body) in [
        ("first", 0x0001u16, data.clone()),
        ("later", 0x0010 | 0x0001, vec![0x44; 16]),
        ("last", 0x0020, vec![0x55; 16]),
        ("overlapping", 0x0008 | 0x0001, vec![0x66; 24]),
        ("atomic", 0x0000, udp(&[1])),
    ] {
        let mut ext = vec![UDP, 0];
        ext.extend_from_slice(&off_flags.to_be_bytes());
        ext.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        ext.extend_from_slice(&body);
        add(
            format!("ipv6 fragment, {what}"),
            CLEAN,
            b.eth(IPV6, &ipv6(FRAGMENT, &ext)),
        );
    }
    add(
        "ipv6 fragment header cut".into(),
        TRUNC_L3,
        b.eth(IPV6, &ipv6(FRAGMENT, &[UDP, 0, 0, 1])),
    );

    // ARP cut at every byte, and not Ethernet/IPv4.
    let arp = arp_request();
    for len in 1..28 {
        add(
            format!("arp cut at {len}"),
            BAD_ARP,
            b.eth(ARP, &arp[..len]),
        );
    }
    let mut a = arp.clone();
    a[1] = 6; // htype IEEE 802
    add("arp htype 6".into(), BAD_ARP, b.eth(ARP, &a));
    let mut a = arp.clone();
    a[5] = 16; // plen 16
    add("arp plen 16".into(), BAD_ARP, b.eth(ARP, &a));
    v
}

/// Frames per verdict: (verdict, count), in first-seen order.
pub fn tally(frames: &[Frame]) -> Vec<(Verdict, u64)> {
    let mut t: Vec<(Verdict, u64)> = Vec::new();
    for f in frames {
        match t.iter_mut().find(|(v, _)| *v == f.verdict) {
            Some((_, n)) => *n += 1,
            None => t.push((f.verdict, 1)),
        }
    }
    t
}

struct Builder {
    src: [u8; 6],
    dst: [u8; 6],
}

impl Builder {
    fn eth(&self, eth_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(14 + payload.len());
        f.extend_from_slice(&self.dst);
        f.extend_from_slice(&self.src);
        f.extend_from_slice(&eth_type.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
}

/// `frame` with a tag (TPID, VID) in front of its type field.
fn tag(frame: &[u8], tpid: u16, vid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&tpid.to_be_bytes());
    f.extend_from_slice(&vid.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// RFC 1071 checksum of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4_with(proto: u8, options: &[u8], flags_off: u16, payload: &[u8]) -> Vec<u8> {
    let hl = 20 + options.len();
    let mut h = vec![0u8; hl];
    h[0] = 0x40 | (hl / 4) as u8;
    h[2..4].copy_from_slice(&((hl + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
    h[6..8].copy_from_slice(&flags_off.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&[10, 217, 0, 1]);
    h[16..20].copy_from_slice(&[10, 217, 0, 2]);
    h[20..].copy_from_slice(options);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_with(proto, &[], 0, payload)
}

fn ipv4_opts(proto: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    ipv4_with(proto, options, 0, payload)
}

/// `flags_off`: MF is 0x2000, the offset counts 8-byte units.
fn ipv4_frag(proto: u8, flags_off: u16, payload: &[u8]) -> Vec<u8> {
    ipv4_with(proto, &[], flags_off, payload)
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&[0xfd, 0x17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h[24..40].copy_from_slice(&[0xfd, 0x17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(payload);
    h
}

/// IPv6 with 8-byte extension headers of the given types, then `upper`.
fn ipv6_chain(kinds: &[u8], upper_proto: u8, upper: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    for (i, _) in kinds.iter().enumerate() {
        let next = kinds.get(i + 1).copied().unwrap_or(upper_proto);
        // Next header, length 0 (8 bytes), then PadN filling the rest.
        p.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    p.extend_from_slice(upper);
    ipv6(kinds.first().copied().unwrap_or(upper_proto), &p)
}

fn set_ipv6_payload_len(packet: &mut [u8]) {
    let len = (packet.len() - 40) as u16;
    packet[4..6].copy_from_slice(&len.to_be_bytes());
}

fn udp(payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&40000u16.to_be_bytes());
    u[2..4].copy_from_slice(&9999u16.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// A TCP header with data offset `words` (options zero-filled up to it).
fn tcp(words: u8, payload: &[u8]) -> Vec<u8> {
    let len = usize::from(words.max(5)) * 4;
    let mut t = vec![0u8; len];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&9999u16.to_be_bytes());
    t[4..8].copy_from_slice(&1u32.to_be_bytes());
    t[12] = words << 4;
    t[13] = 0x02; // SYN
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(payload);
    t
}

/// Bytes of `l4` that form its header (TCP: the data offset).
fn header_len(proto: u8, l4: &[u8]) -> usize {
    match proto {
        TCP => usize::from(l4[12] >> 4) * 4,
        _ => 8,
    }
}

fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend_from_slice(&[2, 0x66, 0x66, 0x66, 0x66, 1]);
    a.extend_from_slice(&[10, 217, 0, 1]);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&[10, 217, 0, 2]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath::drop::DropReason;
    use datapath::flow::extract;
    use datapath::packet::TunnelMeta;

    const SRC: [u8; 6] = [2, 0x66, 0x66, 0x66, 0x66, 1];
    const DST: [u8; 6] = [2, 0x66, 0x66, 0x66, 0x66, 2];

    /// The verdicts written down from the formats agree with the parser
    /// (oversized frames aside: that drop happens at egress).
    #[test]
    fn verdicts_agree_with_the_parser() {
        for f in frames(SRC, DST, MAX_FRAME) {
            let got = match extract(&f.bytes, 1, &TunnelMeta::default()) {
                Err(DropReason::Runt) => Verdict::Drop("runt"),
                Err(r) => panic!("{}: unexpected drop {r}", f.name),
                Ok(x) => Verdict::Forward(x.anomaly.map(|a| a.name())),
            };
            let want = match f.verdict {
                Verdict::Drop("mtu") => CLEAN,
                v => v,
            };
            assert_eq!(got, want, "{} ({} bytes)", f.name, f.bytes.len());
        }
    }

    #[test]
    fn every_class_is_present_and_frames_fit_the_bounds() {
        let all = frames(SRC, DST, MAX_FRAME);
        let t = tally(&all);
        for v in [
            Verdict::Drop("runt"),
            Verdict::Drop("mtu"),
            CLEAN,
            TRUNC_L3,
            BAD_V4,
            BAD_V6,
            BAD_ARP,
            TRUNC_L4,
            BAD_TCP,
            TAGS,
        ] {
            assert!(t.iter().any(|(x, n)| *x == v && *n > 0), "{v:?} missing");
        }
        assert!(all
            .iter()
            .all(|f| f.bytes.len() >= 14 && f.bytes.len() <= MAX_FRAME));
        assert!(all
            .iter()
            .all(|f| f.bytes[6..12] == SRC && f.bytes[..6] == DST));
        assert_eq!(t.iter().map(|(_, n)| n).sum::<u64>(), all.len() as u64);
    }

    #[test]
    fn ipv4_checksum_is_valid() {
        let p = ipv4(UDP, &udp(&[1, 2, 3]));
        assert_eq!(checksum(&p[..20]), 0);
    }
}
