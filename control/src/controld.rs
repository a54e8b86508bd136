//! vswitch-controld's core: the authority for the desired state.
//!
//! Every change follows one path, under one lock: validate fully against
//! a copy of the state → program vswitchd → persist `state.json` → answer.
//! If programming or persisting fails, the datapath is reconciled back to
//! the previous state, so a failure leaves nothing behind.
//!
//! A maintenance tick (period from the config) watches vswitchd's boot id:
//! a new id means a new datapath process, which is then reconciled in full
//! (it starts empty, so everything is pushed again). The tick also collects
//! rules the datapath expired (idle/hard timeouts) and drops them from the
//! desired state, so a restart does not resurrect them.

use crate::api::{
    ApiError, BridgeInfo, DaemonStatus, DpPort, ErrorKind, HelloReply, Inventory, PortInfo, Reply,
    Request, ShowReply, StaticFdbEntry, StatusReply, WireGroup, WireMatch, WireRule, API_VERSION,
};
use crate::config::Config;
use crate::daemon::{self, RunDir};
use crate::flowsyntax::{self, PortNames};
use crate::ipc::{Client, Handler, IpcError, Peer};
use crate::portspec;
use crate::reconcile;
use crate::state::{BridgeConfig, DesiredState, Loaded, StateStore};
use datapath::pipeline::{Match, Rule};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Timeout of one call to vswitchd (10k-rule pushes included).
const DP_TIMEOUT: Duration = Duration::from_secs(60);

/// Connection to vswitchd, re-opened on demand.
struct DpLink {
    path: PathBuf,
    client: Option<Client>,
}

impl DpLink {
    fn client(&mut self) -> Result<&mut Client, IpcError> {
        if self.client.is_none() {
            self.client = Some(Client::connect(&self.path, daemon::CONTROLD, DP_TIMEOUT)?);
        }
        Ok(self.client.as_mut().expect("set above"))
    }

    fn call(&mut self, req: &Request) -> Result<Reply, ApiError> {
        let r = self.client().and_then(|c| c.call(req));
        match r {
            Ok(v) => Ok(v),
            Err(IpcError::Api(e)) => Err(e),
            Err(e) => {
                self.client = None;
                Err(ApiError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "vswitchd at \"{}\": {}",
                        self.path.display(),
                        error_chain(&e)
                    ),
                ))
            }
        }
    }

    fn boot_id(&mut self) -> Result<u64, ApiError> {
        // A fresh hello every time: it is what reveals a restarted vswitchd
        // even when the old connection still looks usable.
        self.client = None;
        match self.client() {
            Ok(c) => Ok(c.server().boot_id),
            Err(e) => {
                self.client = None;
                Err(ApiError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "vswitchd at \"{}\": {}",
                        self.path.display(),
                        error_chain(&e)
                    ),
                ))
            }
        }
    }
}

/// Formats an error with its causes.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

struct Core {
    state: DesiredState,
    store: StateStore,
    dp: DpLink,
    /// Boot id of the vswitchd the state was last fully reconciled with.
    synced_boot_id: Option<u64>,
    /// Errors of the last reconciliation (retried on the next tick).
    sync_errors: Vec<String>,
    /// `state` holds expiries the datapath already applied that could not
    /// be written (disk full): saved again on every tick until it works.
    unsaved: bool,
}

/// The vswitch-controld handler.
pub struct Controld {
    core: Mutex<Core>,
    run: RunDir,
    boot_id: u64,
    started: Instant,
    /// Why the state file could not be used at start, if it could not.
    state_warning: Option<String>,
}

fn rejected(msg: impl Into<String>) -> ApiError {
    ApiError::rejected(msg)
}

impl Controld {
    /// Loads the state (seeding it from `cfg` when there is none) and
    /// makes a first attempt at bringing the datapath to it.
    pub fn new(run: RunDir, cfg: &Config) -> Result<Controld, ApiError> {
        let store = StateStore::new(run.state_file());
        let mut dp = DpLink {
            path: run.vswitchd_socket(),
            client: None,
        };
        let mut warning = None;
        let state = match store.load() {
            Ok(Loaded::Ok(s)) => {
                tracing::info!(file = %store.path().display(), bridges = s.bridges.len(), "state loaded");
                s
            }
            Ok(Loaded::Missing) => {
                let s = seed(cfg)?;
                tracing::info!(file = %store.path().display(), bridges = s.bridges.len(), "no state file; seeded from the config");
                store
                    .save(&s)
                    .map_err(|e| ApiError::failed(error_chain(&e)))?;
                s
            }
            Ok(Loaded::Corrupt { aside, reason }) => {
                // Adopt what the running datapath holds rather than wiping
                // it: nothing the operator built is lost silently.
                let adopted = match dp.call(&Request::DpInventory) {
                    Ok(Reply::Inventory(inv)) => Some(from_inventory(&inv)),
                    _ => None,
                };
                let msg = format!(
                    "state file \"{}\" is corrupt ({reason}); kept aside as \"{}\"; {}",
                    store.path().display(),
                    aside.display(),
                    if adopted.is_some() {
                        "adopted the running datapath's configuration"
                    } else {
                        "vswitchd not reachable: starting from an empty state"
                    }
                );
                tracing::error!("{msg}");
                warning = Some(msg);
                let s = adopted.unwrap_or_default();
                store
                    .save(&s)
                    .map_err(|e| ApiError::failed(error_chain(&e)))?;
                s
            }
            Err(e) => return Err(ApiError::failed(error_chain(&e))),
        };
        let c = Controld {
            core: Mutex::new(Core {
                state,
                store,
                dp,
                synced_boot_id: None,
                sync_errors: Vec::new(),
                unsaved: false,
            }),
            run,
            boot_id: daemon::new_boot_id(),
            started: Instant::now(),
            state_warning: warning,
        };
        c.tick();
        Ok(c)
    }

    /// One maintenance round: detect a new vswitchd and reconcile, retry
    /// a failed reconciliation, collect expired rules.
    pub fn tick(&self) {
        let mut core = self.core.lock();
        let boot = match core.dp.boot_id() {
            Ok(b) => b,
            Err(e) => {
                if core.synced_boot_id.take().is_some() {
                    tracing::warn!("lost vswitchd: {e}");
                }
                return;
            }
        };
        if core.synced_boot_id != Some(boot) || !core.sync_errors.is_empty() {
            if core.synced_boot_id.is_some_and(|b| b != boot) {
                tracing::warn!(
                    boot_id = boot,
                    "vswitchd restarted; pushing the whole state again"
                );
            }
            let state = core.state.clone();
            let errors = reconcile_to(&mut core.dp, &state);
            if errors.is_empty() {
                tracing::info!(boot_id = boot, "datapath in sync with the desired state");
            }
            core.sync_errors = errors;
            core.synced_boot_id = Some(boot);
        }
        if let Ok(Reply::Expired(x)) = core.dp.call(&Request::DpTakeExpired) {
            if !x.rules.is_empty() {
                // The datapath has removed them already: the desired state
                // follows in memory even when it cannot be written, or a
                // later change or restart would bring them back.
                for (bridge, rule) in &x.rules {
                    if let Some(b) = core.state.bridge_mut(bridge) {
                        if let Some(i) = b.rules.iter().position(|r| r == rule) {
                            b.rules.remove(i);
                        }
                    }
                }
                tracing::info!(
                    count = x.rules.len(),
                    "expired rules removed from the state"
                );
                core.unsaved = true;
            }
        }
        if core.unsaved {
            match core.store.save(&core.state) {
                Ok(()) => core.unsaved = false,
                Err(e) => tracing::error!(
                    "cannot persist expired rules (retried every tick): {}",
                    error_chain(&e)
                ),
            }
        }
    }

    /// True when the datapath has the desired state applied.
    pub fn in_sync(&self) -> bool {
        let core = self.core.lock();
        core.synced_boot_id.is_some() && core.sync_errors.is_empty()
    }

    fn status(&self) -> StatusReply {
        // Check the datapath now rather than report the last tick's view:
        // `vswitchctl start` waits on this answer after restarting vswitchd.
        self.tick();
        let core = self.core.lock();
        let mut details = BTreeMap::from([
            (
                "state_file".to_owned(),
                core.store.path().display().to_string(),
            ),
            ("bridges".to_owned(), core.state.bridges.len().to_string()),
            (
                "datapath".to_owned(),
                match (core.synced_boot_id, core.sync_errors.is_empty()) {
                    (Some(_), true) => "in sync".to_owned(),
                    (Some(_), false) => format!("out of sync: {}", core.sync_errors.join("; ")),
                    (None, _) => "unreachable".to_owned(),
                },
            ),
            ("run_dir".to_owned(), self.run.dir().display().to_string()),
        ]);
        if let Some(w) = &self.state_warning {
            details.insert("warning".into(), w.clone());
        }
        StatusReply {
            daemons: vec![DaemonStatus {
                name: daemon::CONTROLD.into(),
                state: "running".into(),
                pid: Some(std::process::id()),
                boot_id: Some(self.boot_id),
                uptime_s: Some(self.started.elapsed().as_secs()),
                details,
            }],
        }
    }

    /// Validates `req` into the next desired state plus the datapath calls
    /// that realise it. Pure: nothing is changed yet.
    fn prepare(
        state: &DesiredState,
        req: &Request,
    ) -> Result<(DesiredState, Vec<Request>), ApiError> {
        let mut next = state.clone();
        let mut calls = Vec::new();
        let no_bridge = |b: &str| rejected(format!("no bridge named \"{b}\""));
        match req {
            Request::AddBridge { bridge } => {
                portspec::check_name("bridge", bridge).map_err(|e| rejected(e.to_string()))?;
                if next.bridge(bridge).is_some() {
                    return Err(rejected(format!("bridge \"{bridge}\" already exists")));
                }
                next.bridges.push(BridgeConfig::new(bridge));
                calls.push(Request::DpAddBridge {
                    bridge: bridge.clone(),
                });
            }
            Request::DelBridge { bridge } => {
                let i = next
                    .bridges
                    .iter()
                    .position(|b| b.name == *bridge)
                    .ok_or_else(|| no_bridge(bridge))?;
                next.bridges.remove(i);
                calls.push(Request::DpDelBridge {
                    bridge: bridge.clone(),
                });
            }
            Request::AddPort {
                bridge,
                name,
                options,
            } => {
                let spec =
                    portspec::validate(name, options).map_err(|e| rejected(e.to_string()))?;
                if next.bridge(bridge).is_none() {
                    return Err(no_bridge(bridge));
                }
                if let Some((b, _)) = next.find_port(name) {
                    return Err(rejected(format!(
                        "port \"{name}\" already exists on bridge \"{}\"",
                        b.name
                    )));
                }
                let ofport = next.free_ofport();
                next.bridge_mut(bridge)
                    .expect("checked above")
                    .ports
                    .push(DpPort {
                        ofport,
                        spec: spec.clone(),
                    });
                calls.push(Request::DpAddPort {
                    bridge: bridge.clone(),
                    ofport,
                    spec,
                });
            }
            Request::DelPort { bridge, name } => {
                let b = next.bridge_mut(bridge).ok_or_else(|| no_bridge(bridge))?;
                let i = b
                    .ports
                    .iter()
                    .position(|p| p.spec.name == *name)
                    .ok_or_else(|| {
                        rejected(format!("bridge \"{bridge}\" has no port named \"{name}\""))
                    })?;
                b.ports.remove(i);
                b.fdb.retain(|e| e.port != *name);
                calls.push(Request::DpDelPort {
                    bridge: bridge.clone(),
                    name: name.clone(),
                });
            }
            Request::SetPort {
                bridge,
                name,
                options,
            } => {
                let b = next.bridge_mut(bridge).ok_or_else(|| no_bridge(bridge))?;
                let p = b
                    .ports
                    .iter_mut()
                    .find(|p| p.spec.name == *name)
                    .ok_or_else(|| {
                        rejected(format!("bridge \"{bridge}\" has no port named \"{name}\""))
                    })?;
                let merged =
                    portspec::merge(&p.spec, options).map_err(|e| rejected(e.to_string()))?;
                // VLAN membership and port security change on the live
                // port; anything else re-opens it.
                let live_only = {
                    let strip = |o: &BTreeMap<String, String>| {
                        let mut o = o.clone();
                        o.remove("vlan");
                        o.remove("trunks");
                        o.retain(|k, _| !portspec::SECURITY_KEYS.contains(&k.as_str()));
                        o
                    };
                    strip(&merged.options) == strip(&p.spec.options)
                };
                let security = portspec::security_options(&merged);
                let security_changed = security != portspec::security_options(&p.spec);
                if live_only {
                    if !security_changed || portspec::vlan_of(&merged) != portspec::vlan_of(&p.spec)
                    {
                        calls.push(Request::DpSetPortVlan {
                            name: name.clone(),
                            vlan: portspec::vlan_of(&merged),
                        });
                    }
                    if security_changed {
                        calls.push(Request::DpSetPortSecurity {
                            name: name.clone(),
                            options: security,
                        });
                    }
                } else {
                    // Other options need the device re-opened; the port
                    // keeps its number, so rules stay valid.
                    calls.push(Request::DpDelPort {
                        bridge: bridge.clone(),
                        name: name.clone(),
                    });
                    calls.push(Request::DpAddPort {
                        bridge: bridge.clone(),
                        ofport: p.ofport,
                        spec: merged.clone(),
                    });
                }
                p.spec = merged;
            }
            Request::AddFlows { bridge, rules } => {
                let ports = next.port_numbers(bridge);
                let b = next.bridge_mut(bridge).ok_or_else(|| no_bridge(bridge))?;
                let parsed = parse_rules(rules, &ports)?;
                // An index keeps 10k-rule files linear, not quadratic.
                let mut index: std::collections::HashMap<(u8, u16, WireMatch), usize> = b
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, x)| ((x.table, x.priority, x.r#match), i))
                    .collect();
                for r in &parsed {
                    let w = WireRule::from(r);
                    let key = (w.table, w.priority, w.r#match);
                    match index.get(&key) {
                        Some(&i) => b.rules[i] = w,
                        None => {
                            index.insert(key, b.rules.len());
                            b.rules.push(w);
                        }
                    }
                }
                calls.push(Request::DpAddFlows {
                    bridge: bridge.clone(),
                    rules: parsed.iter().map(WireRule::from).collect(),
                });
            }
            Request::ReplaceFlows { bridge, rules } => {
                let ports = next.port_numbers(bridge);
                let b = next.bridge_mut(bridge).ok_or_else(|| no_bridge(bridge))?;
                let parsed = parse_rules(rules, &ports)?;
                let mut list: Vec<WireRule> = Vec::with_capacity(parsed.len());
                let mut index = std::collections::HashMap::new();
                for r in &parsed {
                    let w = WireRule::from(r);
                    let key = (w.table, w.priority, w.r#match);
                    match index.get(&key) {
                        Some(&i) => list[i] = w,
                        None => {
                            index.insert(key, list.len());
                            list.push(w);
                        }
                    }
                }
                b.rules = list.clone();
                calls.push(Request::DpReplaceFlows {
                    bridge: bridge.clone(),
                    rules: list,
                    groups: b.groups.clone(),
                });
            }
            Request::DelFlows {
                bridge,
                r#match,
                strict,
            } => {
                let ports = next.port_numbers(bridge);
                let b = next.bridge_mut(bridge).ok_or_else(|| no_bridge(bridge))?;
                let (table, m, prio) = match r#match {
                    None => (None, Match::ANY, None),
                    Some(text) => {
                        let spec = flowsyntax::parse_match(text, &ports)
                            .map_err(|e| rejected(format!("del-flows: {e}")))?;
                        (spec.table, spec.r#match, spec.priority)
                    }
                };
                let strict_priority = if *strict {
                    Some(prio.unwrap_or(flowsyntax::DEFAULT_PRIORITY))
                } else {
                    None
                };
                let wm = WireMatch::from(&m);
                b.rules.retain(|r| {
                    let rule = Rule::from(r);
                    let selected = table.is_none_or(|t| t == rule.table)
                        && match strict_priority {
                            Some(p) => rule.priority == p && rule.r#match == m,
                            None => rule.r#match.is_within(&m),
                        };
                    !selected
                });
                calls.push(Request::DpDelFlows {
                    bridge: bridge.clone(),
                    table,
                    r#match: wm,
                    strict_priority,
                });
            }
            Request::AddGroup { bridge, group } => {
                let ports = next.port_numbers(bridge);
                let b = next.bridge_mut(bridge).ok_or_else(|| no_bridge(bridge))?;
                let g = flowsyntax::parse_group(group, &ports)
                    .map_err(|e| rejected(format!("add-group: {e}")))?;
                let w = WireGroup::from(&g);
                b.groups.retain(|x| x.id != w.id);
                b.groups.push(w.clone());
                calls.push(Request::DpAddGroup {
                    bridge: bridge.clone(),
                    group: w,
                });
            }
            Request::DelGroups { bridge } => {
                let b = next.bridge_mut(bridge).ok_or_else(|| no_bridge(bridge))?;
                b.groups.clear();
                calls.push(Request::DpDelGroups {
                    bridge: bridge.clone(),
                });
            }
            Request::FdbFlush { bridge } => {
                if next.bridge(bridge).is_none() {
                    return Err(no_bridge(bridge));
                }
                calls.push(Request::DpFdbFlush {
                    bridge: bridge.clone(),
                });
            }
            Request::FdbAdd { bridge, entry } => {
                let b = next.bridge_mut(bridge).ok_or_else(|| no_bridge(bridge))?;
                let entry = normalize_fdb(entry)?;
                if b.port(&entry.port).is_none() {
                    return Err(rejected(format!(
                        "bridge \"{bridge}\" has no port named \"{}\"",
                        entry.port
                    )));
                }
                b.fdb
                    .retain(|e| !(e.mac == entry.mac && e.vlan == entry.vlan));
                b.fdb.push(entry.clone());
                calls.push(Request::DpFdbAdd {
                    bridge: bridge.clone(),
                    entry,
                });
            }
            Request::FdbDel { bridge, mac, vlan } => {
                let b = next.bridge_mut(bridge).ok_or_else(|| no_bridge(bridge))?;
                let m = crate::api::parse_mac(mac)
                    .ok_or_else(|| rejected(format!("\"{mac}\" is not a MAC address")))?;
                let mac = crate::api::format_mac(m);
                b.fdb.retain(|e| !(e.mac == mac && e.vlan == *vlan));
                calls.push(Request::DpFdbDel {
                    bridge: bridge.clone(),
                    mac,
                    vlan: *vlan,
                });
            }
            other => {
                return Err(ApiError::new(
                    ErrorKind::Unsupported,
                    format!("{}: not a change vswitch-controld makes", other.call_name()),
                ))
            }
        }
        Ok((next, calls))
    }

    fn change(&self, req: &Request) -> Result<Reply, ApiError> {
        let mut core = self.core.lock();
        let t0 = Instant::now();
        let (next, calls) = Self::prepare(&core.state, req)?;
        let t1 = Instant::now();
        let mut last = Reply::Done;
        for (i, call) in calls.iter().enumerate() {
            match core.dp.call(call) {
                Ok(r) => last = r,
                Err(e) => {
                    if i > 0 {
                        let old = core.state.clone();
                        let errs = reconcile_to(&mut core.dp, &old);
                        for e in errs {
                            tracing::error!("rollback: {e}");
                        }
                    }
                    return Err(e);
                }
            }
        }
        let t2 = Instant::now();
        if let Err(e) = core.store.save(&next) {
            let old = core.state.clone();
            for e in reconcile_to(&mut core.dp, &old) {
                tracing::error!("rollback: {e}");
            }
            return Err(ApiError::failed(format!(
                "{}: not applied: {}",
                req.call_name(),
                error_chain(&e)
            )));
        }
        core.state = next;
        core.unsaved = false;
        tracing::info!(
            call = %req.call_name(),
            validate_ms = (t1 - t0).as_secs_f64() * 1e3,
            datapath_ms = (t2 - t1).as_secs_f64() * 1e3,
            persist_ms = t2.elapsed().as_secs_f64() * 1e3,
            "applied"
        );
        Ok(last)
    }

    fn forward(&self, req: &Request) -> Result<Reply, ApiError> {
        let mut c = Client::connect(&self.run.vswitchd_socket(), daemon::CONTROLD, DP_TIMEOUT)
            .map_err(|e| {
                ApiError::new(
                    ErrorKind::Unavailable,
                    format!("vswitchd: {}", error_chain(&e)),
                )
            })?;
        c.call(req).map_err(|e| match e {
            IpcError::Api(e) => e,
            other => ApiError::new(ErrorKind::Unavailable, error_chain(&other)),
        })
    }

    /// `show`: the datapath's view, with desired ports the datapath lacks
    /// listed as `missing` (e.g. a device that could not be opened).
    fn show(&self) -> Result<Reply, ApiError> {
        let dp = self.forward(&Request::Show);
        let state = self.core.lock().state.clone();
        let mut show = match dp {
            Ok(Reply::Show(s)) => s,
            Ok(_) => {
                return Err(ApiError::failed(
                    "vswitchd answered show with another reply",
                ))
            }
            Err(e) if e.kind == ErrorKind::Unavailable => ShowReply::default(),
            Err(e) => return Err(e),
        };
        for b in &state.bridges {
            let bi = match show.bridges.iter_mut().find(|x| x.name == b.name) {
                Some(x) => x,
                None => {
                    show.bridges.push(BridgeInfo {
                        name: b.name.clone(),
                        n_rules: b.rules.len() as u64,
                        ports: Vec::new(),
                    });
                    show.bridges.last_mut().expect("just pushed")
                }
            };
            for p in &b.ports {
                if !bi.ports.iter().any(|x| x.name == p.spec.name) {
                    bi.ports.push(PortInfo {
                        name: p.spec.name.clone(),
                        ofport: p.ofport,
                        r#type: p.spec.r#type.clone(),
                        state: "missing".into(),
                        mac: String::new(),
                        mtu: 0,
                        options: p.spec.options.clone(),
                        vteps: Vec::new(),
                    });
                }
            }
            bi.ports.sort_by_key(|p| p.ofport);
        }
        Ok(Reply::Show(show))
    }
}

/// Brings the datapath to `state` by difference; returns the failures.
fn reconcile_to(dp: &mut DpLink, state: &DesiredState) -> Vec<String> {
    let inv = match dp.call(&Request::DpInventory) {
        Ok(Reply::Inventory(inv)) => inv,
        Ok(_) => return vec!["vswitchd answered the inventory with another reply".into()],
        Err(e) => return vec![e.message],
    };
    let mut errors = Vec::new();
    for call in reconcile::plan(state, &inv) {
        if let Err(e) = dp.call(&call) {
            tracing::error!(call = %call.call_name(), "reconcile: {}", e.message);
            errors.push(e.message);
        }
    }
    errors
}

fn parse_rules(rules: &[String], ports: &BTreeMap<String, u32>) -> Result<Vec<Rule>, ApiError> {
    let many = rules.len() > 1;
    rules
        .iter()
        .enumerate()
        .map(|(i, text)| {
            flowsyntax::parse_rule(text, ports as &dyn PortNames).map_err(|e| {
                if many {
                    rejected(format!("rule {}: {e}", i + 1))
                } else {
                    rejected(e.to_string())
                }
            })
        })
        .collect()
}

fn normalize_fdb(e: &StaticFdbEntry) -> Result<StaticFdbEntry, ApiError> {
    let mac = crate::api::parse_mac(&e.mac)
        .ok_or_else(|| rejected(format!("\"{}\" is not a MAC address", e.mac)))?;
    if mac[0] & 1 == 1 {
        return Err(rejected(format!(
            "{}: a static entry needs a unicast MAC",
            e.mac
        )));
    }
    if e.vlan > 4094 {
        return Err(rejected(format!("vlan {} is outside 0..=4094", e.vlan)));
    }
    if let Some(r) = &e.remote {
        r.parse::<std::net::Ipv4Addr>()
            .map_err(|_| rejected(format!("remote \"{r}\" is not an IPv4 address")))?;
    }
    Ok(StaticFdbEntry {
        mac: crate::api::format_mac(mac),
        ..e.clone()
    })
}

/// The desired state a config's topology seeds.
pub fn seed(cfg: &Config) -> Result<DesiredState, ApiError> {
    let mut s = DesiredState {
        pmd: crate::state::PmdSettings {
            cores: cfg.pmd.cores.clone(),
            idle: cfg.pmd.idle.clone(),
        },
        ..Default::default()
    };
    for b in &cfg.bridge {
        s.bridges.push(BridgeConfig::new(&b.name));
        for p in &b.port {
            let mut opts = p.clone();
            let name = opts.remove("name").unwrap_or_default();
            let spec = portspec::validate(&name, &opts).map_err(|e| rejected(e.to_string()))?;
            let ofport = s.free_ofport();
            s.bridges
                .last_mut()
                .expect("pushed above")
                .ports
                .push(DpPort { ofport, spec });
        }
    }
    Ok(s)
}

/// The desired state equivalent to what a datapath holds.
pub fn from_inventory(inv: &Inventory) -> DesiredState {
    DesiredState {
        bridges: inv
            .bridges
            .iter()
            .map(|b| BridgeConfig {
                name: b.name.clone(),
                ports: b.ports.clone(),
                rules: b.rules.clone(),
                groups: b.groups.clone(),
                fdb: Vec::new(),
            })
            .collect(),
        ..Default::default()
    }
}

impl Handler for Controld {
    fn hello(&self) -> HelloReply {
        HelloReply {
            api_version: API_VERSION,
            server: daemon::CONTROLD.into(),
            pid: std::process::id(),
            boot_id: self.boot_id,
        }
    }

    fn handle(&self, req: Request, _peer: Peer) -> Result<Reply, ApiError> {
        match &req {
            Request::Show => self.show(),
            Request::Status => Ok(Reply::Status(self.status())),
            r if r.is_datapath_read() => self.forward(r),
            Request::PmdRebalance => self.forward(&req),
            Request::DpInventory => self.forward(&req),
            r if r.call_name().starts_with("dp-") => Err(ApiError::new(
                ErrorKind::Unsupported,
                format!(
                    "{}: datapath calls go to vswitchd, not vswitch-controld",
                    r.call_name()
                ),
            )),
            r => self.change(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_bridge() -> DesiredState {
        let (s, _) = Controld::prepare(
            &DesiredState::default(),
            &Request::AddBridge {
                bridge: "br0".into(),
            },
        )
        .unwrap();
        s
    }

    fn apply(s: &DesiredState, req: Request) -> Result<(DesiredState, Vec<Request>), ApiError> {
        Controld::prepare(s, &req)
    }

    fn add_port(s: &DesiredState, name: &str) -> DesiredState {
        apply(
            s,
            Request::AddPort {
                bridge: "br0".into(),
                name: name.into(),
                options: BTreeMap::from([("type".to_owned(), "tap".to_owned())]),
            },
        )
        .unwrap()
        .0
    }

    #[test]
    fn unknown_bridge_and_duplicates_are_rejected_without_calls() {
        let s = state_with_bridge();
        let e = apply(
            &s,
            Request::AddFlows {
                bridge: "nope".into(),
                rules: vec!["actions=drop".into()],
            },
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Rejected);
        assert!(e.message.contains("nope"));
        let e = apply(
            &s,
            Request::AddBridge {
                bridge: "br0".into(),
            },
        )
        .unwrap_err();
        assert!(e.message.contains("already exists"));
    }

    #[test]
    fn ports_get_stable_numbers_and_names_are_unique() {
        let s = add_port(&add_port(&state_with_bridge(), "p1"), "p2");
        assert_eq!(s.port_numbers("br0")["p2"], 2);
        let (s2, calls) = apply(
            &s,
            Request::DelPort {
                bridge: "br0".into(),
                name: "p1".into(),
            },
        )
        .unwrap();
        assert_eq!(calls[0].call_name(), "dp-del-port");
        // p2 keeps its number after p1 is gone.
        assert_eq!(s2.port_numbers("br0")["p2"], 2);
        let e = apply(
            &s,
            Request::AddPort {
                bridge: "br0".into(),
                name: "p1".into(),
                options: BTreeMap::from([("type".to_owned(), "tap".to_owned())]),
            },
        )
        .unwrap_err();
        assert!(e.message.contains("already exists"));
    }

    #[test]
    fn add_flow_replaces_twin_and_bad_syntax_is_rejected() {
        let s = add_port(&state_with_bridge(), "p1");
        let (s, _) = apply(
            &s,
            Request::AddFlows {
                bridge: "br0".into(),
                rules: vec!["priority=10,icmp,actions=output:p1".into()],
            },
        )
        .unwrap();
        assert_eq!(s.bridges[0].rules.len(), 2);
        let (s, calls) = apply(
            &s,
            Request::AddFlows {
                bridge: "br0".into(),
                rules: vec!["priority=10,icmp,actions=drop".into()],
            },
        )
        .unwrap();
        assert_eq!(s.bridges[0].rules.len(), 2);
        assert!(s.bridges[0].rules.iter().any(|r| r.actions.is_empty()));
        assert_eq!(calls[0].call_name(), "dp-add-flows");
        let e = apply(
            &s,
            Request::AddFlows {
                bridge: "br0".into(),
                rules: vec!["actions=output:p1".into(), "priority=x,actions=drop".into()],
            },
        )
        .unwrap_err();
        assert!(e.message.starts_with("rule 2:"), "{}", e.message);
    }

    #[test]
    fn non_strict_del_flows_keeps_the_catch_all() {
        let s = state_with_bridge();
        let (s, _) = apply(
            &s,
            Request::AddFlows {
                bridge: "br0".into(),
                rules: vec![
                    "priority=10,icmp,actions=drop".into(),
                    "priority=20,icmp,nw_src=10.0.0.1,actions=drop".into(),
                    "priority=30,tcp,actions=drop".into(),
                ],
            },
        )
        .unwrap();
        let (s, _) = apply(
            &s,
            Request::DelFlows {
                bridge: "br0".into(),
                r#match: Some("icmp".into()),
                strict: false,
            },
        )
        .unwrap();
        let prios: Vec<u16> = s.bridges[0].rules.iter().map(|r| r.priority).collect();
        assert_eq!(prios, vec![0, 30]);
        // Strict needs priority and exact match.
        let (s, _) = apply(
            &s,
            Request::DelFlows {
                bridge: "br0".into(),
                r#match: Some("priority=30".into()),
                strict: true,
            },
        )
        .unwrap();
        assert_eq!(s.bridges[0].rules.len(), 2);
        let (s, _) = apply(
            &s,
            Request::DelFlows {
                bridge: "br0".into(),
                r#match: Some("priority=30,tcp".into()),
                strict: true,
            },
        )
        .unwrap();
        assert_eq!(s.bridges[0].rules.len(), 1);
    }

    #[test]
    fn replace_flows_swaps_the_whole_set() {
        let s = state_with_bridge();
        let (s, calls) = apply(
            &s,
            Request::ReplaceFlows {
                bridge: "br0".into(),
                rules: vec![
                    "priority=5,arp,actions=NORMAL".into(),
                    "priority=5,arp,actions=drop".into(),
                ],
            },
        )
        .unwrap();
        assert_eq!(s.bridges[0].rules.len(), 1);
        assert!(s.bridges[0].rules[0].actions.is_empty());
        match &calls[0] {
            Request::DpReplaceFlows { rules, .. } => assert_eq!(rules.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn set_port_vlan_only_does_not_reopen() {
        let s = add_port(&state_with_bridge(), "p1");
        let (_, calls) = apply(
            &s,
            Request::SetPort {
                bridge: "br0".into(),
                name: "p1".into(),
                options: BTreeMap::from([("vlan".to_owned(), "10".to_owned())]),
            },
        )
        .unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].call_name(), "dp-set-port-vlan");
        let (s2, calls) = apply(
            &s,
            Request::SetPort {
                bridge: "br0".into(),
                name: "p1".into(),
                options: BTreeMap::from([("mtu".to_owned(), "9000".to_owned())]),
            },
        )
        .unwrap();
        let names: Vec<String> = calls.iter().map(Request::call_name).collect();
        assert_eq!(names, ["dp-del-port", "dp-add-port"]);
        assert_eq!(s2.port_numbers("br0")["p1"], 1);
    }

    #[test]
    fn set_port_security_changes_the_live_port_and_survives_state_json() {
        let s = add_port(&state_with_bridge(), "p1");
        let opts = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let (s, calls) = apply(
            &s,
            Request::SetPort {
                bridge: "br0".into(),
                name: "p1".into(),
                options: opts(&[("allowed-ips", "10.0.0.2,fd00::2"), ("storm-pps", "100")]),
            },
        )
        .unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        match &calls[0] {
            Request::DpSetPortSecurity { name, options } => {
                assert_eq!(name, "p1");
                assert_eq!(
                    *options,
                    opts(&[("allowed-ips", "10.0.0.2,fd00::2"), ("storm-pps", "100")])
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        // Lifting one option sends the remaining set; a VLAN change with a
        // security change sends both, and neither re-opens the port.
        let (s, calls) = apply(
            &s,
            Request::SetPort {
                bridge: "br0".into(),
                name: "p1".into(),
                options: opts(&[("storm-pps", ""), ("vlan", "5"), ("max-macs", "3")]),
            },
        )
        .unwrap();
        let names: Vec<String> = calls.iter().map(Request::call_name).collect();
        assert_eq!(names, ["dp-set-port-vlan", "dp-set-port-security"]);
        let Request::DpSetPortSecurity { options, .. } = &calls[1] else {
            unreachable!()
        };
        assert_eq!(
            *options,
            opts(&[("allowed-ips", "10.0.0.2,fd00::2"), ("max-macs", "3")])
        );
        // Bad values are refused before anything is called.
        let e = apply(
            &s,
            Request::SetPort {
                bridge: "br0".into(),
                name: "p1".into(),
                options: opts(&[("allowed-macs", "ff:ff:ff:ff:ff:ff")]),
            },
        )
        .unwrap_err();
        assert!(e.message.contains("allowed-macs"), "{}", e.message);
        // state.json round trip keeps the policy.
        let dir = std::env::temp_dir().join(format!("vsw-sec-state-{}", std::process::id()));
        let store = StateStore::new(dir.join("state.json"));
        store.save(&s).unwrap();
        let back = match store.load().unwrap() {
            Loaded::Ok(b) => b,
            other => panic!("unexpected {other:?}"),
        };
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(back, s);
        let p = portspec::security_of(back.spec("p1").unwrap());
        assert_eq!(p.max_macs, Some(3));
        assert_eq!(p.storm_pps, None);
        assert_eq!(p.allowed_ips.map(|l| l.len()), Some(2));
    }

    #[test]
    fn static_fdb_entries_are_normalized_and_checked() {
        let s = add_port(&state_with_bridge(), "p1");
        let (s, _) = apply(
            &s,
            Request::FdbAdd {
                bridge: "br0".into(),
                entry: StaticFdbEntry {
                    mac: "02:AA:00:00:00:01".into(),
                    vlan: 0,
                    port: "p1".into(),
                    remote: None,
                },
            },
        )
        .unwrap();
        assert_eq!(s.bridges[0].fdb[0].mac, "02:aa:00:00:00:01");
        let e = apply(
            &s,
            Request::FdbAdd {
                bridge: "br0".into(),
                entry: StaticFdbEntry {
                    mac: "02:aa:00:00:00:01".into(),
                    vlan: 0,
                    port: "ghost".into(),
                    remote: None,
                },
            },
        )
        .unwrap_err();
        assert!(e.message.contains("ghost"));
        let (s, _) = apply(
            &s,
            Request::FdbDel {
                bridge: "br0".into(),
                mac: "02:aa:00:00:00:01".into(),
                vlan: 0,
            },
        )
        .unwrap();
        assert!(s.bridges[0].fdb.is_empty());
    }

    #[test]
    fn seed_builds_bridges_and_ports_from_config() {
        let mut text = crate::config::DEFAULT_CONFIG.to_owned();
        text.push_str(
            "[[bridge]]\nname = \"br0\"\n[[bridge.port]]\nname = \"c1\"\ntype = \"tap\"\n",
        );
        let cfg = Config::parse(&text, "t").unwrap();
        let s = seed(&cfg).unwrap();
        assert_eq!(s.bridges[0].ports[0].spec.name, "c1");
        assert_eq!(s.bridges[0].ports[0].ofport, 1);
    }
}

#[cfg(test)]
mod datapath_tests {
    //! controld against an in-process fake vswitchd: failures leave nothing
    //! behind, restarts are detected, expiries are collected.

    use super::*;
    use crate::api::{DpBridge, ExpiredReply};
    use crate::ipc::ServerSocket;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[derive(Default)]
    struct FakeDp {
        boot_id: u64,
        inv: Mutex<Inventory>,
        expired: Mutex<Vec<(String, WireRule)>>,
        calls: Mutex<Vec<String>>,
    }

    impl Handler for FakeDp {
        fn hello(&self) -> HelloReply {
            HelloReply {
                api_version: API_VERSION,
                server: "fake".into(),
                pid: 0,
                boot_id: self.boot_id,
            }
        }
        fn handle(&self, req: Request, _peer: Peer) -> Result<Reply, ApiError> {
            self.calls.lock().push(req.call_name());
            let mut inv = self.inv.lock();
            let bridge = |inv: &mut Inventory, b: &str| -> Result<usize, ApiError> {
                inv.bridges
                    .iter()
                    .position(|x| x.name == b)
                    .ok_or_else(|| rejected(format!("no bridge named \"{b}\"")))
            };
            match req {
                Request::DpInventory => {
                    let mut i = inv.clone();
                    i.boot_id = self.boot_id;
                    return Ok(Reply::Inventory(i));
                }
                Request::DpAddBridge { bridge } => inv.bridges.push(DpBridge {
                    name: bridge,
                    rules: vec![WireRule::from(&Rule::default_normal())],
                    ..Default::default()
                }),
                Request::DpDelBridge { bridge: b } => {
                    let i = bridge(&mut inv, &b)?;
                    inv.bridges.remove(i);
                }
                Request::DpAddPort {
                    bridge: b,
                    ofport,
                    spec,
                } => {
                    if spec.name == "bad" {
                        return Err(ApiError::failed("port \"bad\": TUNSETIFF failed"));
                    }
                    let i = bridge(&mut inv, &b)?;
                    inv.bridges[i].ports.push(DpPort { ofport, spec });
                }
                Request::DpDelPort { bridge: b, name } => {
                    let i = bridge(&mut inv, &b)?;
                    inv.bridges[i].ports.retain(|p| p.spec.name != name);
                }
                Request::DpAddFlows { bridge: b, rules } => {
                    let i = bridge(&mut inv, &b)?;
                    inv.bridges[i].rules.extend(rules);
                }
                Request::DpReplaceFlows {
                    bridge: b,
                    rules,
                    groups,
                } => {
                    let i = bridge(&mut inv, &b)?;
                    inv.bridges[i].rules = rules;
                    inv.bridges[i].groups = groups;
                }
                Request::DpTakeExpired => {
                    return Ok(Reply::Expired(ExpiredReply {
                        rules: std::mem::take(&mut *self.expired.lock()),
                    }))
                }
                _ => {}
            }
            Ok(Reply::Done)
        }
    }

    struct Env {
        _dir: crate::ipc::tests::tempdir::Dir,
        run: RunDir,
        stop: Arc<AtomicBool>,
        server: Option<std::thread::JoinHandle<()>>,
    }

    impl Env {
        fn new(tag: &str) -> Env {
            let dir = crate::ipc::tests::tempdir::Dir::new(tag);
            let run = RunDir::resolve(Some(dir.path()));
            Env {
                _dir: dir,
                run,
                stop: Arc::new(AtomicBool::new(false)),
                server: None,
            }
        }

        fn serve(&mut self, dp: Arc<FakeDp>) {
            self.halt();
            self.stop = Arc::new(AtomicBool::new(false));
            let sock = ServerSocket::bind(&self.run.vswitchd_socket()).unwrap();
            let stop = self.stop.clone();
            self.server = Some(std::thread::spawn(move || {
                sock.serve(dp, stop).unwrap();
            }));
        }

        fn halt(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(h) = self.server.take() {
                h.join().unwrap();
            }
        }

        fn controld(&self) -> Controld {
            Controld::new(self.run.clone(), &Config::embedded().unwrap()).unwrap()
        }
    }

    impl Drop for Env {
        fn drop(&mut self) {
            self.halt();
        }
    }

    use std::sync::atomic::Ordering;

    /// The fake vswitchd refuses datapath changes from a uid other than
    /// 0 (SO_PEERCRED of this very process): such tests need root.
    fn as_root(test: &str) -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        eprintln!("SKIP {test}: needs root (the fake vswitchd checks SO_PEERCRED)");
        false
    }

    fn root() -> Peer {
        Peer {
            uid: 0,
            gid: 0,
            pid: 1,
        }
    }

    fn tap(name: &str) -> Request {
        Request::AddPort {
            bridge: "br0".into(),
            name: name.into(),
            options: BTreeMap::from([("type".to_owned(), "tap".to_owned())]),
        }
    }

    #[test]
    fn datapath_failure_changes_nothing() {
        if !as_root("datapath_failure_changes_nothing") {
            return;
        }
        let mut env = Env::new("cd-fail");
        let dp = Arc::new(FakeDp {
            boot_id: 7,
            ..Default::default()
        });
        env.serve(dp.clone());
        let c = env.controld();
        c.handle(
            Request::AddBridge {
                bridge: "br0".into(),
            },
            root(),
        )
        .unwrap();
        let before = std::fs::read(env.run.state_file()).unwrap();
        let e = c.handle(tap("bad"), root()).unwrap_err();
        assert!(e.message.contains("TUNSETIFF"), "{}", e.message);
        assert_eq!(std::fs::read(env.run.state_file()).unwrap(), before);
        assert!(c.core.lock().state.find_port("bad").is_none());
        // The next port still gets number 1: nothing was reserved.
        c.handle(tap("good"), root()).unwrap();
        assert_eq!(c.core.lock().state.port_numbers("br0")["good"], 1);
    }

    #[test]
    fn unreachable_datapath_is_unavailable_and_changes_nothing() {
        let env = Env::new("cd-down");
        let c = env.controld();
        let e = c
            .handle(
                Request::AddBridge {
                    bridge: "br0".into(),
                },
                root(),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(c.core.lock().state.bridges.is_empty());
        assert!(!c.in_sync());
    }

    #[test]
    fn persist_failure_rolls_the_datapath_back() {
        if !as_root("persist_failure_rolls_the_datapath_back") {
            return;
        }
        let mut env = Env::new("cd-persist");
        let dp = Arc::new(FakeDp {
            boot_id: 7,
            ..Default::default()
        });
        env.serve(dp.clone());
        let c = env.controld();
        // A directory where the temporary state file must go.
        let tmp = env
            .run
            .dir()
            .join(format!(".state.json.tmp-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("x")).unwrap();
        let e = c
            .handle(
                Request::AddBridge {
                    bridge: "br0".into(),
                },
                root(),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Failed);
        assert!(e.message.contains("not applied"), "{}", e.message);
        assert!(dp.inv.lock().bridges.is_empty(), "datapath rolled back");
        assert!(c.core.lock().state.bridges.is_empty());
    }

    #[test]
    fn restarted_datapath_gets_everything_again_and_restart_of_controld_is_a_diff() {
        if !as_root("restarted_datapath_gets_everything_again_and_restart_of_controld_is_a_diff") {
            return;
        }
        let mut env = Env::new("cd-restart");
        let dp1 = Arc::new(FakeDp {
            boot_id: 1,
            ..Default::default()
        });
        env.serve(dp1.clone());
        let c = env.controld();
        c.handle(
            Request::AddBridge {
                bridge: "br0".into(),
            },
            root(),
        )
        .unwrap();
        c.handle(tap("p1"), root()).unwrap();
        c.handle(
            Request::AddFlows {
                bridge: "br0".into(),
                rules: vec!["priority=5,in_port=p1,actions=drop".into()],
            },
            root(),
        )
        .unwrap();
        assert!(c.in_sync());

        // A new vswitchd (new boot id, empty): the next tick pushes all.
        let dp2 = Arc::new(FakeDp {
            boot_id: 2,
            ..Default::default()
        });
        env.serve(dp2.clone());
        c.tick();
        let inv = dp2.inv.lock().clone();
        assert_eq!(inv.bridges.len(), 1);
        assert_eq!(inv.bridges[0].ports.len(), 1);
        assert_eq!(inv.bridges[0].rules.len(), 2);
        assert!(c.in_sync());

        // A new controld on an in-sync datapath sends no changes.
        dp2.calls.lock().clear();
        let c2 = env.controld();
        assert!(c2.in_sync());
        let calls = dp2.calls.lock().clone();
        assert!(
            calls
                .iter()
                .all(|c| c == "dp-inventory" || c == "dp-take-expired"),
            "{calls:?}"
        );
    }

    #[test]
    fn expired_rules_leave_the_desired_state() {
        if !as_root("expired_rules_leave_the_desired_state") {
            return;
        }
        let mut env = Env::new("cd-expire");
        let dp = Arc::new(FakeDp {
            boot_id: 3,
            ..Default::default()
        });
        env.serve(dp.clone());
        let c = env.controld();
        c.handle(
            Request::AddBridge {
                bridge: "br0".into(),
            },
            root(),
        )
        .unwrap();
        c.handle(
            Request::AddFlows {
                bridge: "br0".into(),
                rules: vec!["priority=5,idle_timeout=1,arp,actions=drop".into()],
            },
            root(),
        )
        .unwrap();
        let rule = c.core.lock().state.bridges[0].rules[1].clone();
        assert_eq!(rule.idle_timeout, 1);
        dp.expired.lock().push(("br0".into(), rule));
        c.tick();
        assert_eq!(c.core.lock().state.bridges[0].rules.len(), 1);
        let text = std::fs::read_to_string(env.run.state_file()).unwrap();
        assert!(!text.contains("\"idle_timeout\":1"), "persisted without it");
    }

    #[test]
    fn expiry_that_cannot_be_persisted_is_retried_and_not_resurrected() {
        if !as_root("expiry_that_cannot_be_persisted_is_retried_and_not_resurrected") {
            return;
        }
        let mut env = Env::new("cd-expire-full");
        let dp = Arc::new(FakeDp {
            boot_id: 4,
            ..Default::default()
        });
        env.serve(dp.clone());
        let c = env.controld();
        for req in [
            Request::AddBridge {
                bridge: "br0".into(),
            },
            Request::AddFlows {
                bridge: "br0".into(),
                rules: vec!["priority=5,idle_timeout=1,arp,actions=drop".into()],
            },
        ] {
            c.handle(req, root()).unwrap();
        }
        let rule = c.core.lock().state.bridges[0].rules[1].clone();
        let with_rule = std::fs::read(env.run.state_file()).unwrap();
        // Saving fails: a directory where the temporary file must go.
        let block = env
            .run
            .dir()
            .join(format!(".state.json.tmp-{}", std::process::id()));
        std::fs::create_dir_all(block.join("x")).unwrap();
        dp.expired.lock().push(("br0".into(), rule));
        c.tick();
        // Memory follows the datapath at once; the file is untouched.
        assert_eq!(c.core.lock().state.bridges[0].rules.len(), 1);
        assert_eq!(std::fs::read(env.run.state_file()).unwrap(), with_rule);
        c.tick();
        assert_eq!(std::fs::read(env.run.state_file()).unwrap(), with_rule);
        // Space back: the next tick writes it, with no new expiry.
        std::fs::remove_dir_all(&block).unwrap();
        c.tick();
        let text = std::fs::read_to_string(env.run.state_file()).unwrap();
        assert!(!text.contains("\"idle_timeout\":1"), "persisted on retry");
        assert!(!c.core.lock().unsaved);
    }
}
