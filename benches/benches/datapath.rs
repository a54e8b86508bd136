//! Criterion benches of the packet core. Every Mpps figure is per packet
//! through the whole path: rx from a memory port, parse, cache lookup,
//! actions, tx batch (the host side's inject and recycle included).
//!
//! Run: `cargo bench -p benches` (figures per element = per packet).

use benches::{mac, udp64, MemorySwitch};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use datapath::flow::{extract, Field, FlowKey};
use datapath::packet::TunnelMeta;
use datapath::pipeline::{
    translate, Action, BridgePort, BridgeView, DpAction, Fdb, InstalledRule, Match, Pipeline, Rule,
    RuleStats, VlanMode,
};
use datapath::pmd::PmdConfig;
use std::hint::black_box;
use std::sync::Arc;

const BURST: usize = 32;

fn parse(c: &mut Criterion) {
    let frame = udp64(mac(1), mac(2), [10, 0, 0, 1], [10, 0, 0, 2], 1000, 80);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("udp4_64B", |b| {
        b.iter(|| extract(black_box(&frame), 1, &TunnelMeta::default()))
    });
    g.finish();
}

/// 16 flows port 1 → port 2 (destination learned), all in the EMC.
fn emc_hit(c: &mut Criterion) {
    let ms = MemorySwitch::new(
        2,
        PmdConfig {
            emc_insert_inv_prob: 1,
            ..PmdConfig::default()
        },
    );
    ms.forward(
        2,
        &[udp64(mac(2), [0xff; 6], [10, 0, 0, 2], [10, 0, 0, 1], 1, 1)],
    );
    let frames: Vec<Vec<u8>> = (0..BURST as u16)
        .map(|i| {
            udp64(
                mac(1),
                mac(2),
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                1000 + i % 16,
                80,
            )
        })
        .collect();
    for _ in 0..100 {
        ms.forward(1, &frames);
    }
    let mut g = c.benchmark_group("e2e_memory_port");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("emc_hit_64B", |b| {
        b.iter(|| assert_eq!(ms.forward(1, &frames), BURST))
    });
    g.finish();
    let pmd = &ms.sw.pmd_stats()[0];
    eprintln!(
        "emc_hit: emc hits {} megaflow hits {} upcalls {}",
        pmd.stats.emc_hits, pmd.stats.megaflow_hits, pmd.stats.upcalls
    );
}

/// The EMC disabled; 10,000 flows spread over N megaflow subtables.
fn megaflow_hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("e2e_memory_port");
    g.throughput(Throughput::Elements(BURST as u64));
    for n_sub in [1usize, 10, 100] {
        let ms = MemorySwitch::new(
            2,
            PmdConfig {
                emc_entries: 0,
                ..PmdConfig::default()
            },
        );
        let flows = 10_000u32;
        let frame_of = |f: u32| {
            let sub = (f as usize % n_sub) as u16;
            udp64(
                mac(1),
                mac(2),
                [10, 1, (f >> 8) as u8, f as u8],
                [10, 2, 0, 1],
                (f >> 4) as u16,
                sub,
            )
        };
        // One megaflow per flow, under its subtable's distinct mask.
        ms.sw.with_pmd(0, |pmd, snap| {
            for f in 0..flows {
                let sub = f as usize % n_sub;
                let frame = frame_of(f);
                let key: FlowKey = extract(&frame, 1, &TunnelMeta::default()).unwrap().key;
                let mut mask = FlowKey::ZERO;
                for fl in [Field::InPort, Field::EthType, Field::NwProto, Field::TpDst] {
                    mask.set_exact(fl);
                }
                mask.set(Field::NwSrc, 0xffff_ffff);
                // Distinct masks: source port prefix length and dst prefix.
                let tp_bits = (sub % 17) as u32;
                mask.set(
                    Field::TpSrc,
                    u128::from(0xffffu32 << (16 - tp_bits) & 0xffff),
                );
                let dst_len = 6 * (sub / 17) as u32;
                mask.set(
                    Field::NwDst,
                    u128::from(if dst_len == 0 {
                        0
                    } else {
                        u32::MAX << (32 - dst_len)
                    }),
                );
                pmd.install_megaflow(snap, key, mask, vec![DpAction::Output(2)]);
            }
            assert_eq!(pmd.megaflow_stats().subtables, n_sub);
        });
        let frames: Vec<Vec<Vec<u8>>> = (0..flows)
            .map(frame_of)
            .collect::<Vec<_>>()
            .chunks(BURST)
            .map(|c| c.to_vec())
            .collect();
        let mut i = 0;
        g.bench_with_input(
            BenchmarkId::new("megaflow_hit_64B_10k_flows", n_sub),
            &n_sub,
            |b, _| {
                b.iter(|| {
                    i = (i + 1) % frames.len();
                    assert_eq!(ms.forward(1, &frames[i]), frames[i].len());
                })
            },
        );
        let pmd = &ms.sw.pmd_stats()[0];
        assert_eq!(pmd.stats.upcalls, 0, "every packet must hit a megaflow");
        eprintln!(
            "megaflow {n_sub} subtables: hits {} entries {}",
            pmd.stats.megaflow_hits, pmd.megaflow.entries
        );
    }
    g.finish();
}

/// One upcall: the default NORMAL pipeline plus 100 unrelated ACL rules.
fn slow_path(c: &mut Criterion) {
    let mut rules: Vec<Arc<InstalledRule>> = (0..100u16)
        .map(|i| {
            Arc::new(InstalledRule {
                rule: Rule::new(
                    0,
                    100 + i,
                    Match::ANY
                        .with(Field::EthType, 0x0800)
                        .with(Field::NwProto, 6)
                        .with(Field::TpDst, u128::from(10_000 + i)),
                    vec![],
                ),
                seq: u64::from(i),
                stats: RuleStats::new(0),
            })
        })
        .collect();
    rules.push(Arc::new(InstalledRule {
        rule: Rule::default_normal(),
        seq: 1000,
        stats: RuleStats::new(0),
    }));
    let pipeline = Pipeline::build(rules, []);
    let fdb = Fdb::new(8192, 300);
    let ports: Vec<BridgePort> = (1..=4)
        .map(|no| BridgePort {
            no,
            vlan: VlanMode::default(),
            is_tunnel: false,
            security: None,
        })
        .collect();
    let view = BridgeView {
        pipeline: &pipeline,
        fdb: &fdb,
        ports: &ports,
    };
    let frame = udp64(mac(1), mac(2), [10, 0, 0, 1], [10, 0, 0, 2], 1000, 80);
    let key = extract(&frame, 1, &TunnelMeta::default()).unwrap().key;
    let _ = Action::Normal;
    let mut g = c.benchmark_group("slow_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("translate_normal_100_acl_rules", |b| {
        b.iter(|| translate(view, black_box(&key), 0, false))
    });
    g.finish();
}

criterion_group!(benches, parse, emc_hit, megaflow_hit, slow_path);
criterion_main!(benches);
