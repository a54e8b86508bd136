//! Proves the hit path allocates nothing: after warm-up, forwarding
//! thousands of packets (rx from a memory port, parse, EMC/megaflow hit,
//! actions, tx batch) performs zero heap allocations on this thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use tests::frames::{mac, udp4, BROADCAST};
use tests::lab::Lab;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates every call to the system allocator unchanged; only
// counts calls in a const-initialised thread-local (which never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

#[test]
fn hit_path_forwards_without_allocating() {
    let lab = Lab::plain(2);
    let frames: Vec<Vec<u8>> = (0..16u16)
        .map(|i| {
            udp4(
                mac(1),
                mac(2),
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                1000 + i,
                80,
                &[0u8; 18],
            )
        })
        .collect();
    lab.exchange(
        2,
        &udp4(mac(2), BROADCAST, [10, 0, 0, 2], [10, 0, 0, 1], 1, 1, b""),
    );
    let round = |lab: &Lab| {
        for _ in 0..4 {
            for f in &frames {
                lab.send(1, f);
            }
        }
        lab.run();
        lab.hosts[1].recycle_output()
    };
    // Warm-up: caches filled, pools and rings grown.
    for _ in 0..200 {
        round(&lab);
    }
    let before = allocs();
    let mut forwarded = 0;
    for _ in 0..500 {
        forwarded += round(&lab);
    }
    let after = allocs();
    assert_eq!(forwarded, 500 * 64);
    assert_eq!(after - before, 0, "allocations on the hit path");
    let pmd = &lab.sw.pmd_stats()[0];
    assert!(pmd.stats.emc_hits + pmd.stats.megaflow_hits >= 500 * 64);
}

#[test]
fn storm_control_and_anti_spoofing_on_the_hit_path_allocate_nothing() {
    use datapath::drop::DropReason;
    use datapath::security::{IpPrefix, PortSecurity};
    let mut lab = Lab::plain(3);
    lab.sw
        .set_port_security(
            "p1",
            PortSecurity {
                allowed_macs: Some(vec![mac(1)]),
                allowed_ips: Some(vec![IpPrefix::parse("10.0.0.1").unwrap()]),
                storm_pps: Some(1000),
                ..PortSecurity::default()
            },
        )
        .unwrap();
    // Broadcasts: flooded to ports 2 and 3 behind a StormCheck; spoofed
    // sources: dropped by the cached security verdict.
    let frames: Vec<Vec<u8>> = (0..16u16)
        .flat_map(|i| {
            [
                udp4(
                    mac(1),
                    BROADCAST,
                    [10, 0, 0, 1],
                    [10, 0, 0, 2],
                    1000 + i,
                    80,
                    &[0; 18],
                ),
                udp4(
                    mac(1),
                    BROADCAST,
                    [10, 0, 0, 7],
                    [10, 0, 0, 2],
                    1000 + i,
                    80,
                    &[0; 18],
                ),
            ]
        })
        .collect();
    let round = |lab: &mut Lab| {
        for _ in 0..2 {
            for f in &frames {
                lab.send(1, f);
            }
        }
        lab.run();
        // 20 ms at 1000 pps: 20 floods pass per round, the rest is storm.
        lab.now_ms += 20;
        let mut n = 0;
        for h in &lab.hosts[1..] {
            n += lab.sw.with_pool(|pool| h.release_output(pool, |_| ()));
        }
        n
    };
    for _ in 0..100 {
        round(&mut lab);
    }
    let before = allocs();
    let mut delivered = 0;
    for _ in 0..300 {
        delivered += round(&mut lab);
    }
    let after = allocs();
    assert_eq!(after - before, 0, "allocations on the metered hit path");
    assert_eq!(delivered, 300 * 20 * 2);
    let d = lab.sw.drop_stats();
    assert!(d.get(DropReason::Storm) >= 300 * 12, "{d:?}");
    assert!(d.get(DropReason::SpoofedIp) >= 300 * 32, "{d:?}");
}
