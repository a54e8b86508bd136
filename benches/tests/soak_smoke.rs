//! System smoke test of `vswitch-bench --soak` (root only; skipped with a
//! message otherwise): a 10-second soak of the real daemons must produce
//! its report and JSON, with sane vswitchd RSS samples, every churn
//! applied, traffic through, and nothing left behind. No figure is
//! asserted beyond sanity: the 10-minute soak is for people, not CI.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

#[test]
fn short_soak_reports_rss_samples_churn_and_traffic() {
    if !is_root() {
        eprintln!("SKIP soak_smoke: needs root");
        return;
    }
    for tool in ["ip", "ping", "sysctl"] {
        if !have(tool) {
            eprintln!("SKIP soak_smoke: `{tool}` not installed");
            return;
        }
    }
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_vswitch-bench"));
    let bin_dir = bench.parent().expect("target dir").to_owned();
    for b in ["vswitchctl", "vswitchd", "vswitch-controld"] {
        if !bin_dir.join(b).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "soak_smoke: {b} not built; the test command builds the binaries first"
            );
            eprintln!("SKIP soak_smoke: {b} not built (cargo build --workspace --bins)");
            return;
        }
    }
    let json = std::env::temp_dir().join(format!("vsb-soak-smoke-{}.json", std::process::id()));
    let child = Command::new(&bench)
        .args(["--soak", "--soak-secs", "10", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vswitch-bench --soak");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for vswitch-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "soak failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
    assert!(stdout.contains("vswitchd VmRSS: after warm-up"), "{stdout}");
    assert!(stdout.contains("drops by reason:"), "{stdout}");

    let text = std::fs::read_to_string(&json).expect("soak JSON written");
    let _ = std::fs::remove_file(&json);
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["schema"], "vswitch-bench-soak/1");
    let samples = v["rss_samples"].as_array().expect("samples");
    // One a second over 10 s, plus the last one.
    assert!(samples.len() >= 8, "{} RSS samples", samples.len());
    let mut last_t = -1.0;
    for s in samples {
        let kib = s["rss_kib"].as_u64().expect("rss_kib");
        // A running vswitchd holds at least its pools; 64 GiB is absurd.
        assert!((1024..64 << 20).contains(&kib), "RSS {kib} KiB");
        let t = s["t"].as_f64().expect("t");
        assert!(t > last_t && t <= 15.0, "sample times increase: {t}");
        last_t = t;
    }
    assert!(v["growth_kib"].is_i64(), "growth computed: {text}");
    assert!(v["churns"].as_u64().is_some_and(|c| c >= 3), "{text}");
    assert!(v["udp_small"]["received"].as_u64().is_some_and(|n| n > 0));
    assert!(v["udp_large"]["received"].as_u64().is_some_and(|n| n > 0));
    assert!(v["tcp_gbps"].as_f64().is_some_and(|g| g > 0.0), "{text}");
    assert!(v["drops"].is_object());
    // The private run directory and the namespaces are gone.
    assert!(
        !std::path::Path::new(&format!("/tmp/vsb-soak-{pid}")).exists(),
        "run directory left behind"
    );
    let prefix = benches::bench::topology::process_prefix(pid);
    let (netns, _) = benches::bench::topology::leftovers(&prefix);
    assert!(netns.is_empty(), "namespaces left behind: {netns:?}");
}
