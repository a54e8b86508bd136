//! Frame builders for tests (etherparse builds the headers, so the bytes
//! are what a real host would send).

use etherparse::PacketBuilder;

/// A MAC whose last byte is `n` (locally administered, unicast).
pub fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

/// The broadcast MAC.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Ethernet + IPv4 + UDP with `payload`.
pub fn udp4(
    src: [u8; 6],
    dst: [u8; 6],
    ip_src: [u8; 4],
    ip_dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src, dst)
        .ipv4(ip_src, ip_dst, 64)
        .udp(sport, dport);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build udp frame");
    out
}

/// Ethernet + IPv4 + TCP (flags: SYN when `syn`) with `payload`.
pub fn tcp4(
    src: [u8; 6],
    dst: [u8; 6],
    ip_src: [u8; 4],
    ip_dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src, dst)
        .ipv4(ip_src, ip_dst, 64)
        .tcp(sport, dport, 1, 65535);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build tcp frame");
    out
}

/// A simple L2 frame (UDP between fixed addresses) from `src` to `dst`.
pub fn l2(src: [u8; 6], dst: [u8; 6]) -> Vec<u8> {
    udp4(
        src,
        dst,
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        1000,
        2000,
        b"payload",
    )
}

/// `frame` with an 802.1Q tag (TPID 0x8100, VID `vid`) after the MACs.
pub fn tagged(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// The VID of a tagged frame, None when untagged.
pub fn vid_of(frame: &[u8]) -> Option<u16> {
    (frame.len() >= 16 && frame[12] == 0x81 && frame[13] == 0x00)
        .then(|| u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff)
}
