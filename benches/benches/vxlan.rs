//! Criterion benchmarks of VXLAN encapsulation and decapsulation as the
//! VXLAN port does them per packet, without the socket calls (those are
//! batched: one `sendmmsg`/`recvmmsg` per burst, measured end to end by
//! `vswitch-bench`):
//! - encap: inner flow hash (picks the source-port socket) + VXLAN header
//!   prepended into the headroom;
//! - decap: header validation + software GRO intake, which copies the inner
//!   frame out of the socket buffer into a pool packet (64 B frames: no
//!   merge) or appends a TCP segment's payload to the open run (1448 B);
//! - both together on one 64 B frame.
//!
//! Issue 6's target: ≥ 10 Mpps per core for encap + decap.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datapath::packet::{PacketPool, TunnelMeta};
use datapath::wire::vxlan::{decap, encap, flow_hash, header, VXLAN_HLEN};
use datapath::wire::Gro;
use std::hint::black_box;

/// A 64-byte UDP/IPv4 frame.
fn udp64() -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(40000, 5201)
        .write(&mut f, &[0u8; 18])
        .unwrap();
    f.resize(64, 0);
    f
}

fn tcp_segment(seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 5201, seq, 500)
        .ack(1)
        .write(&mut f, &vec![0x5a; len])
        .unwrap();
    f
}

fn vxlan(c: &mut Criterion) {
    let mut g = c.benchmark_group("vxlan");
    g.throughput(Throughput::Elements(1));
    let mut pool = PacketPool::new(64, 4, 4);
    let frame = udp64();

    let mut pkt = pool.alloc(64).unwrap();
    pkt.copy_from(&frame);
    g.bench_function("encap_64B", |b| {
        b.iter(|| {
            let sock = flow_hash(black_box(pkt.data())) % 8;
            assert!(encap(&mut pkt, black_box(42)));
            black_box((sock, pkt.data()[4]));
            pkt.pull_front(VXLAN_HLEN);
        })
    });

    let mut datagram = header(42).to_vec();
    datagram.extend_from_slice(&frame);
    let tunnel = TunnelMeta {
        vni: 42,
        src: 0x0a00_0002,
        dst: 0x0a00_0001,
    };
    let mut gro = Gro::new();
    let mut out = Vec::with_capacity(64);
    g.bench_function("decap_64B", |b| {
        b.iter(|| {
            let vni = decap(black_box(&datagram)).unwrap();
            let t = TunnelMeta { vni, ..tunnel };
            assert!(gro.push(&datagram[VXLAN_HLEN..], t, &mut pool, |p| out.push(p)));
            // The PMD frees it after transmit; here at once.
            pool.free_all(out.drain(..));
        })
    });

    g.bench_function("encap_decap_64B", |b| {
        b.iter(|| {
            let _ = flow_hash(black_box(pkt.data())) % 8;
            encap(&mut pkt, 42);
            let vni = decap(pkt.data()).unwrap();
            let t = TunnelMeta { vni, ..tunnel };
            assert!(gro.push(&pkt.data()[VXLAN_HLEN..], t, &mut pool, |p| out.push(p)));
            pool.free_all(out.drain(..));
            pkt.pull_front(VXLAN_HLEN);
        })
    });

    // 1448-byte TCP segments of one connection: decap + GRO append.
    let segs: Vec<Vec<u8>> = (0..44u32)
        .map(|i| {
            let mut d = header(42).to_vec();
            d.extend_from_slice(&tcp_segment(1 + i * 1448, 1448));
            d
        })
        .collect();
    g.throughput(Throughput::Elements(segs.len() as u64));
    g.bench_function("decap_gro_44x1448B", |b| {
        b.iter(|| {
            for d in &segs {
                let vni = decap(d).unwrap();
                let t = TunnelMeta { vni, ..tunnel };
                gro.push(&d[VXLAN_HLEN..], t, &mut pool, |p| out.push(p));
            }
            gro.flush(|p| out.push(p));
            assert_eq!(out.len(), 1);
            pool.free_all(out.drain(..));
        })
    });
    g.finish();
}

criterion_group!(benches, vxlan);
criterion_main!(benches);
