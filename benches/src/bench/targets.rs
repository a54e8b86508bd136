//! The targets of BENCHMARKS.md ("Targets"), checked against a run's
//! medians: each is a ratio to an anchor of the same run or an absolute
//! bound. A target whose inputs were not measured is reported as such,
//! never as met.

use super::figure::{Figure, SwitchKind};
use super::report::{fmt_value, Record};
use serde::{Deserialize, Serialize};

/// How a target is judged.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Bound {
    /// median / anchor's median of `figure` ≥ k.
    RatioAtLeast(SwitchKind, Figure, f64),
    /// median / anchor's median of `figure` ≤ k.
    RatioAtMost(SwitchKind, Figure, f64),
    /// median ≥ v.
    AtLeast(f64),
    /// median ≤ v.
    AtMost(f64),
}

struct Target {
    text: &'static str,
    switch: SwitchKind,
    figure: Figure,
    bound: Bound,
}

const TARGETS: [Target; 9] = [
    Target {
        text: "64B rx pps, AF_XDP ports >= 2x OVS AF_XDP",
        switch: SwitchKind::VswitchAfxdp,
        figure: Figure::PpsRx,
        bound: Bound::RatioAtLeast(SwitchKind::OvsAfxdp, Figure::PpsRx, 2.0),
    },
    Target {
        text: "64B rx pps, TAP ports >= 3x OVS TAP",
        switch: SwitchKind::VswitchTap,
        figure: Figure::PpsRx,
        bound: Bound::RatioAtLeast(SwitchKind::OvsTap, Figure::PpsRx, 3.0),
    },
    Target {
        text: "TCP through TAP ports >= 0.85x kernel bridge (offloads on)",
        switch: SwitchKind::VswitchTap,
        figure: Figure::TcpGbps,
        bound: Bound::RatioAtLeast(SwitchKind::KernelBridge, Figure::TcpGbps, 0.85),
    },
    Target {
        text: "TCP through AF_XDP ports (default offloads) >= 2x OVS AF_XDP tx-csum-off",
        switch: SwitchKind::VswitchAfxdp,
        figure: Figure::TcpGbps,
        bound: Bound::RatioAtLeast(SwitchKind::OvsAfxdp, Figure::TcpTxOffGbps, 2.0),
    },
    Target {
        text: "ping p50 (poll), TAP ports <= 1.2x kernel bridge",
        switch: SwitchKind::VswitchTap,
        figure: Figure::LatencyP50,
        bound: Bound::RatioAtMost(SwitchKind::KernelBridge, Figure::LatencyP50, 1.2),
    },
    Target {
        text: "ping p50 (poll), AF_XDP ports <= 1.2x kernel bridge",
        switch: SwitchKind::VswitchAfxdp,
        figure: Figure::LatencyP50,
        bound: Bound::RatioAtMost(SwitchKind::KernelBridge, Figure::LatencyP50, 1.2),
    },
    Target {
        text: "idle CPU (adaptive), TAP ports < 2 %",
        switch: SwitchKind::VswitchTap,
        figure: Figure::IdleCpu,
        bound: Bound::AtMost(2.0),
    },
    Target {
        text: "flow setup >= 200k rules/s (TAP topology)",
        switch: SwitchKind::VswitchTap,
        figure: Figure::FlowSetupRate,
        bound: Bound::AtLeast(200_000.0),
    },
    Target {
        text: "RSS idle with two TAP ports < 64 MiB (in-process: harness included)",
        switch: SwitchKind::VswitchTap,
        figure: Figure::RssIdle,
        bound: Bound::AtMost(64.0),
    },
];

/// One target's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The target as BENCHMARKS.md states it.
    pub target: String,
    /// `met`, `missed` or `not measured`.
    pub status: String,
    /// What was measured (`1.05x kernel-bridge`, `0.2 %`).
    pub measured: String,
}

fn median(records: &[Record], k: SwitchKind, f: Figure) -> Option<f64> {
    records
        .iter()
        .find(|r| r.switch == k.id() && r.figure == f.id())
        .and_then(|r| r.median)
}

/// Judges every target against `records`.
pub fn check(records: &[Record]) -> Vec<Verdict> {
    TARGETS
        .iter()
        .map(|t| {
            let ours = median(records, t.switch, t.figure);
            let (ok, measured) = match t.bound {
                Bound::RatioAtLeast(a, af, k) | Bound::RatioAtMost(a, af, k) => {
                    match (ours, median(records, a, af).filter(|v| *v != 0.0)) {
                        (Some(v), Some(av)) => {
                            let r = v / av;
                            let ok = if matches!(t.bound, Bound::RatioAtLeast(..)) {
                                r >= k
                            } else {
                                r <= k
                            };
                            (
                                Some(ok),
                                format!(
                                    "{r:.2}x {a} ({} vs {} {})",
                                    fmt_value(v),
                                    fmt_value(av),
                                    t.figure.unit()
                                ),
                            )
                        }
                        _ => (None, String::new()),
                    }
                }
                Bound::AtLeast(b) | Bound::AtMost(b) => match ours {
                    Some(v) => (
                        Some(if matches!(t.bound, Bound::AtLeast(_)) {
                            v >= b
                        } else {
                            v <= b
                        }),
                        format!("{} {}", fmt_value(v), t.figure.unit()),
                    ),
                    None => (None, String::new()),
                },
            };
            Verdict {
                target: t.text.to_owned(),
                status: match ok {
                    Some(true) => "met",
                    Some(false) => "missed",
                    None => "not measured",
                }
                .to_owned(),
                measured,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::Samples;

    #[test]
    fn ratio_targets_use_the_anchor_of_the_same_run_and_missing_inputs_are_not_met() {
        let mut s = Samples::new(1);
        s.set(SwitchKind::KernelBridge, Figure::TcpGbps, 0, Some(10.0));
        s.set(SwitchKind::VswitchTap, Figure::TcpGbps, 0, Some(9.0));
        s.set(SwitchKind::KernelBridge, Figure::LatencyP50, 0, Some(50.0));
        s.set(SwitchKind::VswitchTap, Figure::LatencyP50, 0, Some(70.0));
        s.set(SwitchKind::VswitchTap, Figure::IdleCpu, 0, Some(0.5));
        let v = check(&s.records());
        let get = |t: &str| v.iter().find(|x| x.target.starts_with(t)).unwrap();
        let tcp = get("TCP through TAP");
        assert_eq!(tcp.status, "met");
        assert!(
            tcp.measured.starts_with("0.90x kernel-bridge"),
            "{}",
            tcp.measured
        );
        assert_eq!(get("ping p50 (poll), TAP").status, "missed");
        assert_eq!(get("idle CPU").status, "met");
        assert_eq!(get("64B rx pps, TAP").status, "not measured");
    }
}
