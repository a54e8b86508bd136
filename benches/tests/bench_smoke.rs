//! System smoke test of `vswitch-bench` (root only; skipped with a message
//! otherwise): a quick run on the kernel bridge and our TAP switch must
//! write the stable JSON schema, and the sink must have received ≥ 95 % of
//! the generator's own frames of the paced check (counted by sequence
//! number in their payload). No speed is asserted.

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
fn quick_run_writes_the_schema_and_delivers_the_generators_frames() {
    if !is_root() {
        eprintln!("SKIP bench_smoke: needs root");
        return;
    }
    for tool in ["ip", "ping", "taskset", "ethtool"] {
        if !have(tool) {
            eprintln!("SKIP bench_smoke: `{tool}` not installed");
            return;
        }
    }
    let dir = std::env::temp_dir().join(format!("vsb-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("out.json");
    let svg = dir.join("out.svg");
    let child = Command::new(env!("CARGO_BIN_EXE_vswitch-bench"))
        .args([
            "--quick",
            "--only",
            "kernel-bridge,vswitch-tap",
            "--figures",
            "pps,latency,idle,memory",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vswitch-bench");
    // The harness names everything it creates `vb<pid in base 36>…`.
    let prefix = benches::bench::topology::process_prefix(child.id());
    let out = child.wait_with_output().expect("wait for vswitch-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "vswitch-bench failed:\n{stdout}\n{stderr}"
    );
    let text = std::fs::read_to_string(&json).expect("JSON written");
    let svg_text = std::fs::read_to_string(&svg).expect("SVG written");
    let _ = std::fs::remove_dir_all(&dir);

    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["schema"], "vswitch-bench/1");
    assert!(v["meta"]["notes"].is_array());
    let results = v["results"].as_array().expect("results array");
    for r in results {
        for k in [
            "switch", "figure", "unit", "runs", "median", "min", "max", "ratio_to",
        ] {
            assert!(r.get(k).is_some(), "record without {k}: {r}");
        }
        assert!(r["ratio_to"].is_object());
        assert_eq!(r["runs"].as_array().map(Vec::len), Some(1));
    }
    for sw in ["kernel-bridge", "vswitch-tap"] {
        let fig = |f: &str| {
            results
                .iter()
                .find(|r| r["switch"] == sw && r["figure"] == f)
                .and_then(|r| r["median"].as_f64())
        };
        let delivered = fig("pps_paced_delivery")
            .unwrap_or_else(|| panic!("{sw}: no delivery figure\n{stdout}\n{stderr}"));
        assert!(
            delivered >= 95.0,
            "{sw}: only {delivered} % of the generator's frames arrived"
        );
        assert!(
            fig("pps_rx").is_some_and(|x| x > 0.0),
            "{sw}: no frames at full rate"
        );
        assert!(fig("latency_p50").is_some(), "{sw}: no latency");
    }
    let ours = |f: &str| {
        results
            .iter()
            .any(|r| r["switch"] == "vswitch-tap" && r["figure"] == f)
    };
    assert!(ours("latency_adaptive_p50") && ours("idle_cpu") && ours("rss_idle"));
    assert!(
        results
            .iter()
            .any(|r| r["switch"] == "vswitch-tap" && r["ratio_to"]["kernel-bridge"].is_number()),
        "ratios to the kernel bridge of the same run"
    );
    assert!(svg_text.starts_with("<svg") && svg_text.contains("vswitch-tap"));
    // Everything the run created is gone.
    let (netns, links) = benches::bench::topology::leftovers(&prefix);
    assert!(links.is_empty(), "interfaces left behind: {links:?}");
    assert!(netns.is_empty(), "namespaces left behind: {netns:?}");
}
