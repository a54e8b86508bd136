//! Offload metadata carried with a packet, as in `struct virtio_net_hdr`
//! (include/uapi/linux/virtio_net.h, virtio spec 1.1 §5.1.6).

/// Segmentation a large frame still needs before it can go on a wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GsoType {
    /// A single frame, no segmentation pending.
    #[default]
    None,
    /// TCP over IPv4, to be cut into `gso_size` segments.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
    /// UDP, segmented at L4 (USO, `VIRTIO_NET_HDR_GSO_UDP_L4`).
    UdpL4,
}

impl GsoType {
    /// The virtio_net_hdr `gso_type` value (without the ECN bit).
    pub fn to_virtio(self) -> u8 {
        match self {
            GsoType::None => 0,
            GsoType::TcpV4 => 1,
            GsoType::TcpV6 => 4,
            GsoType::UdpL4 => 5,
        }
    }

    /// Parses a virtio_net_hdr `gso_type` (ECN bit 0x80 ignored here; it is
    /// kept in [`OffloadMeta::gso_ecn`]). None for unknown values.
    pub fn from_virtio(v: u8) -> Option<Self> {
        match v & 0x7f {
            0 => Some(GsoType::None),
            1 => Some(GsoType::TcpV4),
            4 => Some(GsoType::TcpV6),
            5 => Some(GsoType::UdpL4),
            _ => None,
        }
    }
}

/// Checksum and segmentation state of a frame.
///
/// `csum_start` counts from the first byte of the Ethernet header, exactly
/// as the TUN driver reports it, so header edits in front of the L4 header
/// (VLAN push/pop, encapsulation) must move it; [`super::Packet`]'s editing
/// helpers do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadMeta {
    /// `F_NEEDS_CSUM` and/or `F_DATA_VALID`.
    pub flags: u8,
    /// Pending segmentation.
    pub gso_type: GsoType,
    /// ECN bit of the virtio gso_type (segments keep CWR semantics).
    pub gso_ecn: bool,
    /// Length of all headers up to the L4 payload (a hint).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts, from the Ethernet header.
    pub csum_start: u16,
    /// Where the checksum is stored, from `csum_start`.
    pub csum_offset: u16,
}

impl OffloadMeta {
    /// The L4 checksum field holds only the pseudo-header sum; the sender
    /// expects whoever transmits the frame to finish it.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// The checksum was verified (or need not be).
    pub const F_DATA_VALID: u8 = 2;

    /// True when the L4 checksum still has to be completed.
    #[inline]
    pub fn needs_csum(&self) -> bool {
        self.flags & Self::F_NEEDS_CSUM != 0
    }

    /// True when the frame must be segmented before a plain wire.
    #[inline]
    pub fn is_gso(&self) -> bool {
        self.gso_type != GsoType::None
    }
}
