//! SVG chart of a report (`--plot FILE.svg`): one group of bars per figure,
//! one bar per switch, with min–max whiskers. Figures have different units,
//! so each group is scaled to its own largest value and every bar carries
//! its number; the chart compares switches within a figure, not figures.
//! Written by hand (SVG 1.1 rects, lines and text): no dependency needed.

use super::report::{fmt_value, Report};
use std::fmt::Write;

const BAR_W: f64 = 16.0;
const GROUP_GAP: f64 = 28.0;
const PLOT_H: f64 = 220.0;
const TOP: f64 = 60.0;
const LEFT: f64 = 20.0;
const COLORS: [&str; 8] = [
    "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the report's medians as grouped bars.
pub fn svg(report: &Report, title: &str) -> String {
    let mut switches: Vec<&str> = Vec::new();
    let mut figures: Vec<(&str, &str, &str)> = Vec::new();
    for r in &report.results {
        if !switches.contains(&r.switch.as_str()) {
            switches.push(&r.switch);
        }
        if r.median.is_some() && !figures.iter().any(|f| f.0 == r.figure) {
            figures.push((&r.figure, &r.label, &r.unit));
        }
    }
    let group_w = BAR_W * switches.len().max(1) as f64;
    let width = LEFT * 2.0 + figures.len() as f64 * (group_w + GROUP_GAP);
    let width = width.max(480.0);
    let height = TOP + PLOT_H + 110.0;
    let base = TOP + PLOT_H;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="10">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="18" font-size="14">{}</text>"#,
        esc(title)
    );
    for (i, sw) in switches.iter().enumerate() {
        let x = LEFT + i as f64 * 130.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="28" width="10" height="10" fill="{}"/><text x="{}" y="37">{}</text>"#,
            COLORS[i % COLORS.len()],
            x + 14.0,
            esc(sw)
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" stroke="black"/>"#,
        width - LEFT
    );
    for (gi, (fig, label, unit)) in figures.iter().enumerate() {
        let gx = LEFT + GROUP_GAP / 2.0 + gi as f64 * (group_w + GROUP_GAP);
        let rows: Vec<_> = report.results.iter().filter(|r| r.figure == *fig).collect();
        let top = rows
            .iter()
            .filter_map(|r| r.max.or(r.median))
            .fold(0.0_f64, f64::max);
        let scale = if top > 0.0 { PLOT_H / top } else { 0.0 };
        for r in &rows {
            let Some(m) = r.median else { continue };
            let si = switches.iter().position(|x| *x == r.switch).unwrap_or(0);
            let x = gx + si as f64 * BAR_W;
            let h = (m.max(0.0) * scale).min(PLOT_H);
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} {}: {} {}</title></rect>"#,
                base - h,
                BAR_W - 2.0,
                COLORS[si % COLORS.len()],
                esc(&r.switch),
                esc(label),
                fmt_value(m),
                esc(unit)
            );
            if let (Some(lo), Some(hi)) = (r.min, r.max) {
                let cx = x + (BAR_W - 2.0) / 2.0;
                let _ = writeln!(
                    s,
                    r#"<line x1="{cx:.1}" y1="{:.1}" x2="{cx:.1}" y2="{:.1}" stroke="black"/>"#,
                    base - (lo.max(0.0) * scale).min(PLOT_H),
                    base - (hi.max(0.0) * scale).min(PLOT_H)
                );
            }
            let ty = base - h - 3.0;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{ty:.1}" font-size="8" transform="rotate(-90 {:.1} {ty:.1})">{}</text>"#,
                x + BAR_W - 4.0,
                x + BAR_W - 4.0,
                fmt_value(m)
            );
        }
        let lx = gx + group_w / 2.0;
        let ly = base + 12.0;
        let _ = writeln!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-45 {lx:.1} {ly:.1})">{} ({})</text>"#,
            esc(label),
            esc(unit)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figure::{Figure, SwitchKind};
    use crate::bench::report::{Meta, Samples};

    #[test]
    fn one_bar_per_switch_and_figure_scaled_to_the_group_maximum() {
        let mut s = Samples::new(1);
        s.set(SwitchKind::KernelBridge, Figure::PpsRx, 0, Some(100.0));
        s.set(SwitchKind::VswitchTap, Figure::PpsRx, 0, Some(200.0));
        s.set(SwitchKind::VswitchTap, Figure::IdleCpu, 0, Some(1.0));
        s.set(SwitchKind::KernelBridge, Figure::IdleCpu, 0, None);
        let rep = Report::new(Meta::default(), Vec::new(), &s);
        let out = svg(&rep, "a <b> & c");
        assert!(out.starts_with("<svg"));
        assert!(out.trim_end().ends_with("</svg>"));
        assert!(out.contains("a &lt;b&gt; &amp; c"));
        let bars: Vec<&str> = out.lines().filter(|l| l.contains("<title>")).collect();
        assert_eq!(bars.len(), 3, "missing medians draw no bar");
        let height = |l: &str| -> f64 {
            let i = l.find("height=\"").unwrap() + 8;
            l[i..].split('"').next().unwrap().parse().unwrap()
        };
        let full = bars
            .iter()
            .find(|l| l.contains("vswitch-tap pkt rate rx"))
            .unwrap();
        let half = bars
            .iter()
            .find(|l| l.contains("kernel-bridge pkt rate rx"))
            .unwrap();
        assert_eq!(height(full), PLOT_H);
        assert_eq!(height(half), PLOT_H / 2.0);
        let idle = bars.iter().find(|l| l.contains("idle CPU")).unwrap();
        assert_eq!(height(idle), PLOT_H, "each group has its own scale");
    }
}
