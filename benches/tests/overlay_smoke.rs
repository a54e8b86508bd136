//! System smoke test of `vswitch-bench --vxlan` (root only; skipped with a
//! message otherwise): a quick run builds both simulated-host pairs (kernel
//! vxlan + bridge, and the real vswitch daemons with a VXLAN port), moves
//! TCP and 64 B frames through each, prints the ratio table and leaves no
//! namespace behind. No speed is asserted, only that traffic went through.

use std::process::{Command, Stdio};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The two numbers of a table row: kernel pair, vswitch pair.
fn row(table: &str, name: &str) -> (f64, f64) {
    let line = table
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{table}"));
    let nums: Vec<f64> = line[name.len()..]
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches('x').parse().ok())
        .collect();
    assert_eq!(nums.len(), 3, "{line}");
    (nums[0], nums[1])
}

#[test]
fn quick_overlay_run_moves_traffic_through_both_pairs() {
    if !is_root() {
        eprintln!("SKIP overlay_smoke: needs root");
        return;
    }
    let bench = std::path::PathBuf::from(env!("CARGO_BIN_EXE_vswitch-bench"));
    let bin_dir = bench.parent().expect("bin dir").to_owned();
    if !bin_dir.join("vswitchd").exists() || !bin_dir.join("vswitchctl").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "overlay_smoke: daemons not built; the test command builds the binaries first"
        );
        eprintln!("SKIP overlay_smoke: run cargo build --workspace --bins first");
        return;
    }
    let child = Command::new(&bench)
        .args(["--vxlan", "--quick", "--pmd-core", "1", "--load-core", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vswitch-bench --vxlan");
    let prefix = benches::bench::topology::process_prefix(child.id());
    let out = child.wait_with_output().expect("wait for vswitch-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "vswitch-bench --vxlan failed:\n{stdout}\n{stderr}"
    );
    let (k_tcp, v_tcp) = row(&stdout, "TCP A→B (Gbit/s)");
    assert!(
        k_tcp > 0.0 && v_tcp > 0.0,
        "TCP through both pairs:\n{stdout}"
    );
    let (k_rx, v_rx) = row(&stdout, "64B rx (kpps)");
    assert!(
        k_rx > 0.0 && v_rx > 0.0,
        "64 B frames through both pairs:\n{stdout}"
    );
    assert!(stdout.contains("RATIO"), "{stdout}");
    let (netns, links) = benches::bench::topology::leftovers(&prefix);
    assert!(
        netns.is_empty() && links.is_empty(),
        "left behind: {netns:?} {links:?}"
    );
}
