//! `vswitchctl`: the operator's CLI. A thin client that mirrors the API one
//! to one (issue 5 is the contract: command names, argument forms, JSON
//! shapes and exit codes).
//!
//! Exit codes: 0 ok; 1 request rejected or failed (the message says why);
//! 2 malformed command line (clap's own code); 3 daemon unreachable;
//! 4 permission denied (the socket refused the user, or a change was asked
//! by a uid other than 0).

mod demo;
mod lifecycle;
mod output;

use crate::api::{Reply, Request, StaticFdbEntry, StatsKind};
use crate::daemon::RunDir;
use crate::ipc::{Client, IpcError};
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the request was rejected or failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: malformed command line.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: daemon unreachable.
pub const EXIT_UNREACHABLE: i32 = 3;
/// Exit code: permission denied.
pub const EXIT_DENIED: i32 = 4;

/// Timeout of one call (10k-rule pushes included).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned tables for people.
    Table,
    /// JSON, stable shapes.
    Json,
}

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "vswitchctl", version, about = "Operate a vswitch instance")]
pub struct Cli {
    /// Instance directory (default: $VSWITCH_RUN_DIR, else /run/vswitch).
    #[arg(long, global = true, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value = "table"
    )]
    pub output: Format,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// `stats` tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatsArg {
    /// Per-port counters.
    Ports,
    /// Per-PMD counters.
    Pmd,
    /// Drops by reason.
    Drops,
    /// Cache counters.
    Caches,
}

/// A `key=value` argument.
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got \"{s}\"")),
    }
}

/// `vlan=N` or `remote=IP` of `fdb-add`/`fdb-del`.
fn fdb_option(s: &str) -> Result<(String, String), String> {
    let (k, v) = key_value(s)?;
    match k.as_str() {
        "vlan" => v
            .parse::<u16>()
            .ok()
            .filter(|n| *n <= 4094)
            .map(|_| (k.clone(), v.clone()))
            .ok_or_else(|| format!("vlan=\"{v}\": expected 0..=4094")),
        "remote" => v
            .parse::<std::net::Ipv4Addr>()
            .map(|_| (k.clone(), v.clone()))
            .map_err(|_| format!("remote=\"{v}\": expected an IPv4 address")),
        _ => Err(format!("unknown option \"{k}\" (vlan=N or remote=IP)")),
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start vswitchd and vswitch-controld (idempotent).
    Start {
        /// Configuration file for both daemons.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Stop both daemons.
    Stop,
    /// Daemon status.
    Status,
    /// Bridges, ports and PMD threads.
    Show,
    /// Create a bridge.
    AddBr {
        /// Bridge name.
        bridge: String,
    },
    /// Delete a bridge and its ports.
    DelBr {
        /// Bridge name.
        bridge: String,
    },
    /// Add a port: NAME type=tap|afxdp|afpacket|vxlan key=value...
    AddPort {
        /// Bridge.
        bridge: String,
        /// Port name (at most 15 bytes).
        name: String,
        /// Options, `type=` first.
        #[arg(required = true, value_parser = key_value, value_name = "KEY=VALUE")]
        options: Vec<(String, String)>,
    },
    /// Delete a port.
    DelPort {
        /// Bridge.
        bridge: String,
        /// Port.
        name: String,
    },
    /// Change port options (an empty value removes the option).
    SetPort {
        /// Bridge.
        bridge: String,
        /// Port.
        name: String,
        /// Options.
        #[arg(required = true, value_parser = key_value, value_name = "KEY=VALUE")]
        options: Vec<(String, String)>,
    },
    /// Add one rule (replacing one with the same table, priority and match).
    AddFlow {
        /// Bridge.
        bridge: String,
        /// Rule in ovs-ofctl syntax.
        rule: String,
    },
    /// Add rules from a file, one a line, `#` comments.
    AddFlows {
        /// Bridge.
        bridge: String,
        /// File (`-` for stdin).
        file: PathBuf,
    },
    /// Delete rules equal to or narrower than MATCH (all without MATCH).
    DelFlows {
        /// Bridge.
        bridge: String,
        /// Match in flow syntax.
        #[arg(value_name = "MATCH")]
        flow_match: Option<String>,
        /// Only the rule with exactly this match and priority.
        #[arg(long)]
        strict: bool,
    },
    /// Replace all rules atomically with those of a file.
    ReplaceFlows {
        /// Bridge.
        bridge: String,
        /// File (`-` for stdin).
        file: PathBuf,
    },
    /// Rules with counters.
    DumpFlows {
        /// Bridge.
        bridge: String,
        /// Only this table.
        #[arg(long)]
        table: Option<u8>,
        /// Rules only, re-loadable with add-flows.
        #[arg(long)]
        no_stats: bool,
    },
    /// Add or replace a group.
    AddGroup {
        /// Bridge.
        bridge: String,
        /// `group_id=1,type=select,bucket=output:p1,bucket=output:p2`.
        group: String,
    },
    /// Delete all groups.
    DelGroups {
        /// Bridge.
        bridge: String,
    },
    /// List groups.
    DumpGroups {
        /// Bridge.
        bridge: String,
    },
    /// MAC table.
    FdbShow {
        /// Bridge.
        bridge: String,
    },
    /// Forget learned MACs.
    FdbFlush {
        /// Bridge.
        bridge: String,
    },
    /// Add a static MAC entry.
    FdbAdd {
        /// Bridge.
        bridge: String,
        /// MAC address.
        mac: String,
        /// Port name.
        port: String,
        /// `vlan=N`, `remote=IP`.
        #[arg(value_parser = fdb_option, value_name = "vlan=N|remote=IP")]
        options: Vec<(String, String)>,
    },
    /// Remove a MAC entry.
    FdbDel {
        /// Bridge.
        bridge: String,
        /// MAC address.
        mac: String,
        /// `vlan=N`.
        #[arg(value_parser = fdb_option, value_name = "vlan=N")]
        options: Vec<(String, String)>,
    },
    /// Counters.
    Stats {
        /// Which table.
        #[arg(value_enum)]
        kind: StatsArg,
    },
    /// Megaflow cache entries with masks and hit counts.
    DumpCache {
        /// Bridge.
        bridge: String,
    },
    /// Reassign rx queues to PMD threads.
    PmdRebalance,
    /// Explain the pipeline's decision for a packet.
    Trace {
        /// Bridge.
        bridge: String,
        /// `in_port=p1,dl_src=..,dl_dst=..,ip,nw_src=..,nw_dst=..`.
        flow: String,
    },
    /// Capture what a port sends and receives into a pcap FILE (written
    /// by vswitchctl with your own rights; Ctrl-C stops).
    Capture {
        /// Port name.
        port: String,
        /// pcap file to write.
        file: PathBuf,
        /// Stop after this many frames.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Two namespaces on one bridge: ping, TCP throughput, cleanup.
    Demo,
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    run(cli)
}

/// An error the CLI reports, with its exit code.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: i32,
    /// Message.
    pub message: String,
    /// The command already printed its JSON document (e.g. `status`), so
    /// `-o json` must not add an error document after it.
    pub json_done: bool,
}

impl CliError {
    fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_FAILED,
            message: message.into(),
            json_done: false,
        }
    }
}

impl From<IpcError> for CliError {
    fn from(e: IpcError) -> Self {
        CliError {
            code: if e.is_denied() {
                EXIT_DENIED
            } else if e.is_unreachable() {
                EXIT_UNREACHABLE
            } else {
                EXIT_FAILED
            },
            message: crate::controld::error_chain(&e),
            json_done: false,
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> i32 {
    let run = RunDir::resolve(cli.run_dir.as_deref());
    let fmt = cli.output;
    match dispatch(&run, fmt, cli.cmd) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            if fmt == Format::Json && !e.json_done {
                println!(
                    "{}",
                    serde_json::json!({"error": {"message": e.message, "exit_code": e.code}})
                );
            }
            eprintln!("vswitchctl: {}", e.message);
            e.code
        }
    }
}

/// Calls vswitch-controld.
pub fn call_controld(run: &RunDir, req: &Request) -> Result<Reply, CliError> {
    let mut c = Client::connect(&run.controld_socket(), "vswitchctl", CALL_TIMEOUT)?;
    Ok(c.call(req)?)
}

/// Calls vswitchd directly.
pub fn call_vswitchd(run: &RunDir, req: &Request) -> Result<Reply, CliError> {
    let mut c = Client::connect(&run.vswitchd_socket(), "vswitchctl", CALL_TIMEOUT)?;
    Ok(c.call(req)?)
}

/// A read call: through vswitch-controld, or straight from vswitchd (with
/// a warning) when the control process is down.
pub fn read_call(run: &RunDir, req: &Request) -> Result<Reply, CliError> {
    match Client::connect(&run.controld_socket(), "vswitchctl", CALL_TIMEOUT) {
        Ok(mut c) => match c.call(req) {
            // vswitch-controld answered that vswitchd is down: no fallback.
            Err(e @ IpcError::Api(_)) => return Err(e.into()),
            Err(e) if e.is_unreachable() => {}
            other => return Ok(other?),
        },
        Err(e) if e.is_unreachable() => {}
        Err(e) => return Err(e.into()),
    }
    eprintln!(
        "vswitchctl: warning: vswitch-controld is not reachable at {}; answering from vswitchd directly",
        run.controld_socket().display()
    );
    call_vswitchd(run, req)
}

fn read_rules_file(file: &Path) -> Result<Vec<String>, CliError> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::failed(format!("stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| CliError::failed(format!("{}: {e}", file.display())))?
    };
    // Lines are sent as they are (minus comments and blanks) so the
    // daemon's error can say which rule was wrong; line numbers of the
    // file are mapped back below.
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

fn with_file_context(e: CliError, file: &Path, rules: &[String]) -> CliError {
    // "rule N: ..." from the daemon → "FILE: rule N (`text`): ...".
    if let Some(rest) = e.message.strip_prefix("rule ") {
        if let Some((n, msg)) = rest.split_once(": ") {
            if let Ok(i) = n.parse::<usize>() {
                if let Some(r) = rules.get(i.wrapping_sub(1)) {
                    return CliError {
                        code: e.code,
                        message: format!("{}: rule {i} \"{r}\": {msg}", file.display()),
                        json_done: false,
                    };
                }
            }
        }
    }
    e
}

fn change(run: &RunDir, fmt: Format, req: Request) -> Result<(), CliError> {
    let reply = call_controld(run, &req)?;
    output::print_change(fmt, &reply);
    Ok(())
}

/// `capture`: starts a capture in vswitchd, pulls frames until the count
/// is reached or Ctrl-C, writing FILE as it goes.
fn capture(
    run: &RunDir,
    fmt: Format,
    port: &str,
    file: &Path,
    count: Option<u64>,
) -> Result<(), CliError> {
    use datapath::port::capture::{write_pcap_header, write_pcap_record, CapturedFrame, Direction};
    use std::io::Write;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    crate::daemon::ShutdownSignals::block()
        .map_err(|e| CliError::failed(e.to_string()))?
        .spawn_watcher(stop.clone());
    // The file is created before anything starts, so a bad path costs
    // nothing in the daemon.
    let f = std::fs::File::create(file)
        .map_err(|e| CliError::failed(format!("{}: {e}", file.display())))?;
    let mut out = std::io::BufWriter::new(f);
    let io_err = |e: std::io::Error| CliError::failed(format!("{}: {e}", file.display()));
    write_pcap_header(&mut out).map_err(io_err)?;
    let id = match call_vswitchd(
        run,
        &Request::CaptureStart {
            port: port.to_owned(),
            count: count.unwrap_or(u64::MAX),
        },
    )? {
        Reply::CaptureStarted { id } => id,
        other => return Err(CliError::failed(format!("unexpected answer {other:?}"))),
    };
    if fmt == Format::Table {
        eprintln!(
            "capturing on {port} into {} (Ctrl-C to stop)",
            file.display()
        );
    }
    let (mut frames, mut dropped) = (0u64, 0u64);
    let result = loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = call_vswitchd(run, &Request::CaptureStop { id });
            break Ok(());
        }
        let reply = match call_vswitchd(run, &Request::CaptureRead { id }) {
            Ok(Reply::CaptureFrames(r)) => r,
            Ok(other) => break Err(CliError::failed(format!("unexpected answer {other:?}"))),
            Err(e) => break Err(e),
        };
        dropped = reply.dropped;
        for w in &reply.frames {
            let Some(data) = crate::api::from_hex(&w.hex) else {
                continue;
            };
            let frame = CapturedFrame {
                ts_ns: w.ts_ns,
                dir: if w.dir == "tx" {
                    Direction::Tx
                } else {
                    Direction::Rx
                },
                orig_len: w.orig_len,
                data,
            };
            if let Err(e) = write_pcap_record(&mut out, &frame) {
                let _ = call_vswitchd(run, &Request::CaptureStop { id });
                return Err(io_err(e));
            }
            frames += 1;
        }
        if reply.done {
            break Ok(());
        }
        if reply.frames.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    out.flush().map_err(io_err)?;
    match fmt {
        Format::Json => output::json(&serde_json::json!({
            "port": port, "file": file, "frames": frames, "dropped": dropped
        })),
        Format::Table => println!(
            "{frames} frames written to {} ({dropped} dropped)",
            file.display()
        ),
    }
    result
}

fn dispatch(run: &RunDir, fmt: Format, cmd: Cmd) -> Result<(), CliError> {
    match cmd {
        Cmd::Start { config } => lifecycle::start(run, fmt, config.as_deref()),
        Cmd::Stop => lifecycle::stop(run, fmt),
        Cmd::Status => lifecycle::status(run, fmt),
        Cmd::Demo => demo::demo(fmt),
        Cmd::Capture { port, file, count } => capture(run, fmt, &port, &file, count),
        Cmd::Show => {
            let r = read_call(run, &Request::Show)?;
            output::print_read(fmt, &r, false);
            Ok(())
        }
        Cmd::AddBr { bridge } => change(run, fmt, Request::AddBridge { bridge }),
        Cmd::DelBr { bridge } => change(run, fmt, Request::DelBridge { bridge }),
        Cmd::AddPort {
            bridge,
            name,
            options,
        } => change(
            run,
            fmt,
            Request::AddPort {
                bridge,
                name,
                options: options.into_iter().collect::<BTreeMap<_, _>>(),
            },
        ),
        Cmd::DelPort { bridge, name } => change(run, fmt, Request::DelPort { bridge, name }),
        Cmd::SetPort {
            bridge,
            name,
            options,
        } => change(
            run,
            fmt,
            Request::SetPort {
                bridge,
                name,
                options: options.into_iter().collect(),
            },
        ),
        Cmd::AddFlow { bridge, rule } => change(
            run,
            fmt,
            Request::AddFlows {
                bridge,
                rules: vec![rule],
            },
        ),
        Cmd::AddFlows { bridge, file } => {
            let rules = read_rules_file(&file)?;
            change(
                run,
                fmt,
                Request::AddFlows {
                    bridge,
                    rules: rules.clone(),
                },
            )
            .map_err(|e| with_file_context(e, &file, &rules))
        }
        Cmd::ReplaceFlows { bridge, file } => {
            let rules = read_rules_file(&file)?;
            change(
                run,
                fmt,
                Request::ReplaceFlows {
                    bridge,
                    rules: rules.clone(),
                },
            )
            .map_err(|e| with_file_context(e, &file, &rules))
        }
        Cmd::DelFlows {
            bridge,
            flow_match,
            strict,
        } => {
            if strict && flow_match.is_none() {
                return Err(CliError {
                    code: EXIT_USAGE,
                    message: "del-flows --strict needs a MATCH".into(),
                    json_done: false,
                });
            }
            change(
                run,
                fmt,
                Request::DelFlows {
                    bridge,
                    r#match: flow_match,
                    strict,
                },
            )
        }
        Cmd::DumpFlows {
            bridge,
            table,
            no_stats,
        } => {
            let r = read_call(run, &Request::DumpFlows { bridge, table })?;
            output::print_read(fmt, &r, no_stats);
            Ok(())
        }
        Cmd::AddGroup { bridge, group } => change(run, fmt, Request::AddGroup { bridge, group }),
        Cmd::DelGroups { bridge } => change(run, fmt, Request::DelGroups { bridge }),
        Cmd::DumpGroups { bridge } => {
            let r = read_call(run, &Request::DumpGroups { bridge })?;
            output::print_read(fmt, &r, false);
            Ok(())
        }
        Cmd::FdbShow { bridge } => {
            let r = read_call(run, &Request::FdbShow { bridge })?;
            output::print_read(fmt, &r, false);
            Ok(())
        }
        Cmd::FdbFlush { bridge } => change(run, fmt, Request::FdbFlush { bridge }),
        Cmd::FdbAdd {
            bridge,
            mac,
            port,
            options,
        } => {
            let o: BTreeMap<_, _> = options.into_iter().collect();
            change(
                run,
                fmt,
                Request::FdbAdd {
                    bridge,
                    entry: StaticFdbEntry {
                        mac,
                        vlan: o.get("vlan").and_then(|v| v.parse().ok()).unwrap_or(0),
                        port,
                        remote: o.get("remote").cloned(),
                    },
                },
            )
        }
        Cmd::FdbDel {
            bridge,
            mac,
            options,
        } => {
            let o: BTreeMap<_, _> = options.into_iter().collect();
            if o.contains_key("remote") {
                return Err(CliError {
                    code: EXIT_USAGE,
                    message: "fdb-del takes only vlan=N".into(),
                    json_done: false,
                });
            }
            change(
                run,
                fmt,
                Request::FdbDel {
                    bridge,
                    mac,
                    vlan: o.get("vlan").and_then(|v| v.parse().ok()).unwrap_or(0),
                },
            )
        }
        Cmd::Stats { kind } => {
            let kind = match kind {
                StatsArg::Ports => StatsKind::Ports,
                StatsArg::Pmd => StatsKind::Pmd,
                StatsArg::Drops => StatsKind::Drops,
                StatsArg::Caches => StatsKind::Caches,
            };
            let r = read_call(run, &Request::Stats { kind })?;
            output::print_read(fmt, &r, false);
            Ok(())
        }
        Cmd::DumpCache { bridge } => {
            let r = read_call(run, &Request::DumpCache { bridge })?;
            output::print_read(fmt, &r, false);
            Ok(())
        }
        Cmd::PmdRebalance => {
            let r = call_controld(run, &Request::PmdRebalance)?;
            output::print_read(fmt, &r, false);
            Ok(())
        }
        Cmd::Trace { bridge, flow } => {
            let r = read_call(run, &Request::Trace { bridge, flow })?;
            output::print_read(fmt, &r, false);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vswitchctl").chain(args.iter().copied()))
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let a = parse(&["--run-dir", "/tmp/x", "-o", "json", "show"]).unwrap();
        let b = parse(&["show", "--run-dir", "/tmp/x", "-o", "json"]).unwrap();
        assert_eq!(a.run_dir, b.run_dir);
        assert_eq!(a.output, Format::Json);
        assert_eq!(b.output, Format::Json);
    }

    #[test]
    fn contract_forms_parse() {
        for args in [
            &["add-br", "br0"][..],
            &[
                "add-port",
                "br0",
                "c1",
                "type=tap",
                "netns=ns1",
                "ip=10.0.0.1/24",
            ],
            &[
                "add-port",
                "br0",
                "x1",
                "type=afxdp",
                "dev=eth0",
                "mode=native",
            ],
            &["del-port", "br0", "c1"],
            &["set-port", "br0", "c1", "vlan=10"],
            &["add-flow", "br0", "priority=10,icmp,actions=drop"],
            &["add-flows", "br0", "f.txt"],
            &["del-flows", "br0"],
            &["del-flows", "br0", "icmp"],
            &["del-flows", "br0", "priority=10,icmp", "--strict"],
            &["replace-flows", "br0", "f.txt"],
            &["dump-flows", "br0", "--table", "0", "--no-stats"],
            &[
                "add-group",
                "br0",
                "group_id=1,type=select,bucket=output:p1",
            ],
            &["del-groups", "br0"],
            &["dump-groups", "br0"],
            &["fdb-show", "br0"],
            &["fdb-flush", "br0"],
            &[
                "fdb-add",
                "br0",
                "02:00:00:00:00:01",
                "p1",
                "vlan=10",
                "remote=10.0.0.2",
            ],
            &["fdb-del", "br0", "02:00:00:00:00:01", "vlan=10"],
            &["stats", "ports"],
            &["stats", "pmd"],
            &["stats", "drops"],
            &["stats", "caches"],
            &["dump-cache", "br0"],
            &["pmd-rebalance"],
            &["trace", "br0", "in_port=p1,ip"],
            &["start", "--config", "x.toml"],
            &["stop"],
            &["status"],
            &["demo"],
        ] {
            assert!(
                parse(args).is_ok(),
                "{args:?}: {}",
                parse(args).unwrap_err()
            );
        }
    }

    #[test]
    fn wrong_forms_are_usage_errors() {
        for args in [
            &[][..],
            &["add-br"],
            &["add-br", "a", "b"],
            &["add-port", "br0", "c1"],
            &["add-port", "br0", "c1", "type"],
            &["add-port", "br0", "c1", "=tap"],
            &["set-port", "br0", "c1"],
            &["add-flow", "br0"],
            &["dump-flows", "br0", "--table", "x"],
            &["dump-flows", "br0", "--table", "300"],
            &["fdb-add", "br0", "02:00:00:00:00:01"],
            &["fdb-add", "br0", "m", "p", "vlan=x"],
            &["fdb-add", "br0", "m", "p", "color=red"],
            &["fdb-del", "br0", "m", "vlan=5000"],
            &["stats"],
            &["stats", "everything"],
            &["trace", "br0"],
            &["no-such-command"],
            &["show", "-o", "yaml"],
        ] {
            let e = parse(args).err();
            assert!(e.is_some(), "{args:?} should be refused");
            assert_eq!(e.unwrap().exit_code(), EXIT_USAGE, "{args:?}");
        }
    }

    #[test]
    fn rules_file_drops_comments_and_blank_lines() {
        let p = std::env::temp_dir().join(format!("vsw-rules-{}.txt", std::process::id()));
        std::fs::write(
            &p,
            "# header\n\npriority=1,actions=drop  # trailing\n  priority=2,actions=NORMAL\n",
        )
        .unwrap();
        let rules = read_rules_file(&p).unwrap();
        let _ = std::fs::remove_file(&p);
        assert_eq!(
            rules,
            vec!["priority=1,actions=drop", "priority=2,actions=NORMAL"]
        );
        let e = read_rules_file(Path::new("/nonexistent/rules")).unwrap_err();
        assert_eq!(e.code, EXIT_FAILED);
        assert!(e.message.contains("/nonexistent/rules"));
    }

    #[test]
    fn daemon_rule_errors_are_mapped_to_file_lines() {
        let e = with_file_context(
            CliError::failed("rule 2: bad priority"),
            Path::new("f.txt"),
            &["a".into(), "b".into()],
        );
        assert_eq!(e.message, "f.txt: rule 2 \"b\": bad priority");
    }

    #[test]
    fn unreachable_daemon_maps_to_exit_3() {
        let dir = std::env::temp_dir().join(format!("vsw-cli-{}", std::process::id()));
        let run = RunDir::resolve(Some(&dir));
        let e = call_controld(&run, &Request::Show).unwrap_err();
        assert_eq!(e.code, EXIT_UNREACHABLE);
        let e = read_call(&run, &Request::Show).unwrap_err();
        assert_eq!(e.code, EXIT_UNREACHABLE);
    }

    #[test]
    fn permission_denied_maps_to_exit_4() {
        let e = CliError::from(IpcError::Api(crate::api::ApiError::new(
            crate::api::ErrorKind::PermissionDenied,
            "permission denied: add-bridge needs root (uid 0); uid 1000 may only read",
        )));
        assert_eq!(e.code, EXIT_DENIED);
        assert!(e.message.contains("needs root"), "{}", e.message);
        let e = CliError::from(IpcError::Denied {
            path: PathBuf::from("/run/vswitch/controld.sock"),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        });
        assert_eq!(e.code, EXIT_DENIED);
        assert!(e.message.contains("group \"vswitch\""), "{}", e.message);
    }
}
