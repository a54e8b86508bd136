//! Results of a run: per (switch, figure) the values of every run, their
//! median and spread, and ratios to the anchors measured in the same run
//! (kernel bridge and Open vSwitch, BENCHMARKS.md "Anchors"). Rendered as
//! the stable JSON schema `vswitch-bench/1` and as an aligned text table.
//!
//! JSON schema (`--json FILE`):
//! `{ "schema": "vswitch-bench/1", "meta": {..}, "skipped": [{switch, reason}],
//!    "results": [{switch, figure, label, unit, better, runs: [number|null],
//!                 median, min, max, ratio_to: {anchor: number}}] }`.

use super::figure::{Better, Figure, SwitchKind};
use super::stats::summarize;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Schema id written into every JSON file.
pub const SCHEMA: &str = "vswitch-bench/1";

/// Switches every figure is also expressed as a ratio to.
pub const ANCHORS: [SwitchKind; 3] = [
    SwitchKind::KernelBridge,
    SwitchKind::OvsAfxdp,
    SwitchKind::OvsTap,
];

/// One figure of one switch over all runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Switch id (`kernel-bridge`, `vswitch-tap`, ...).
    pub switch: String,
    /// Figure id (`pps_rx`, `tcp`, ...).
    pub figure: String,
    /// Human label.
    pub label: String,
    /// Unit of every number in the record.
    pub unit: String,
    /// `higher` or `lower` is better.
    pub better: String,
    /// Value of each run; null where the run failed.
    pub runs: Vec<Option<f64>>,
    /// Median of the valid runs.
    pub median: Option<f64>,
    /// Smallest valid run.
    pub min: Option<f64>,
    /// Largest valid run.
    pub max: Option<f64>,
    /// median / anchor's median for the same figure, per anchor measured.
    pub ratio_to: BTreeMap<String, f64>,
}

/// A switch that was not measured, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Switch id.
    pub switch: String,
    /// Why (`Open vSwitch not installed`, a setup error, ...).
    pub reason: String,
}

/// Facts about the run, so a reader can reproduce it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Seconds since the epoch at the start.
    pub started_unix: u64,
    /// `uname -r`.
    pub kernel: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Runs per figure.
    pub runs: usize,
    /// `--quick` was given.
    pub quick: bool,
    /// Core of the switch's PMD thread.
    pub pmd_core: usize,
    /// Core of the generator, sink, ping and iperf3.
    pub load_core: usize,
    /// Generator frame size without FCS.
    pub frame_bytes: usize,
    /// Distinct UDP 5-tuples of the generator.
    pub flows: usize,
    /// How our switch was run and measured.
    pub notes: Vec<String>,
}

/// The whole result set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Run facts.
    pub meta: Meta,
    /// Switches not measured.
    pub skipped: Vec<Skipped>,
    /// Figures.
    pub results: Vec<Record>,
    /// BENCHMARKS.md targets judged on this run's medians.
    pub targets: Vec<super::targets::Verdict>,
}

/// Per-run values as they are measured, keyed by switch and figure.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    runs: usize,
    values: BTreeMap<(SwitchKind, Figure), Vec<Option<f64>>>,
}

impl Samples {
    /// An empty set for `runs` runs.
    pub fn new(runs: usize) -> Samples {
        Samples {
            runs,
            values: BTreeMap::new(),
        }
    }

    /// Records the value of `figure` on `switch` in run `run` (0-based);
    /// values for runs beyond the declared count are ignored.
    pub fn set(&mut self, switch: SwitchKind, figure: Figure, run: usize, value: Option<f64>) {
        if run >= self.runs {
            return;
        }
        let v = self
            .values
            .entry((switch, figure))
            .or_insert_with(|| vec![None; self.runs]);
        v[run] = value;
    }

    /// The raw values of one figure.
    pub fn get(&self, switch: SwitchKind, figure: Figure) -> Option<&[Option<f64>]> {
        self.values.get(&(switch, figure)).map(Vec::as_slice)
    }

    /// Medians, spreads and ratios, in table order (figure, then switch).
    pub fn records(&self) -> Vec<Record> {
        let median = |k: SwitchKind, f: Figure| {
            self.values
                .get(&(k, f))
                .and_then(|v| summarize(v))
                .map(|s| s.median)
        };
        let mut keys: Vec<&(SwitchKind, Figure)> = self.values.keys().collect();
        keys.sort_by_key(|(k, f)| (*f, *k));
        keys.into_iter()
            .map(|&(k, f)| {
                let runs = self.values[&(k, f)].clone();
                let s = summarize(&runs);
                let mut ratio_to = BTreeMap::new();
                if let Some(m) = s.as_ref().map(|s| s.median).filter(|_| f.has_ratio()) {
                    for a in ANCHORS {
                        if a == k {
                            continue;
                        }
                        if let Some(am) = median(a, f).filter(|am| *am != 0.0) {
                            ratio_to.insert(a.id().to_owned(), m / am);
                        }
                    }
                }
                Record {
                    switch: k.id().to_owned(),
                    figure: f.id().to_owned(),
                    label: f.label().to_owned(),
                    unit: f.unit().to_owned(),
                    better: match f.better() {
                        Better::Higher => "higher",
                        Better::Lower => "lower",
                    }
                    .to_owned(),
                    runs,
                    median: s.as_ref().map(|s| s.median),
                    min: s.as_ref().map(|s| s.min),
                    max: s.as_ref().map(|s| s.max),
                    ratio_to,
                }
            })
            .collect()
    }
}

impl Report {
    /// A report over `samples`.
    pub fn new(meta: Meta, skipped: Vec<Skipped>, samples: &Samples) -> Report {
        let results = samples.records();
        Report {
            schema: SCHEMA.to_owned(),
            meta,
            skipped,
            targets: super::targets::check(&results),
            results,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The aligned text table: one block per figure, one row per switch,
    /// ratio columns only for anchors that were measured.
    pub fn table(&self) -> String {
        let anchors: Vec<&str> = ANCHORS
            .iter()
            .map(|a| a.id())
            .filter(|a| self.results.iter().any(|r| r.switch == *a))
            .collect();
        let mut t = Table::new(
            ["figure", "unit", "switch", "median", "min–max", "ok"]
                .into_iter()
                .map(String::from)
                .chain(anchors.iter().map(|a| format!("×{a}")))
                .collect(),
        );
        let mut last = "";
        for r in &self.results {
            let first = r.figure != last;
            last = &r.figure;
            let valid = r.runs.iter().flatten().count();
            let mut row = vec![
                if first {
                    r.label.clone()
                } else {
                    String::new()
                },
                if first { r.unit.clone() } else { String::new() },
                r.switch.clone(),
                r.median.map(fmt_value).unwrap_or_else(|| "–".into()),
                match (r.min, r.max) {
                    (Some(a), Some(b)) => format!("{}–{}", fmt_value(a), fmt_value(b)),
                    _ => "–".into(),
                },
                format!("{valid}/{}", r.runs.len()),
            ];
            for a in &anchors {
                row.push(
                    r.ratio_to
                        .get(*a)
                        .map(|x| format!("{x:.2}"))
                        .unwrap_or_else(|| "–".into()),
                );
            }
            t.push(row);
        }
        let mut out = t.render();
        for s in &self.skipped {
            out.push_str(&format!("skipped {}: {}\n", s.switch, s.reason));
        }
        let judged: Vec<_> = self
            .targets
            .iter()
            .filter(|v| v.status != "not measured")
            .collect();
        if !judged.is_empty() {
            out.push_str("\nBENCHMARKS.md targets:\n");
            let mut tt = Table::new(vec!["status".into(), "target".into(), "measured".into()]);
            for v in judged {
                tt.push(vec![v.status.clone(), v.target.clone(), v.measured.clone()]);
            }
            out.push_str(&tt.render());
        }
        out
    }
}

/// Three significant-ish digits: 1234, 123, 12.3, 1.23, 0.123.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A text table whose columns are padded to their widest cell; text
/// columns (the first three) left-aligned, numbers right-aligned.
#[derive(Clone, Debug)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: Vec<String>) -> Table {
        Table {
            headers,
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are blank, extra cells dropped).
    pub fn push(&mut self, mut row: Vec<String>) {
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// Renders with two spaces between columns and no trailing blanks.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut w: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(width(c));
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = " ".repeat(w[i] - width(c));
                if i > 0 {
                    s.push_str("  ");
                }
                if i < 3 {
                    s.push_str(c);
                    s.push_str(&pad);
                } else {
                    s.push_str(&pad);
                    s.push_str(c);
                }
            }
            s.truncate(s.trim_end().len());
            s.push('\n');
            s
        };
        let mut out = line(&self.headers);
        let total: usize = w.iter().sum::<usize>() + 2 * w.len().saturating_sub(1);
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Samples {
        let mut s = Samples::new(3);
        for (run, v) in [235.0, 228.0, 239.0].into_iter().enumerate() {
            s.set(SwitchKind::KernelBridge, Figure::PpsRx, run, Some(v));
        }
        for (run, v) in [470.0, 480.0, 460.0].into_iter().enumerate() {
            s.set(SwitchKind::VswitchTap, Figure::PpsRx, run, Some(v));
        }
        s.set(SwitchKind::VswitchTap, Figure::IdleCpu, 0, Some(0.5));
        s.set(SwitchKind::VswitchTap, Figure::IdleCpu, 1, None);
        s.set(SwitchKind::VswitchTap, Figure::IdleCpu, 7, Some(99.0));
        s
    }

    #[test]
    fn records_carry_median_spread_and_ratio_to_the_anchor_of_the_same_run() {
        let recs = sample().records();
        let ours = recs
            .iter()
            .find(|r| r.switch == "vswitch-tap" && r.figure == "pps_rx")
            .unwrap();
        assert_eq!(ours.median, Some(470.0));
        assert_eq!((ours.min, ours.max), (Some(460.0), Some(480.0)));
        assert_eq!(ours.ratio_to["kernel-bridge"], 2.0);
        assert_eq!(ours.unit, "kpps");
        assert_eq!(ours.better, "higher");
        let anchor = recs
            .iter()
            .find(|r| r.switch == "kernel-bridge" && r.figure == "pps_rx")
            .unwrap();
        assert!(
            anchor.ratio_to.is_empty(),
            "no ratio of an anchor to itself"
        );
        let idle = recs.iter().find(|r| r.figure == "idle_cpu").unwrap();
        assert_eq!(idle.runs, vec![Some(0.5), None, None]);
        assert!(idle.ratio_to.is_empty(), "kernel bridge has no idle figure");
    }

    #[test]
    fn json_has_the_stable_schema_fields() {
        let rep = Report::new(
            Meta {
                runs: 3,
                ..Meta::default()
            },
            vec![Skipped {
                switch: "ovs-tap".into(),
                reason: "Open vSwitch not installed".into(),
            }],
            &sample(),
        );
        let v: serde_json::Value = serde_json::from_str(&rep.to_json()).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["skipped"][0]["switch"], "ovs-tap");
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 3);
        for r in results {
            for k in [
                "switch", "figure", "unit", "runs", "median", "min", "max", "ratio_to",
            ] {
                assert!(r.get(k).is_some(), "missing {k} in {r}");
            }
            assert_eq!(r["runs"].as_array().unwrap().len(), 3);
        }
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, rep);
    }

    #[test]
    fn table_columns_are_aligned_and_ratios_shown_for_measured_anchors_only() {
        let rep = Report::new(Meta::default(), Vec::new(), &sample());
        let text = rep.table();
        assert!(text.contains("\nBENCHMARKS.md targets:\n"), "{text}");
        assert!(text.contains("met     idle CPU (adaptive)"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("figure"));
        assert!(lines[0].ends_with("×kernel-bridge"));
        assert!(!text.contains("×ovs-afxdp"));
        let row = lines
            .iter()
            .find(|l| l.contains("vswitch-tap") && l.contains("470"))
            .unwrap();
        assert!(row.ends_with("2.00"), "{row}");
        // Every median is right-aligned under its header.
        let end = lines[0].chars().collect::<Vec<_>>();
        let end = (0..end.len())
            .find(|&i| end[i..].starts_with(&['m', 'e', 'd', 'i', 'a', 'n']))
            .unwrap()
            + "median".len();
        for l in lines.iter().skip(2).take_while(|l| !l.is_empty()) {
            let c: Vec<char> = l.chars().collect();
            assert!(c[end - 1].is_ascii_digit(), "{l}");
            assert_eq!(c[end], ' ', "{l}");
        }
    }

    #[test]
    fn table_pads_cells_by_characters_not_bytes() {
        let mut t = Table::new(vec!["a".into(), "b".into(), "c".into(), "n".into()]);
        t.push(vec!["xx".into(), "–".into(), "y".into(), "1".into()]);
        t.push(vec!["x".into(), "ab".into(), "y".into(), "123".into()]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "a   b   c    n");
        assert_eq!(lines[2], "xx  –   y    1");
        assert_eq!(lines[3], "x   ab  y  123");
    }

    #[test]
    fn values_are_formatted_to_about_three_digits() {
        assert_eq!(fmt_value(1234.4), "1234");
        assert_eq!(fmt_value(12.345), "12.3");
        assert_eq!(fmt_value(1.2345), "1.23");
        assert_eq!(fmt_value(0.12345), "0.123");
        assert_eq!(fmt_value(0.0), "0");
    }
}
