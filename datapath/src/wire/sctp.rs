//! SCTP's checksum: CRC32c (Castagnoli polynomial, RFC 9260 §6.8 and
//! Appendix A, test vectors from RFC 3720 §B.4).
//!
//! The CRC is stored in the common header's checksum field least
//! significant byte first (RFC 9260 Appendix A's byte swap; Linux stores
//! `cpu_to_le32(~crc)`), which is what [`SctpChecksum::to_field`] gives.

/// Reflected CRC32c polynomial.
const POLY: u32 = 0x82f6_3b78;

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = table();

/// CRC32c of `data` (initial value and final XOR all ones).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc = TABLE[((crc ^ u32::from(*b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Offset of the checksum in the SCTP common header.
pub const SCTP_CHECKSUM_OFS: usize = 8;
/// Length of the SCTP common header.
pub const SCTP_COMMON_LEN: usize = 12;

/// A CRC32c value as the SCTP checksum field holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SctpChecksum(pub u32);

impl SctpChecksum {
    /// The four field bytes.
    pub fn to_field(self) -> [u8; 4] {
        self.0.to_le_bytes()
    }

    /// Reads the field bytes.
    pub fn from_field(b: [u8; 4]) -> Self {
        SctpChecksum(u32::from_le_bytes(b))
    }
}

/// The checksum an SCTP packet (common header to end) should carry: the
/// CRC over the packet with the checksum field taken as zero.
pub(crate) fn correct_checksum(sctp: &mut [u8]) -> SctpChecksum {
    let field = SCTP_CHECKSUM_OFS..SCTP_CHECKSUM_OFS + 4;
    let mut saved = [0u8; 4];
    saved.copy_from_slice(&sctp[field.clone()]);
    sctp[field.clone()].fill(0);
    let crc = crc32c(sctp);
    sctp[field].copy_from_slice(&saved);
    SctpChecksum(crc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3720_test_vectors() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let up: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&up), 0x46dd_794e);
        let down: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c(&down), 0x113f_db5c);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn field_bytes_are_least_significant_first() {
        // RFC 3720 §B.4 lists the CRC of 32 zero bytes as bytes aa 36 91 8a.
        assert_eq!(
            SctpChecksum(crc32c(&[0u8; 32])).to_field(),
            [0xaa, 0x36, 0x91, 0x8a]
        );
        assert_eq!(
            SctpChecksum::from_field([0xaa, 0x36, 0x91, 0x8a]),
            SctpChecksum(0x8a91_36aa)
        );
    }

    #[test]
    fn correct_checksum_ignores_and_keeps_the_field() {
        let mut pkt = vec![0u8; 28];
        pkt[..4].copy_from_slice(&[0x0b, 0x59, 0x0b, 0x5a]);
        pkt[8..12].copy_from_slice(&[1, 2, 3, 4]);
        let mut zeroed = pkt.clone();
        zeroed[8..12].fill(0);
        assert_eq!(correct_checksum(&mut pkt), SctpChecksum(crc32c(&zeroed)));
        assert_eq!(&pkt[8..12], &[1, 2, 3, 4]);
    }
}
