//! Criterion micro benchmarks of frame parsing (`flow::extract`) and the
//! wire helpers: the per-packet costs BENCHMARKS.md lists under "parse".

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datapath::flow::extract;
use datapath::packet::{GsoType, OffloadMeta, PacketPool, SizeClass, TunnelMeta};
use datapath::wire::{self, HeaderLayout};
use std::hint::black_box;

/// A TCP ACK over IPv4 (54 bytes, as most frames of a bulk transfer's
/// reverse direction look).
fn tcp_ipv4() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[
        0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f.extend_from_slice(&[
        0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x10, 0x01, 0xf5, 0, 0, 0, 0,
    ]);
    wire::fill_ipv4_checksum(&mut f, 14).unwrap();
    f
}

/// UDP over IPv6 behind one VLAN tag.
fn udp_ipv6_vlan() -> Vec<u8> {
    let mut f = vec![
        2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0x00, 0x0a, 0x86, 0xdd,
    ];
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
    f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0, 8, 0, 0]);
    f
}

fn parse(c: &mut Criterion) {
    let none = TunnelMeta::default();
    let mut g = c.benchmark_group("extract");
    g.throughput(Throughput::Elements(1));
    let tcp = tcp_ipv4();
    g.bench_function("tcp_ipv4", |b| {
        b.iter(|| extract(black_box(&tcp), black_box(1), &none))
    });
    let udp = udp_ipv6_vlan();
    g.bench_function("udp_ipv6_vlan", |b| {
        b.iter(|| extract(black_box(&udp), black_box(1), &none))
    });
    g.finish();
}

fn rewrite(c: &mut Criterion) {
    let mut f = tcp_ipv4();
    let x = extract(&f, 1, &TunnelMeta::default()).unwrap();
    let layout = HeaderLayout::new(&x, &OffloadMeta::default());
    c.bench_function("wire/set_ipv4_src_and_tp_dst", |b| {
        b.iter(|| {
            wire::set_ipv4_src(black_box(&mut f), &layout, [10, 1, 2, 3]).unwrap();
            wire::set_tp_dst(black_box(&mut f), &layout, 8080).unwrap();
        })
    });
}

fn gso(c: &mut Criterion) {
    // A 64 KiB TSO frame cut into 1448-byte segments, recycled to the pool.
    let mut frame = tcp_ipv4();
    frame.resize(14 + 65_535, 0xab);
    frame[16..18].copy_from_slice(&65_535u16.to_be_bytes());
    let mut pkt = PacketPool::new(0, 0, 1)
        .alloc_class(SizeClass::Gso)
        .unwrap();
    pkt.copy_from(&frame);
    pkt.offload.gso_type = GsoType::TcpV4;
    pkt.offload.gso_size = 1448;
    let mut pool = PacketPool::new(64, 0, 0);
    let mut segs = Vec::with_capacity(64);
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("segment_tcp_64k", |b| {
        b.iter(|| {
            wire::segment(&pkt, &mut pool, |s| segs.push(s)).unwrap();
            pool.free_all(segs.drain(..));
        })
    });
    g.finish();
}

criterion_group!(benches, parse, rewrite, gso);
criterion_main!(benches);
