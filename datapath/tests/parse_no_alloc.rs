//! Proves the per-packet parse, rewrite, checksum and segmentation paths
//! allocate nothing once the packet pool is warm (ARCHITECTURE.md: "no
//! allocation per packet on the fast path — a test asserts it").
//!
//! A counting global allocator tallies allocations per thread, so tests
//! running in parallel threads do not disturb each other's counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use datapath::flow::extract;
use datapath::packet::{GsoType, OffloadMeta, Packet, PacketPool, SizeClass, TunnelMeta};
use datapath::wire::{self, HeaderLayout};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` unchanged; the thread-local
// counter is const-initialised, so touching it never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn tcp_ipv4(payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(etherparse::VlanId::try_new(7).unwrap())
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 5201, 1, 1000)
        .ack(1)
        .write(&mut f, &vec![0x5a; payload])
        .unwrap();
    f
}

#[test]
fn parse_rewrite_and_checksum_do_not_allocate() {
    let frames = [tcp_ipv4(0), tcp_ipv4(1400)];
    let mut copies: Vec<Vec<u8>> = frames.to_vec();
    let none = TunnelMeta::default();
    let before = allocations();
    let mut parsed = 0u32;
    for _ in 0..1000 {
        for (frame, copy) in frames.iter().zip(copies.iter_mut()) {
            let x = extract(frame, 1, &none).unwrap();
            parsed += u32::from(x.anomaly.is_none());
            let layout = HeaderLayout::new(&x, &OffloadMeta::default());
            wire::set_ipv4_src(copy, &layout, [10, 9, 9, 9]).unwrap();
            wire::set_tp_dst(copy, &layout, 8080).unwrap();
            wire::fill_l4_checksum(copy, &layout).unwrap();
        }
    }
    assert_eq!(allocations() - before, 0);
    assert_eq!(parsed, 2000);
}

#[test]
fn segmentation_with_a_warm_pool_does_not_allocate() {
    let frame = tcp_ipv4(60_000);
    let mut pkt: Packet = PacketPool::new(0, 0, 1)
        .alloc_class(SizeClass::Gso)
        .unwrap();
    assert!(pkt.copy_from(&frame));
    pkt.offload.gso_type = GsoType::TcpV4;
    pkt.offload.gso_size = 1448;
    let mut pool = PacketPool::new(64, 0, 0);
    let mut out: Vec<Packet> = Vec::with_capacity(64);
    let before = allocations();
    for _ in 0..20 {
        let n = wire::segment(&pkt, &mut pool, |seg| out.push(seg)).unwrap();
        assert_eq!(n, 42);
        pool.free_all(out.drain(..));
    }
    assert_eq!(allocations() - before, 0);
}
