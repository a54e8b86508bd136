//! The datapath API handler: maps [`Request`]s onto the [`Switch`].
//!
//! Read calls are answered here in the same shapes vswitch-controld
//! returns, so `vswitchctl` can fall back to this socket when the control
//! process is down. Changes arrive only as `Dp*` calls from
//! vswitch-controld, already validated; operator-level change calls are
//! refused so the datapath never drifts from the persisted state.

use crate::ports::{destroy_port, open_port, OpenedPort};
use control::api::{
    format_mac, ApiError, BridgeInfo, CacheReply, CachesReply, DaemonStatus, DpBridge, DpPort,
    DropsReply, ErrorKind, ExpiredReply, FdbReply, FdbRow, FlowsReply, GroupsReply, HelloReply,
    Inventory, PmdInfo, PmdStatsReply, PmdStatsRow, PmdsReply, PortInfo, PortSpec, PortStatsReply,
    PortStatsRow, Reply, Request, ShowReply, StaticFdbEntry, StatsKind, StatusReply, TraceReply,
    VtepRow, WireGroup, WireRule, WireVlan, API_VERSION,
};
use control::ipc::{Handler, Peer};
use control::render::{self, PortMap};
use datapath::pipeline::{Group, Match, Rule, VlanMode};
use datapath::port::{DownReason, LinkState, TunnelInfo};
use datapath::switch::{FlowFilter, Switch, SwitchError};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

struct PortRecord {
    bridge: String,
    ofport: u32,
    spec: PortSpec,
    opened: Option<OpenedPort>,
}

/// vswitchd's API handler.
pub struct Datapath {
    switch: Arc<Switch>,
    boot_id: u64,
    started: Instant,
    /// Ports by name with the spec they were opened from (for `show`
    /// options and the inventory). Also serialises port changes.
    ports: Mutex<BTreeMap<String, PortRecord>>,
    /// Running captures by id.
    captures: Mutex<BTreeMap<u64, CaptureRecord>>,
    next_capture: std::sync::atomic::AtomicU64,
}

/// A capture a client started.
struct CaptureRecord {
    port: String,
    sink: Arc<datapath::port::capture::CaptureSink>,
    last_read: Instant,
}

/// A capture nobody read for this long is stopped (its client went away).
const CAPTURE_ABANDONED: std::time::Duration = std::time::Duration::from_secs(10);

/// Unread frames a capture queues before counting drops.
const CAPTURE_QUEUE: usize = 4096;

fn switch_err(e: SwitchError) -> ApiError {
    let kind = match e {
        SwitchError::Pmd { .. } | SwitchError::FdbFull(_) => ErrorKind::Failed,
        _ => ErrorKind::Rejected,
    };
    ApiError::new(kind, e.to_string())
}

fn vlan_mode(v: &WireVlan) -> VlanMode {
    match v {
        WireVlan::Trunk => VlanMode::Trunk(Vec::new()),
        WireVlan::Access(id) => VlanMode::Access(*id),
        WireVlan::Trunks(ids) => VlanMode::Trunk(ids.clone()),
    }
}

fn link_text(l: LinkState) -> String {
    match l {
        LinkState::Up => "up".into(),
        LinkState::Down(r) => format!(
            "down ({})",
            match r {
                DownReason::Admin => "admin",
                DownReason::DeviceGone => "device gone",
                DownReason::NoCarrier => "no carrier",
                DownReason::IoError => "I/O error",
            }
        ),
    }
}

fn parse_mac_arg(mac: &str) -> Result<[u8; 6], ApiError> {
    control::api::parse_mac(mac)
        .ok_or_else(|| ApiError::rejected(format!("\"{mac}\" is not a MAC address")))
}

impl Datapath {
    /// A handler around `switch`.
    pub fn new(switch: Arc<Switch>) -> Self {
        Datapath {
            switch,
            boot_id: control::daemon::new_boot_id(),
            started: Instant::now(),
            ports: Mutex::new(BTreeMap::new()),
            captures: Mutex::new(BTreeMap::new()),
            next_capture: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn capture_start(&self, port: &str, count: u64) -> Result<Reply, ApiError> {
        if count == 0 {
            return Err(ApiError::rejected("capture: --count must be at least 1"));
        }
        let mut caps = self.captures.lock();
        let stale: Vec<u64> = caps
            .iter()
            .filter(|(_, c)| c.last_read.elapsed() > CAPTURE_ABANDONED)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(c) = caps.remove(&id) {
                let _ = self.switch.stop_capture(&c.port);
            }
        }
        let sink = self
            .switch
            .start_capture(port, CAPTURE_QUEUE, count)
            .map_err(switch_err)?;
        let id = self
            .next_capture
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        caps.insert(
            id,
            CaptureRecord {
                port: port.to_owned(),
                sink,
                last_read: Instant::now(),
            },
        );
        Ok(Reply::CaptureStarted { id })
    }

    fn capture_read(&self, id: u64) -> Result<Reply, ApiError> {
        let mut caps = self.captures.lock();
        let rec = caps
            .get_mut(&id)
            .ok_or_else(|| ApiError::rejected(format!("no capture with id {id}")))?;
        rec.last_read = Instant::now();
        let frames: Vec<control::api::WireFrame> = rec
            .sink
            .drain_max(control::api::CAPTURE_READ_MAX)
            .into_iter()
            .map(|f| control::api::WireFrame {
                ts_ns: f.ts_ns,
                dir: match f.dir {
                    datapath::port::capture::Direction::Rx => "rx".into(),
                    datapath::port::capture::Direction::Tx => "tx".into(),
                },
                orig_len: f.orig_len,
                hex: control::api::to_hex(&f.data),
            })
            .collect();
        let done = rec.sink.is_done() && rec.sink.pending() == 0;
        let dropped = rec.sink.dropped();
        if done {
            let port = rec.port.clone();
            caps.remove(&id);
            let _ = self.switch.stop_capture(&port);
        }
        Ok(Reply::CaptureFrames(control::api::CaptureFramesReply {
            frames,
            done,
            dropped,
        }))
    }

    fn capture_stop(&self, id: u64) -> Result<Reply, ApiError> {
        match self.captures.lock().remove(&id) {
            Some(c) => {
                let _ = self.switch.stop_capture(&c.port);
                Ok(Reply::Done)
            }
            None => Err(ApiError::rejected(format!("no capture with id {id}"))),
        }
    }

    /// Drops every port (PMDs must be stopped by the caller afterwards).
    pub fn shutdown(&self) {
        let mut ports = self.ports.lock();
        for (name, rec) in ports.iter_mut() {
            let _ = self.switch.del_port(None, name);
            // Dropping keeps persistent devices for the next start.
            rec.opened.take();
        }
    }

    fn port_map(&self, bridge: &str) -> Result<PortMap, ApiError> {
        self.switch.port_numbers(bridge).map_err(switch_err)
    }

    fn show(&self) -> ShowReply {
        let specs = self.ports.lock();
        let infos = self.switch.ports();
        let bridges = self
            .switch
            .bridges()
            .into_iter()
            .map(|b| {
                let n_rules = self.switch.dump_flows(&b).map(|f| f.len()).unwrap_or(0) as u64;
                let mut ports: Vec<PortInfo> = infos
                    .iter()
                    .filter(|p| p.bridge == b)
                    .map(|p| PortInfo {
                        name: p.name.clone(),
                        ofport: p.no,
                        r#type: specs
                            .get(&p.name)
                            .map(|s| s.spec.r#type.clone())
                            .unwrap_or_else(|| p.kind.name().to_owned()),
                        state: link_text(p.link),
                        mac: format_mac(p.mac),
                        mtu: p.mtu,
                        options: specs
                            .get(&p.name)
                            .map(|s| s.spec.options.clone())
                            .unwrap_or_default(),
                        vteps: vtep_rows(p.tunnel.as_ref()),
                    })
                    .collect();
                ports.sort_by_key(|p| p.ofport);
                BridgeInfo {
                    name: b,
                    n_rules,
                    ports,
                }
            })
            .collect();
        ShowReply {
            bridges,
            pmds: self.pmd_infos(),
        }
    }

    fn pmd_infos(&self) -> Vec<PmdInfo> {
        self.switch
            .pmd_stats()
            .into_iter()
            .map(|p| PmdInfo {
                index: p.index,
                core: p.core,
                rxqs: p.rxqs.iter().map(|(n, q)| format!("{n}:{q}")).collect(),
            })
            .collect()
    }

    fn stats(&self, kind: StatsKind) -> Reply {
        match kind {
            StatsKind::Ports => Reply::PortStats(PortStatsReply {
                ports: self
                    .switch
                    .ports()
                    .into_iter()
                    .map(|p| PortStatsRow {
                        port: p.name,
                        bridge: p.bridge,
                        rx_packets: p.stats.rx_packets,
                        rx_bytes: p.stats.rx_bytes,
                        rx_dropped: p.stats.rx_dropped,
                        rx_errors: p.stats.rx_errors,
                        tx_packets: p.stats.tx_packets,
                        tx_bytes: p.stats.tx_bytes,
                        tx_dropped: p.stats.tx_dropped,
                        tx_errors: p.stats.tx_errors,
                        vteps: vtep_rows(p.tunnel.as_ref()),
                        tunnel: tunnel_counters(p.tunnel.as_ref()),
                    })
                    .collect(),
            }),
            StatsKind::Pmd => Reply::PmdStats(PmdStatsReply {
                pmds: self
                    .switch
                    .pmd_stats()
                    .into_iter()
                    .map(|p| {
                        let s = &p.stats;
                        let mut counters = BTreeMap::from([
                            ("packets".to_owned(), s.packets),
                            ("batches".to_owned(), s.batches),
                            ("emc_hits".to_owned(), s.emc_hits),
                            ("megaflow_hits".to_owned(), s.megaflow_hits),
                            ("upcalls".to_owned(), s.upcalls),
                            ("revalidations".to_owned(), s.revalidations),
                            ("tx_packets".to_owned(), s.tx_packets),
                            ("busy_us".to_owned(), s.busy_ns / 1000),
                            ("idle_us".to_owned(), s.idle_ns / 1000),
                        ]);
                        // Frames switched on L2 despite a bad header above it.
                        for a in datapath::flow::Anomaly::ALL {
                            counters
                                .insert(format!("anomaly_{}", a.name()), s.anomalies[a.index()]);
                        }
                        PmdStatsRow {
                            pmd: PmdInfo {
                                index: p.index,
                                core: p.core,
                                rxqs: p.rxqs.iter().map(|(n, q)| format!("{n}:{q}")).collect(),
                            },
                            counters,
                        }
                    })
                    .collect(),
            }),
            StatsKind::Drops => {
                let d = self.switch.drop_stats();
                Reply::Drops(DropsReply {
                    drops: d.nonzero().map(|(k, v)| (k.to_owned(), v)).collect(),
                })
            }
            StatsKind::Caches => Reply::Caches(CachesReply {
                pmds: self
                    .switch
                    .pmd_stats()
                    .into_iter()
                    .map(|p| {
                        BTreeMap::from([
                            ("pmd".to_owned(), p.index as u64),
                            ("emc_hits".to_owned(), p.emc.hits),
                            ("emc_misses".to_owned(), p.emc.misses),
                            ("emc_inserts".to_owned(), p.emc.inserts),
                            ("megaflow_entries".to_owned(), p.megaflow.entries as u64),
                            ("megaflow_subtables".to_owned(), p.megaflow.subtables as u64),
                            ("megaflow_hits".to_owned(), p.megaflow.hits),
                            ("megaflow_misses".to_owned(), p.megaflow.misses),
                            ("megaflow_evictions".to_owned(), p.megaflow.evictions),
                            ("megaflow_inserted".to_owned(), p.megaflow.inserted),
                        ])
                    })
                    .collect(),
            }),
        }
    }

    fn inventory(&self) -> Inventory {
        let specs = self.ports.lock();
        let bridges = self
            .switch
            .bridges()
            .into_iter()
            .map(|b| {
                let mut ports: Vec<DpPort> = specs
                    .values()
                    .filter(|r| r.bridge == b)
                    .map(|r| DpPort {
                        ofport: r.ofport,
                        spec: r.spec.clone(),
                    })
                    .collect();
                ports.sort_by_key(|p| p.ofport);
                DpBridge {
                    rules: self
                        .switch
                        .dump_flows(&b)
                        .unwrap_or_default()
                        .iter()
                        .map(|e| WireRule::from(&e.rule))
                        .collect(),
                    groups: self
                        .switch
                        .dump_groups(&b)
                        .unwrap_or_default()
                        .iter()
                        .map(WireGroup::from)
                        .collect(),
                    name: b,
                    ports,
                }
            })
            .collect();
        Inventory {
            boot_id: self.boot_id,
            bridges,
        }
    }

    fn add_port(&self, bridge: &str, ofport: u32, spec: PortSpec) -> Result<Reply, ApiError> {
        let mut ports = self.ports.lock();
        if ports.contains_key(&spec.name) {
            return Err(ApiError::rejected(format!(
                "port \"{}\" already exists",
                spec.name
            )));
        }
        if !self.switch.bridges().iter().any(|b| b == bridge) {
            return Err(ApiError::rejected(format!("no bridge named \"{bridge}\"")));
        }
        let opened = open_port(&spec).map_err(|e| ApiError::failed(e.to_string()))?;
        let vlan = vlan_mode(&control::portspec::vlan_of(&spec));
        if let Err(e) = self
            .switch
            .add_port(bridge, ofport, opened.port.clone(), vlan)
        {
            destroy_port(opened);
            return Err(switch_err(e));
        }
        let security = control::portspec::security_of(&spec);
        if security.is_active() {
            if let Err(e) = self.switch.set_port_security(&spec.name, security) {
                let _ = self.switch.del_port(Some(bridge), &spec.name);
                destroy_port(opened);
                return Err(switch_err(e));
            }
        }
        tracing::info!(port = %spec.name, bridge, ofport, kind = %spec.r#type, "port added");
        ports.insert(
            spec.name.clone(),
            PortRecord {
                bridge: bridge.to_owned(),
                ofport,
                spec,
                opened: Some(opened),
            },
        );
        Ok(Reply::Done)
    }

    /// Replaces a port's security options; the recorded spec follows, so
    /// the inventory (and a reconcile) sees the options now in force.
    fn set_port_security(
        &self,
        name: &str,
        options: BTreeMap<String, String>,
    ) -> Result<Reply, ApiError> {
        let mut ports = self.ports.lock();
        let rec = ports
            .get_mut(name)
            .ok_or_else(|| ApiError::rejected(format!("no port named \"{name}\"")))?;
        let mut spec = rec.spec.clone();
        spec.options
            .retain(|k, _| !control::portspec::SECURITY_KEYS.contains(&k.as_str()));
        spec.options.extend(
            options
                .into_iter()
                .filter(|(k, _)| control::portspec::SECURITY_KEYS.contains(&k.as_str())),
        );
        let mut opts = spec.options.clone();
        opts.insert("type".into(), spec.r#type.clone());
        // Validated by vswitch-controld already; checked again because
        // the options come over the socket.
        let spec = control::portspec::validate(name, &opts)
            .map_err(|e| ApiError::rejected(e.to_string()))?;
        self.switch
            .set_port_security(name, control::portspec::security_of(&spec))
            .map_err(switch_err)?;
        tracing::info!(port = %name, options = ?control::portspec::security_options(&spec), "port security set");
        rec.spec = spec;
        Ok(Reply::Done)
    }

    fn del_port(&self, bridge: &str, name: &str) -> Result<Reply, ApiError> {
        let mut ports = self.ports.lock();
        self.switch
            .del_port(Some(bridge), name)
            .map_err(switch_err)?;
        if let Some(mut rec) = ports.remove(name) {
            if let Some(p) = rec.opened.take() {
                destroy_port(p);
            }
        }
        tracing::info!(port = %name, bridge, "port deleted");
        Ok(Reply::Done)
    }

    fn del_bridge(&self, bridge: &str) -> Result<Reply, ApiError> {
        let mut ports = self.ports.lock();
        self.switch.del_bridge(bridge).map_err(switch_err)?;
        let gone: Vec<String> = ports
            .iter()
            .filter(|(_, r)| r.bridge == bridge)
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            if let Some(mut rec) = ports.remove(&n) {
                if let Some(p) = rec.opened.take() {
                    destroy_port(p);
                }
            }
        }
        tracing::info!(bridge, "bridge deleted");
        Ok(Reply::Done)
    }

    fn groups_of(groups: &[WireGroup]) -> Result<Vec<Group>, ApiError> {
        groups.iter().map(Group::try_from).collect()
    }

    fn status(&self) -> StatusReply {
        StatusReply {
            daemons: vec![DaemonStatus {
                name: control::daemon::VSWITCHD.into(),
                state: "running".into(),
                pid: Some(std::process::id()),
                boot_id: Some(self.boot_id),
                uptime_s: Some(self.started.elapsed().as_secs()),
                details: BTreeMap::from([
                    (
                        "bridges".to_owned(),
                        self.switch.bridges().len().to_string(),
                    ),
                    ("ports".to_owned(), self.ports.lock().len().to_string()),
                ]),
            }],
        }
    }
}

impl Handler for Datapath {
    fn hello(&self) -> HelloReply {
        HelloReply {
            api_version: API_VERSION,
            server: control::daemon::VSWITCHD.into(),
            pid: std::process::id(),
            boot_id: self.boot_id,
        }
    }

    fn handle(&self, req: Request, _peer: Peer) -> Result<Reply, ApiError> {
        let sw = &self.switch;
        match req {
            Request::Show => Ok(Reply::Show(self.show())),
            Request::Status => Ok(Reply::Status(self.status())),
            Request::CaptureStart { port, count } => self.capture_start(&port, count),
            Request::CaptureRead { id } => self.capture_read(id),
            Request::CaptureStop { id } => self.capture_stop(id),
            Request::DumpFlows { bridge, table } => {
                let ports = self.port_map(&bridge)?;
                let mut entries = sw.dump_flows(&bridge).map_err(switch_err)?;
                entries.retain(|e| table.is_none_or(|t| e.rule.table == t));
                // Table order, then descending priority, as ovs-ofctl prints.
                entries.sort_by(|a, b| {
                    (a.rule.table, std::cmp::Reverse(a.rule.priority))
                        .cmp(&(b.rule.table, std::cmp::Reverse(b.rule.priority)))
                });
                Ok(Reply::Flows(FlowsReply {
                    flows: entries
                        .iter()
                        .map(|e| render::flow_row(e, &ports))
                        .collect(),
                }))
            }
            Request::DumpGroups { bridge } => {
                let ports = self.port_map(&bridge)?;
                Ok(Reply::Groups(GroupsReply {
                    groups: sw
                        .dump_groups(&bridge)
                        .map_err(switch_err)?
                        .iter()
                        .map(|g| render::group_text(g, &ports))
                        .collect(),
                }))
            }
            Request::FdbShow { bridge } => Ok(Reply::Fdb(FdbReply {
                counters: {
                    let s = sw.fdb_stats(&bridge).map_err(switch_err)?;
                    BTreeMap::from([
                        ("entries".to_owned(), s.entries as u64),
                        ("learned".to_owned(), s.learned),
                        ("moved".to_owned(), s.moved),
                        ("overflow".to_owned(), s.overflow),
                        ("port_limit".to_owned(), s.port_limit),
                        ("aged".to_owned(), s.aged),
                    ])
                },
                entries: sw
                    .fdb_show(&bridge)
                    .map_err(switch_err)?
                    .into_iter()
                    .map(|(e, port)| FdbRow {
                        mac: format_mac(e.mac),
                        vlan: e.vlan,
                        port,
                        age_s: e.age_ms / 1000,
                        r#static: e.is_static,
                        remote: e
                            .dest
                            .remote
                            .map(|ip| std::net::Ipv4Addr::from(ip).to_string()),
                    })
                    .collect(),
            })),
            Request::Stats { kind } => Ok(self.stats(kind)),
            Request::DumpCache { bridge } => {
                let ports = self.port_map(&bridge)?;
                Ok(Reply::Cache(CacheReply {
                    megaflows: sw
                        .dump_cache(&bridge)
                        .map_err(switch_err)?
                        .iter()
                        .map(|e| render::cache_row(e, &ports))
                        .collect(),
                }))
            }
            Request::Trace { bridge, flow } => {
                let ports = self.port_map(&bridge)?;
                let key = render::parse_trace_flow(&flow, &ports)?;
                let t = sw.trace(&bridge, &key).map_err(switch_err)?;
                Ok(Reply::Trace(TraceReply {
                    steps: render::trace_lines(&t, &ports),
                    actions: render::dp_actions_text(&t.actions, &render::names_by_number(&ports)),
                }))
            }
            Request::DpInventory => Ok(Reply::Inventory(self.inventory())),
            Request::DpAddBridge { bridge } => {
                control::portspec::check_name("bridge", &bridge)
                    .map_err(|e| ApiError::rejected(e.to_string()))?;
                sw.add_bridge(&bridge).map_err(switch_err)?;
                tracing::info!(bridge, "bridge added");
                Ok(Reply::Done)
            }
            Request::DpDelBridge { bridge } => self.del_bridge(&bridge),
            Request::DpAddPort {
                bridge,
                ofport,
                spec,
            } => self.add_port(&bridge, ofport, spec),
            Request::DpDelPort { bridge, name } => self.del_port(&bridge, &name),
            Request::DpSetPortVlan { name, vlan } => {
                let mut ports = self.ports.lock();
                sw.set_port_vlan(&name, vlan_mode(&vlan))
                    .map_err(switch_err)?;
                // The recorded spec is what show, the inventory and
                // reconciliation see: it must say what is in force.
                if let Some(rec) = ports.get_mut(&name) {
                    set_vlan_options(&mut rec.spec.options, &vlan);
                }
                Ok(Reply::Done)
            }
            Request::DpSetPortSecurity { name, options } => self.set_port_security(&name, options),
            Request::DpAddFlows { bridge, rules } => {
                let t = Instant::now();
                let rules: Vec<Rule> = rules.iter().map(Rule::from).collect();
                let n = rules.len();
                sw.add_flows(&bridge, rules).map_err(switch_err)?;
                tracing::info!(
                    bridge,
                    rules = n,
                    install_ms = t.elapsed().as_secs_f64() * 1e3,
                    "rules added"
                );
                Ok(Reply::Done)
            }
            Request::DpDelFlows {
                bridge,
                table,
                r#match,
                strict_priority,
            } => {
                let filter = FlowFilter {
                    table,
                    r#match: Match::from(&r#match),
                    strict_priority,
                };
                let n = sw.del_flows(&bridge, &filter).map_err(switch_err)?;
                Ok(Reply::Count { count: n as u64 })
            }
            Request::DpReplaceFlows {
                bridge,
                rules,
                groups,
            } => {
                let t = Instant::now();
                let rules: Vec<Rule> = rules.iter().map(Rule::from).collect();
                let n = rules.len();
                let groups = Self::groups_of(&groups)?;
                sw.replace_flows(&bridge, rules, Some(groups))
                    .map_err(switch_err)?;
                tracing::info!(
                    bridge,
                    rules = n,
                    install_ms = t.elapsed().as_secs_f64() * 1e3,
                    "rules replaced"
                );
                Ok(Reply::Done)
            }
            Request::DpAddGroup { bridge, group } => {
                let g = Group::try_from(&group)?;
                sw.add_group(&bridge, g).map_err(switch_err)?;
                Ok(Reply::Done)
            }
            Request::DpDelGroups { bridge } => {
                let n = sw.del_groups(&bridge, None).map_err(switch_err)?;
                Ok(Reply::Count { count: n as u64 })
            }
            Request::DpFdbFlush { bridge } => {
                sw.fdb_flush(&bridge).map_err(switch_err)?;
                Ok(Reply::Done)
            }
            Request::DpFdbAdd { bridge, entry } => {
                let StaticFdbEntry {
                    mac,
                    vlan,
                    port,
                    remote,
                } = entry;
                let mac = parse_mac_arg(&mac)?;
                let remote = match remote {
                    None => None,
                    Some(r) => Some(u32::from(r.parse::<std::net::Ipv4Addr>().map_err(
                        |_| ApiError::rejected(format!("remote \"{r}\" is not an IPv4 address")),
                    )?)),
                };
                sw.fdb_add(&bridge, mac, vlan, &port, remote)
                    .map_err(switch_err)?;
                Ok(Reply::Done)
            }
            Request::DpFdbDel { bridge, mac, vlan } => {
                let m = parse_mac_arg(&mac)?;
                let found = sw.fdb_del(&bridge, m, vlan).map_err(switch_err)?;
                Ok(Reply::Count {
                    count: u64::from(found),
                })
            }
            Request::DpTakeExpired => Ok(Reply::Expired(ExpiredReply {
                rules: sw
                    .take_expired()
                    .iter()
                    .map(|(b, r)| (b.clone(), WireRule::from(r)))
                    .collect(),
            })),
            Request::PmdRebalance => {
                let moved = sw.pmd_rebalance();
                tracing::info!(queues = moved.len(), "rx queues rebalanced");
                Ok(Reply::Pmds(PmdsReply {
                    pmds: self.pmd_infos(),
                }))
            }
            other => Err(ApiError::new(
                ErrorKind::Unsupported,
                format!(
                    "{}: vswitchd takes changes only from vswitch-controld",
                    other.call_name()
                ),
            )),
        }
    }
}

/// Writes VLAN membership `vlan` into port options as `vlan=`/`trunks=`
/// (the inverse of [`control::portspec::vlan_of`]).
fn set_vlan_options(options: &mut BTreeMap<String, String>, vlan: &WireVlan) {
    options.remove("vlan");
    options.remove("trunks");
    match vlan {
        WireVlan::Access(v) => {
            options.insert("vlan".into(), v.to_string());
        }
        WireVlan::Trunks(t) if !t.is_empty() => {
            let list: Vec<String> = t.iter().map(u16::to_string).collect();
            options.insert("trunks".into(), list.join(","));
        }
        WireVlan::Trunks(_) | WireVlan::Trunk => {}
    }
}

/// Per-VTEP rows of a tunnel port for `show` and `stats ports`.
fn vtep_rows(t: Option<&TunnelInfo>) -> Vec<VtepRow> {
    t.map(|t| {
        t.vteps
            .iter()
            .map(|v| VtepRow {
                remote: v.remote.to_string(),
                rx_packets: v.rx_packets,
                rx_bytes: v.rx_bytes,
                tx_packets: v.tx_packets,
                tx_bytes: v.tx_bytes,
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Tunnel refusal counters by name (see [`control::api::PortStatsRow`]).
fn tunnel_counters(t: Option<&TunnelInfo>) -> BTreeMap<String, u64> {
    let Some(t) = t else {
        return BTreeMap::new();
    };
    let d = &t.drops;
    [
        ("truncated", d.truncated),
        ("bad_flags", d.bad_flags),
        ("unknown_vni", d.unknown_vni),
        ("unknown_vtep", d.unknown_vtep),
        ("mtu", d.mtu),
        ("malformed", d.malformed),
        ("send_failed", d.send_failed),
        ("no_buffer", d.no_buffer),
        ("gro_merged", t.gro_merged),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::api::{StatsKind, WireAction};
    use datapath::switch::SwitchConfig;

    fn dp() -> Datapath {
        // No PMD threads: the switch is driven by the caller.
        Datapath::new(Switch::new(SwitchConfig::default()).unwrap())
    }

    fn root() -> Peer {
        Peer {
            uid: 0,
            gid: 0,
            pid: 1,
        }
    }

    fn call(d: &Datapath, r: Request) -> Result<Reply, ApiError> {
        d.handle(r, root())
    }

    #[test]
    fn programming_calls_show_up_in_reads_and_inventory() {
        let d = dp();
        call(
            &d,
            Request::DpAddBridge {
                bridge: "br0".into(),
            },
        )
        .unwrap();
        let mut r = WireRule::from(&Rule::default_normal());
        r.priority = 10;
        r.actions = vec![WireAction::Flood];
        call(
            &d,
            Request::DpAddFlows {
                bridge: "br0".into(),
                rules: vec![r.clone()],
            },
        )
        .unwrap();
        let Reply::Flows(f) = call(
            &d,
            Request::DumpFlows {
                bridge: "br0".into(),
                table: None,
            },
        )
        .unwrap() else {
            panic!("flows expected")
        };
        // Descending priority, actions in flow syntax.
        assert_eq!(f.flows.len(), 2);
        assert_eq!(f.flows[0].priority, 10);
        assert_eq!(f.flows[0].actions, "FLOOD");
        assert_eq!(f.flows[1].actions, "NORMAL");
        let Reply::Inventory(inv) = call(&d, Request::DpInventory).unwrap() else {
            panic!("inventory expected")
        };
        assert_eq!(inv.bridges[0].rules.len(), 2);
        assert!(inv.bridges[0].rules.contains(&r));
        // Replace swaps the whole set.
        call(
            &d,
            Request::DpReplaceFlows {
                bridge: "br0".into(),
                rules: vec![r],
                groups: vec![],
            },
        )
        .unwrap();
        let Reply::Show(s) = call(&d, Request::Show).unwrap() else {
            panic!("show expected")
        };
        assert_eq!(s.bridges[0].n_rules, 1);
    }

    /// A VXLAN port needs no root (a UDP socket on a high port on
    /// loopback), so the recorded spec can be checked in a unit test.
    #[test]
    fn set_port_vlan_is_recorded_in_the_port_spec() {
        let d = dp();
        call(
            &d,
            Request::DpAddBridge {
                bridge: "br0".into(),
            },
        )
        .unwrap();
        let dstport = (40_000 + std::process::id() % 20_000).to_string();
        call(
            &d,
            Request::DpAddPort {
                bridge: "br0".into(),
                ofport: 1,
                spec: PortSpec {
                    name: "vx0".into(),
                    r#type: "vxlan".into(),
                    options: BTreeMap::from([
                        ("remote".to_owned(), "127.0.0.2".to_owned()),
                        ("local".to_owned(), "127.0.0.1".to_owned()),
                        ("dstport".to_owned(), dstport),
                        ("trunks".to_owned(), "7".to_owned()),
                    ]),
                },
            },
        )
        .unwrap();
        let options = |d: &Datapath| {
            let Reply::Inventory(inv) = call(d, Request::DpInventory).unwrap() else {
                panic!("inventory expected")
            };
            inv.bridges[0].ports[0].spec.options.clone()
        };
        for (vlan, want_vlan, want_trunks) in [
            (WireVlan::Access(10), Some("10"), None),
            (WireVlan::Trunks(vec![5, 6]), None, Some("5,6")),
            (WireVlan::Trunk, None, None),
        ] {
            call(
                &d,
                Request::DpSetPortVlan {
                    name: "vx0".into(),
                    vlan: vlan.clone(),
                },
            )
            .unwrap();
            let o = options(&d);
            assert_eq!(o.get("vlan").map(String::as_str), want_vlan, "{vlan:?}");
            assert_eq!(o.get("trunks").map(String::as_str), want_trunks, "{vlan:?}");
            assert_eq!(o.get("remote").map(String::as_str), Some("127.0.0.2"));
        }
    }

    #[test]
    fn trace_explains_and_unknown_bridge_is_rejected() {
        let d = dp();
        call(
            &d,
            Request::DpAddBridge {
                bridge: "br0".into(),
            },
        )
        .unwrap();
        let Reply::Trace(t) = call(
            &d,
            Request::Trace {
                bridge: "br0".into(),
                flow: "ip,nw_src=10.0.0.1,nw_dst=10.0.0.2".into(),
            },
        )
        .unwrap() else {
            panic!("trace expected")
        };
        assert!(
            t.steps[0].starts_with("table 0: matched priority=0"),
            "{:?}",
            t.steps
        );
        let e = call(
            &d,
            Request::FdbShow {
                bridge: "nope".into(),
            },
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Rejected);
        assert!(e.message.contains("nope"));
        let e = call(
            &d,
            Request::Trace {
                bridge: "br0".into(),
                flow: "nw_srcc=1".into(),
            },
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Rejected);
    }

    #[test]
    fn operator_changes_are_refused_and_stats_answer() {
        let d = dp();
        let e = call(&d, Request::AddBridge { bridge: "x".into() }).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unsupported);
        assert!(e.message.contains("vswitch-controld"));
        assert!(matches!(
            call(
                &d,
                Request::Stats {
                    kind: StatsKind::Drops
                }
            )
            .unwrap(),
            Reply::Drops(_)
        ));
        // A port whose backend cannot be opened leaves no record behind.
        call(
            &d,
            Request::DpAddBridge {
                bridge: "br0".into(),
            },
        )
        .unwrap();
        let e = call(
            &d,
            Request::DpAddPort {
                bridge: "br0".into(),
                ofport: 1,
                spec: PortSpec {
                    name: "v1".into(),
                    r#type: "vxlan".into(),
                    options: Default::default(),
                },
            },
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Failed);
        let Reply::Inventory(inv) = call(&d, Request::DpInventory).unwrap() else {
            panic!("inventory expected")
        };
        assert!(inv.bridges[0].ports.is_empty());
    }
}
