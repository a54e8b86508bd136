//! The flow key: every header field the pipeline can match, packed into
//! [`KEY_WORDS`] 64-bit words.
//!
//! A fixed word layout makes the three cache levels cheap: masking a key is
//! a word-wise AND, hashing reads whole words, and a megaflow mask is just
//! another key. [`Field`] names each field with its word, shift and width;
//! one table drives masking, the flow syntax parser and printer, and the
//! wildcard recording of the slow path.
//!
//! Field meanings follow Open vSwitch's (ovs-fields(7)) where operators know
//! them: ARP's SPA/TPA live in `nw_src`/`nw_dst` and its opcode in
//! `nw_proto`; ICMP type/code live in `tp_src`/`tp_dst`; `vlan_tci` carries
//! the 802.1Q TCI with bit 12 ([`VLAN_PRESENT`]) meaning "a tag is present".

/// Number of 64-bit words in a [`FlowKey`].
pub const KEY_WORDS: usize = 12;

/// OpenFlow port number of a switch port (`ofport`).
pub type PortNo = u32;

/// `vlan_tci` bit meaning a tag is present (OVS reuses the CFI/DEI bit).
pub const VLAN_PRESENT: u16 = 0x1000;
/// VLAN id bits of a TCI.
pub const VLAN_VID_MASK: u16 = 0x0fff;
/// Priority code point bits of a TCI.
pub const VLAN_PCP_MASK: u16 = 0xe000;

/// `nw_frag`: the packet is an IP fragment (first or later).
pub const FRAG_ANY: u8 = 1;
/// `nw_frag`: the packet is a non-first fragment (no L4 header).
pub const FRAG_LATER: u8 = 2;

/// A packed flow key (also used as a mask: a set bit means "matters").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// The packed words; see [`Field`] for the layout.
    pub words: [u64; KEY_WORDS],
}

/// A mask over [`FlowKey`]s; a set bit means the bit is significant.
pub type FlowMask = FlowKey;

/// One matchable field: where it sits in the key and how wide it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// Ingress port number.
    InPort,
    /// Tunnel id (VNI) of a decapsulated packet.
    TunId,
    /// Outer IPv4 source of a decapsulated packet.
    TunSrc,
    /// Outer IPv4 destination of a decapsulated packet.
    TunDst,
    /// Ethernet destination.
    EthDst,
    /// Ethernet type after any VLAN tags.
    EthType,
    /// Ethernet source.
    EthSrc,
    /// Outer VLAN TCI with [`VLAN_PRESENT`]; 0 when untagged.
    VlanTci,
    /// Inner VLAN TCI of a double-tagged (802.1ad) frame.
    Vlan2Tci,
    /// IP protocol, or the ARP opcode (low 8 bits).
    NwProto,
    /// IP TOS / IPv6 traffic class (DSCP << 2 | ECN).
    NwTos,
    /// IP TTL / IPv6 hop limit.
    NwTtl,
    /// Fragment bits: [`FRAG_ANY`], [`FRAG_LATER`].
    NwFrag,
    /// TCP flags (12 bits).
    TcpFlags,
    /// TCP/UDP source port, or ICMP type.
    TpSrc,
    /// TCP/UDP destination port, or ICMP code.
    TpDst,
    /// IPv6 flow label (20 bits).
    Ipv6Label,
    /// IPv4 source (low 32 bits), IPv6 source, or ARP SPA.
    NwSrc,
    /// IPv4 destination (low 32 bits), IPv6 destination, or ARP TPA.
    NwDst,
    /// ARP source hardware address.
    ArpSha,
    /// ARP target hardware address.
    ArpTha,
}

impl Field {
    /// Every field, in key order.
    pub const ALL: [Field; 21] = [
        Field::InPort,
        Field::TunId,
        Field::TunSrc,
        Field::TunDst,
        Field::EthDst,
        Field::EthType,
        Field::EthSrc,
        Field::VlanTci,
        Field::Vlan2Tci,
        Field::NwProto,
        Field::NwTos,
        Field::NwTtl,
        Field::NwFrag,
        Field::TcpFlags,
        Field::TpSrc,
        Field::TpDst,
        Field::Ipv6Label,
        Field::NwSrc,
        Field::NwDst,
        Field::ArpSha,
        Field::ArpTha,
    ];

    /// (word, shift, bits). 128-bit fields take words `word` (high half)
    /// and `word + 1` (low half).
    #[inline]
    pub const fn layout(self) -> (usize, u32, u32) {
        match self {
            Field::InPort => (0, 32, 32),
            Field::TunId => (0, 0, 32),
            Field::TunSrc => (1, 32, 32),
            Field::TunDst => (1, 0, 32),
            Field::EthDst => (2, 16, 48),
            Field::EthType => (2, 0, 16),
            Field::EthSrc => (3, 16, 48),
            Field::VlanTci => (3, 0, 16),
            Field::Vlan2Tci => (4, 48, 16),
            Field::NwProto => (4, 40, 8),
            Field::NwTos => (4, 32, 8),
            Field::NwTtl => (4, 24, 8),
            Field::NwFrag => (4, 16, 8),
            Field::TcpFlags => (4, 0, 16),
            Field::TpSrc => (5, 48, 16),
            Field::TpDst => (5, 32, 16),
            Field::Ipv6Label => (5, 0, 20),
            Field::NwSrc => (6, 0, 128),
            Field::NwDst => (8, 0, 128),
            Field::ArpSha => (10, 0, 48),
            Field::ArpTha => (11, 0, 48),
        }
    }

    /// Width in bits.
    #[inline]
    pub const fn bits(self) -> u32 {
        self.layout().2
    }

    /// All-ones value of this field's width.
    #[inline]
    pub const fn full(self) -> u128 {
        let bits = self.bits();
        if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        }
    }
}

impl FlowKey {
    /// The all-zero key (as a mask: everything wildcarded).
    pub const ZERO: FlowKey = FlowKey {
        words: [0; KEY_WORDS],
    };

    /// The all-ones mask (every bit significant).
    pub const EXACT: FlowKey = FlowKey {
        words: [u64::MAX; KEY_WORDS],
    };

    /// Reads a field.
    #[inline]
    pub fn get(&self, f: Field) -> u128 {
        let (w, shift, bits) = f.layout();
        if bits == 128 {
            (u128::from(self.words[w]) << 64) | u128::from(self.words[w + 1])
        } else {
            u128::from((self.words[w] >> shift) & ((1u64 << bits) - 1))
        }
    }

    /// Writes a field; bits above its width are ignored.
    #[inline]
    pub fn set(&mut self, f: Field, v: u128) {
        let (w, shift, bits) = f.layout();
        if bits == 128 {
            self.words[w] = (v >> 64) as u64;
            self.words[w + 1] = v as u64;
        } else {
            let m = ((1u64 << bits) - 1) << shift;
            self.words[w] = (self.words[w] & !m) | (((v as u64) << shift) & m);
        }
    }

    /// Sets every bit of a field (used on masks).
    #[inline]
    pub fn set_exact(&mut self, f: Field) {
        self.set(f, f.full());
    }

    /// `self & mask`, word by word.
    #[inline]
    pub fn masked(&self, mask: &FlowMask) -> FlowKey {
        let mut out = FlowKey::ZERO;
        for i in 0..KEY_WORDS {
            out.words[i] = self.words[i] & mask.words[i];
        }
        out
    }

    /// `self | other`, word by word (union of masks).
    #[inline]
    pub fn union(&mut self, other: &FlowMask) {
        for i in 0..KEY_WORDS {
            self.words[i] |= other.words[i];
        }
    }

    /// True when `key & self_mask == value` where `self` is the value
    /// (already masked) and `mask` the mask.
    #[inline]
    pub fn matches(&self, mask: &FlowMask, key: &FlowKey) -> bool {
        let mut diff = 0u64;
        for i in 0..KEY_WORDS {
            diff |= (key.words[i] & mask.words[i]) ^ self.words[i];
        }
        diff == 0
    }

    /// True when every bit of `self` (a mask) is also set in `other`.
    #[inline]
    pub fn is_subset_of(&self, other: &FlowMask) -> bool {
        (0..KEY_WORDS).all(|i| self.words[i] & !other.words[i] == 0)
    }

    /// True when no bit is set.
    #[inline]
    pub fn is_zero(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// A fast 64-bit hash of the words (for cache tables; not DoS-resistant,
    /// which is why every cache is bounded and keyed by a per-PMD seed).
    #[inline]
    pub fn hash_with(&self, seed: u64) -> u64 {
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        for w in self.words {
            h = (h ^ w).wrapping_mul(0x100_0000_01b3).rotate_left(29);
            h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        }
        h ^ (h >> 32)
    }

    /// Ingress port.
    #[inline]
    pub fn in_port(&self) -> PortNo {
        self.get(Field::InPort) as PortNo
    }

    /// Ethernet destination.
    #[inline]
    pub fn eth_dst(&self) -> [u8; 6] {
        mac_from_u64(self.get(Field::EthDst) as u64)
    }

    /// Ethernet source.
    #[inline]
    pub fn eth_src(&self) -> [u8; 6] {
        mac_from_u64(self.get(Field::EthSrc) as u64)
    }

    /// Ethernet type after VLAN tags.
    #[inline]
    pub fn eth_type(&self) -> u16 {
        self.get(Field::EthType) as u16
    }

    /// Outer VLAN TCI ([`VLAN_PRESENT`] set when tagged).
    #[inline]
    pub fn vlan_tci(&self) -> u16 {
        self.get(Field::VlanTci) as u16
    }

    /// IP protocol (or ARP opcode).
    #[inline]
    pub fn nw_proto(&self) -> u8 {
        self.get(Field::NwProto) as u8
    }
}

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_map();
        for field in Field::ALL {
            let v = self.get(field);
            if v != 0 {
                d.entry(&format_args!("{field:?}"), &format_args!("{v:#x}"));
            }
        }
        d.finish()
    }
}

/// A 48-bit MAC in the low bits of a u64 (network order: first byte highest).
#[inline]
pub fn mac_to_u64(mac: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
}

/// The inverse of [`mac_to_u64`].
#[inline]
pub fn mac_from_u64(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_overlap_and_round_trip() {
        let mut seen = FlowKey::ZERO;
        for f in Field::ALL {
            let mut m = FlowKey::ZERO;
            m.set_exact(f);
            assert!(
                (0..KEY_WORDS).all(|i| m.words[i] & seen.words[i] == 0),
                "{f:?} overlaps"
            );
            seen.union(&m);
            let mut k = FlowKey::ZERO;
            let v = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128 & f.full();
            k.set(f, v);
            assert_eq!(k.get(f), v, "{f:?}");
        }
    }

    #[test]
    fn mac_packing_keeps_byte_order() {
        let mac = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
        assert_eq!(mac_to_u64(mac), 0x0200_5e10_2030);
        assert_eq!(mac_from_u64(mac_to_u64(mac)), mac);
    }

    #[test]
    fn matches_uses_only_masked_bits() {
        let mut key = FlowKey::ZERO;
        key.set(Field::TpDst, 80);
        key.set(Field::TpSrc, 1234);
        let mut mask = FlowKey::ZERO;
        mask.set_exact(Field::TpDst);
        let value = key.masked(&mask);
        assert!(value.matches(&mask, &key));
        key.set(Field::TpDst, 81);
        assert!(!value.matches(&mask, &key));
    }
}
