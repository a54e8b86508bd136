//! Property tests for VXLAN decapsulation and the receive-side GRO that
//! follows it (issue 8: hostile input never panics, never allocates
//! without bound): random datagrams, truncations and bit flips of valid
//! datagrams carrying TCP segments go through `wire::vxlan::decap`, then
//! `wire::Gro` with a small bounded pool, then the local-sender adoption
//! helpers. Everything must return normally; GRO output must never exceed
//! the bytes fed in (plus one Ethernet+IP+TCP header per run) and every
//! buffer must go back to the pool.

use datapath::packet::{PacketPool, PoolStats, TunnelMeta};
use datapath::wire::gro::{adopt_gso, adopt_partial_checksum, claimed_frame_len};
use datapath::wire::vxlan::{decap, header, VXLAN_HLEN};
use datapath::wire::Gro;
use proptest::collection::vec;
use proptest::prelude::*;

/// A VXLAN datagram carrying a TCP/IPv4 segment with valid checksums.
fn tcp_datagram(vni: u32, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut d = header(vni).to_vec();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 5201, seq, 500)
        .ack(1)
        .write(&mut d, payload)
        .unwrap();
    d
}

/// Runs datagrams through decap + GRO as the VXLAN port does; returns
/// (frames out, bytes out, inner bytes in).
fn receive(datagrams: &[Vec<u8>], pool: &mut PacketPool) -> (usize, usize, usize) {
    let mut gro = Gro::new();
    let mut out = Vec::new();
    let mut inner_in = 0;
    for d in datagrams {
        let Ok(vni) = decap(d) else { continue };
        let inner = &d[VXLAN_HLEN..];
        inner_in += inner.len();
        let _ = claimed_frame_len(inner);
        let t = TunnelMeta {
            vni,
            src: 1,
            dst: 2,
        };
        gro.push(inner, t, pool, |p| out.push(p));
    }
    gro.flush(|p| out.push(p));
    let frames = out.len();
    let bytes = out.iter().map(|p| p.len()).sum();
    for mut p in out {
        adopt_partial_checksum(&mut p);
        adopt_gso(&mut p, 0, 1464);
        pool.free(p);
    }
    (frames, bytes, inner_in)
}

fn outstanding(s: PoolStats) -> u64 {
    s.allocated.iter().sum::<u64>()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_datagrams_never_panic(ds in vec(vec(any::<u8>(), 0..3000), 1..40)) {
        let mut pool = PacketPool::new(64, 8, 4);
        let (_, bytes, inner) = receive(&ds, &mut pool);
        prop_assert!(bytes <= inner);
    }

    #[test]
    fn mutated_tcp_trains_never_panic_and_never_grow(
        n in 1usize..30,
        len in 1usize..1500,
        cuts in vec((0usize..40, 0usize..1600), 0..6),
        flips in vec((0usize..40, 0usize..1600, any::<u8>()), 0..12),
        vni in 0u32..(1 << 24),
    ) {
        let mut ds: Vec<Vec<u8>> = (0..n)
            .map(|i| tcp_datagram(vni, 1 + (i * len) as u32, &vec![i as u8; len]))
            .collect();
        for (i, at) in cuts {
            if let Some(d) = ds.get_mut(i % n) {
                let at = at.min(d.len());
                d.truncate(at);
            }
        }
        for (i, at, x) in flips {
            if let Some(d) = ds.get_mut(i % n) {
                if !d.is_empty() {
                    let at = at % d.len();
                    d[at] ^= x;
                }
            }
        }
        let mut pool = PacketPool::new(128, 8, 8);
        let (frames, bytes, inner) = receive(&ds, &mut pool);
        // Merging only removes repeated headers; it never adds bytes.
        prop_assert!(bytes <= inner, "{bytes} > {inner}");
        prop_assert!(frames <= n);
        let before = outstanding(pool.stats());
        // Buffers are reused from the free lists: a second pass allocates
        // nothing new.
        receive(&ds, &mut pool);
        prop_assert_eq!(outstanding(pool.stats()), before);
        // And every buffer is back on a free list.
        let s = pool.stats();
        for c in 0..3 {
            prop_assert_eq!(s.free[c] as u64, s.allocated[c]);
        }
    }
}

#[test]
fn an_untouched_train_merges_into_one_frame() {
    let mut pool = PacketPool::new(128, 8, 8);
    let ds: Vec<Vec<u8>> = (0..20u32)
        .map(|i| tcp_datagram(7, 1 + i * 1400, &[i as u8; 1400]))
        .collect();
    let (frames, bytes, _) = receive(&ds, &mut pool);
    assert_eq!(frames, 1);
    assert_eq!(bytes, 54 + 20 * 1400);
}
