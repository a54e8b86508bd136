//! Printing answers: aligned tables for people, the documented JSON shapes
//! for scripts (`-o json` prints the reply payload itself, e.g.
//! `{"flows":[...]}` for `dump-flows`).

use super::Format;
use crate::api::Reply;
use crate::render::row_rule_text;
use serde::Serialize;

/// Left-aligned columns separated by two spaces; the last column is not
/// padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                l.push_str(c);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

pub(crate) fn json<T: Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    );
}

/// Prints the answer to a change: nothing for people unless there is a
/// count, `{"ok":true,...}` for scripts.
pub fn print_change(fmt: Format, reply: &Reply) {
    match (fmt, reply) {
        (Format::Json, Reply::Count { count }) => {
            json(&serde_json::json!({"ok": true, "count": count}));
        }
        (Format::Json, _) => json(&serde_json::json!({"ok": true})),
        (Format::Table, Reply::Count { count }) => println!("{count} changed"),
        (Format::Table, _) => {}
    }
}

/// Per-VTEP counters of one tunnel port, indented under it.
fn vtep_table(vteps: &[crate::api::VtepRow]) -> String {
    let rows: Vec<Vec<String>> = vteps
        .iter()
        .map(|v| {
            vec![
                format!("    {}", v.remote),
                v.rx_packets.to_string(),
                v.rx_bytes.to_string(),
                v.tx_packets.to_string(),
                v.tx_bytes.to_string(),
            ]
        })
        .collect();
    table(
        &["    REMOTE", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES"],
        &rows,
    )
}

/// The tunnel part of `stats ports`: VTEPs and refusals per tunnel port.
fn tunnel_stats(rows: &[crate::api::PortStatsRow]) -> String {
    let mut out = String::new();
    for r in rows
        .iter()
        .filter(|r| !r.vteps.is_empty() || !r.tunnel.is_empty())
    {
        out.push_str(&format!("\ntunnel {}\n", r.port));
        out.push_str(&vtep_table(&r.vteps));
        let counters: Vec<String> = r.tunnel.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("  {}\n", counters.join(" ")));
    }
    out
}

/// Text form of a read answer.
pub fn render_read(reply: &Reply, no_stats: bool) -> String {
    match reply {
        Reply::Show(s) => {
            let mut out = String::new();
            for b in &s.bridges {
                out.push_str(&format!("bridge {} ({} rules)\n", b.name, b.n_rules));
                let rows: Vec<Vec<String>> = b
                    .ports
                    .iter()
                    .map(|p| {
                        vec![
                            format!("  {}", p.name),
                            p.ofport.to_string(),
                            p.r#type.clone(),
                            p.state.clone(),
                            p.mac.clone(),
                            if p.mtu == 0 {
                                String::new()
                            } else {
                                p.mtu.to_string()
                            },
                            p.options
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(" "),
                        ]
                    })
                    .collect();
                out.push_str(&table(
                    &["  PORT", "OFPORT", "TYPE", "STATE", "MAC", "MTU", "OPTIONS"],
                    &rows,
                ));
                for p in b.ports.iter().filter(|p| !p.vteps.is_empty()) {
                    out.push_str(&format!("  {} remote VTEPs\n", p.name));
                    out.push_str(&vtep_table(&p.vteps));
                }
            }
            let rows: Vec<Vec<String>> = s
                .pmds
                .iter()
                .map(|p| {
                    vec![
                        p.index.to_string(),
                        p.core.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                        p.rxqs.join(" "),
                    ]
                })
                .collect();
            out.push_str(&table(&["PMD", "CORE", "RX QUEUES"], &rows));
            out
        }
        Reply::Flows(f) => {
            let mut out = String::new();
            for r in &f.flows {
                if no_stats {
                    out.push_str(&row_rule_text(r));
                } else {
                    out.push_str(&format!(
                        "duration={:.3}s, n_packets={}, n_bytes={}, {}",
                        r.duration_s,
                        r.n_packets,
                        r.n_bytes,
                        row_rule_text(r)
                    ));
                }
                out.push('\n');
            }
            out
        }
        Reply::Groups(g) => g.groups.iter().map(|g| format!("{g}\n")).collect(),
        Reply::Fdb(f) => table(
            &["PORT", "VLAN", "MAC", "AGE", "TYPE"],
            &f.entries
                .iter()
                .map(|e| {
                    vec![
                        e.port.clone(),
                        e.vlan.to_string(),
                        e.mac.clone(),
                        e.age_s.to_string(),
                        match (&e.remote, e.r#static) {
                            (Some(r), true) => format!("static remote={r}"),
                            (Some(r), false) => format!("learned remote={r}"),
                            (None, true) => "static".into(),
                            (None, false) => "learned".into(),
                        },
                    ]
                })
                .collect::<Vec<_>>(),
        ),
        Reply::PortStats(p) => {
            table(
                &[
                    "PORT", "BRIDGE", "RX_PKTS", "RX_BYTES", "RX_DROP", "RX_ERR", "TX_PKTS",
                    "TX_BYTES", "TX_DROP", "TX_ERR",
                ],
                &p.ports
                    .iter()
                    .map(|r| {
                        vec![
                            r.port.clone(),
                            r.bridge.clone(),
                            r.rx_packets.to_string(),
                            r.rx_bytes.to_string(),
                            r.rx_dropped.to_string(),
                            r.rx_errors.to_string(),
                            r.tx_packets.to_string(),
                            r.tx_bytes.to_string(),
                            r.tx_dropped.to_string(),
                            r.tx_errors.to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            ) + &tunnel_stats(&p.ports)
        }
        Reply::PmdStats(p) => {
            let mut out = String::new();
            for row in &p.pmds {
                out.push_str(&format!(
                    "pmd {} (core {}): {}\n",
                    row.pmd.index,
                    row.pmd
                        .core
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                    row.pmd.rxqs.join(" ")
                ));
                let rows: Vec<Vec<String>> = row
                    .counters
                    .iter()
                    .map(|(k, v)| vec![format!("  {k}"), v.to_string()])
                    .collect();
                out.push_str(&table(&["  COUNTER", "VALUE"], &rows));
            }
            out
        }
        Reply::Drops(d) => {
            let rows: Vec<Vec<String>> = d
                .drops
                .iter()
                .map(|(k, v)| vec![k.clone(), v.to_string()])
                .collect();
            table(&["REASON", "PACKETS"], &rows)
        }
        Reply::Caches(c) => {
            let keys: Vec<String> = c
                .pmds
                .first()
                .map(|m| m.keys().filter(|k| *k != "pmd").cloned().collect())
                .unwrap_or_default();
            let mut header = vec!["PMD"];
            header.extend(keys.iter().map(String::as_str));
            let rows: Vec<Vec<String>> = c
                .pmds
                .iter()
                .map(|m| {
                    let mut r = vec![m.get("pmd").copied().unwrap_or(0).to_string()];
                    r.extend(
                        keys.iter()
                            .map(|k| m.get(k).copied().unwrap_or(0).to_string()),
                    );
                    r
                })
                .collect();
            table(&header, &rows)
        }
        Reply::Cache(c) => table(
            &["PMD", "PACKETS", "BYTES", "IDLE_MS", "MATCH", "ACTIONS"],
            &c.megaflows
                .iter()
                .map(|m| {
                    vec![
                        m.pmd.to_string(),
                        m.packets.to_string(),
                        m.bytes.to_string(),
                        m.idle_ms.to_string(),
                        m.r#match.clone(),
                        m.actions.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
        Reply::Trace(t) => {
            let mut out: String = t.steps.iter().map(|s| format!("{s}\n")).collect();
            out.push_str(&format!("Datapath actions: {}\n", t.actions));
            out
        }
        Reply::Status(s) => {
            let rows: Vec<Vec<String>> = s
                .daemons
                .iter()
                .map(|d| {
                    vec![
                        d.name.clone(),
                        d.state.clone(),
                        d.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        d.uptime_s
                            .map(|u| format!("{u}s"))
                            .unwrap_or_else(|| "-".into()),
                        d.details
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ]
                })
                .collect();
            table(&["DAEMON", "STATE", "PID", "UPTIME", "DETAILS"], &rows)
        }
        Reply::Pmds(p) => table(
            &["PMD", "CORE", "RX QUEUES"],
            &p.pmds
                .iter()
                .map(|p| {
                    vec![
                        p.index.to_string(),
                        p.core.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                        p.rxqs.join(" "),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
        Reply::Done => String::new(),
        Reply::Count { count } => format!("{count}\n"),
        Reply::Inventory(_)
        | Reply::Expired(_)
        | Reply::CaptureStarted { .. }
        | Reply::CaptureFrames(_) => serde_json::to_string_pretty(reply).unwrap_or_default(),
    }
}

/// Prints a read answer.
pub fn print_read(fmt: Format, reply: &Reply, no_stats: bool) {
    match fmt {
        Format::Table => print!("{}", render_read(reply, no_stats)),
        Format::Json => match reply {
            Reply::Show(v) => json(v),
            Reply::Flows(v) => json(v),
            Reply::Groups(v) => json(v),
            Reply::Fdb(v) => json(v),
            Reply::PortStats(v) => json(v),
            Reply::PmdStats(v) => json(v),
            Reply::Drops(v) => json(v),
            Reply::Caches(v) => json(v),
            Reply::Cache(v) => json(v),
            Reply::Trace(v) => json(v),
            Reply::Status(v) => json(v),
            Reply::Inventory(v) => json(v),
            Reply::Expired(v) => json(v),
            Reply::Pmds(v) => json(v),
            Reply::CaptureFrames(v) => json(v),
            Reply::CaptureStarted { id } => json(&serde_json::json!({ "id": id })),
            Reply::Done => json(&serde_json::json!({"ok": true})),
            Reply::Count { count } => json(&serde_json::json!({"ok": true, "count": count})),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{FlowRow, FlowsReply};

    #[test]
    fn table_columns_are_aligned() {
        let t = table(
            &["A", "BBB", "C"],
            &[
                vec!["xxxx".into(), "y".into(), "z".into()],
                vec!["1".into(), "22".into(), "333".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "A     BBB  C");
        assert_eq!(lines[1], "xxxx  y    z");
        assert_eq!(lines[2], "1     22   333");
    }

    #[test]
    fn dump_flows_puts_counters_first_and_no_stats_only_rules() {
        let r = Reply::Flows(FlowsReply {
            flows: vec![FlowRow {
                table: 0,
                priority: 0,
                r#match: String::new(),
                actions: "NORMAL".into(),
                n_packets: 5,
                n_bytes: 420,
                duration_s: 2.5,
                ..Default::default()
            }],
        });
        assert_eq!(
            render_read(&r, false),
            "duration=2.500s, n_packets=5, n_bytes=420, table=0,priority=0,actions=NORMAL\n"
        );
        assert_eq!(render_read(&r, true), "table=0,priority=0,actions=NORMAL\n");
    }
}
