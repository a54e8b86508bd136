//! Profiling driver: forwards 64 B frames between memory ports through EMC
//! hits for a fixed number of bursts (run under callgrind or perf).

use benches::{mac, udp64, MemorySwitch};
use datapath::pmd::PmdConfig;

fn main() {
    let bursts: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
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
    let frames: Vec<Vec<u8>> = (0..32u16)
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
    let t = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..bursts {
        n += ms.forward(1, &frames);
    }
    let dt = t.elapsed();
    println!(
        "{n} packets in {:?}: {:.2} Mpps",
        dt,
        n as f64 / dt.as_secs_f64() / 1e6
    );
}
