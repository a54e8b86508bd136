//! The in-process switch: bridges, ports, rules and PMD threads behind one
//! API. `vswitchd` is a thin shell around it; tests and benches drive it
//! directly (with no PMD threads, [`Switch::poll`] runs one iteration in
//! the caller's thread, deterministically).
//!
//! Every change is made on the control side under one mutex, then published
//! as a new immutable [`Snapshot`]; PMD threads pick it up between bursts.

mod snapshot;

pub use snapshot::{BridgeState, PortEntry, Snapshot};

use crate::classifier::{EmcStats, MegaflowStats};
use crate::drop::DropCounters;
use crate::flow::{mac_to_u64, FlowKey, FlowMask, PortNo};
use crate::packet::PacketPool;
use crate::pipeline::{
    translate, Action, BridgePort, BridgeView, DpAction, Fdb, FdbDest, FdbEntryInfo, FdbStats,
    Group, GroupId, InstalledRule, Match, Pipeline, Rule, RuleStats, TableId, Translation,
    VlanMode, DEFAULT_AGING_SECS, DEFAULT_FDB_MAX, MAX_RULES, MAX_TABLES,
};
use crate::pmd::{IdleMode, Pmd, PmdConfig, PmdHandle, PmdStats, PmdThreadConfig};
use crate::port::capture::CaptureSink;
use crate::port::{LinkState, Port, PortKind, PortStats};
use crate::security::PortSecurity;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// Highest port number (as OpenFlow's OFPP_MAX).
pub const MAX_PORT_NO: PortNo = 0xff00;

/// How often the maintenance loop runs [`Switch::check_ports`] between the
/// once-a-second [`Switch::run_timers`].
pub const PORT_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Settings of a switch.
#[derive(Clone, Debug)]
pub struct SwitchConfig {
    /// Cores to pin one PMD thread each to. Empty: no threads; the caller
    /// drives forwarding with [`Switch::poll`].
    pub pmd_cores: Vec<usize>,
    /// Busy-poll, or sleep on the ports' fds when idle.
    pub idle: IdleMode,
    /// FDB entries per bridge.
    pub fdb_max: usize,
    /// FDB aging time.
    pub fdb_aging_secs: u32,
    /// Cache sizes.
    pub pmd: PmdConfig,
    /// Buffers per PMD: (standard, jumbo, gso).
    pub pool_buffers: (usize, usize, usize),
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            pmd_cores: Vec::new(),
            idle: IdleMode::Adaptive,
            fdb_max: DEFAULT_FDB_MAX,
            fdb_aging_secs: DEFAULT_AGING_SECS,
            pmd: PmdConfig::default(),
            pool_buffers: (4096, 256, 256),
        }
    }
}

/// Errors of switch configuration calls.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// `add_bridge` with a taken name.
    #[error("bridge \"{0}\" already exists")]
    BridgeExists(String),
    /// Unknown bridge.
    #[error("no bridge named \"{0}\"")]
    NoSuchBridge(String),
    /// `add_port` with a taken name.
    #[error("port \"{0}\" already exists")]
    PortExists(String),
    /// `add_port` with a taken number.
    #[error("port number {0} is already in use")]
    PortNumberInUse(PortNo),
    /// Port number 0 or above [`MAX_PORT_NO`].
    #[error("port number {0} is out of range 1..={MAX_PORT_NO}")]
    BadPortNumber(PortNo),
    /// Unknown port.
    #[error("no port named \"{0}\"")]
    NoSuchPort(String),
    /// Port exists on another bridge.
    #[error("port \"{port}\" is on bridge \"{actual}\", not \"{bridge}\"")]
    WrongBridge {
        /// Port name.
        port: String,
        /// Bridge named by the caller.
        bridge: String,
        /// Bridge the port is on.
        actual: String,
    },
    /// A rule that cannot be installed.
    #[error("bridge \"{bridge}\": invalid rule: {reason}")]
    BadRule {
        /// Bridge.
        bridge: String,
        /// Why.
        reason: String,
    },
    /// More rules than [`MAX_RULES`].
    #[error("bridge \"{bridge}\": {count} rules exceed the limit of {MAX_RULES}")]
    TooManyRules {
        /// Bridge.
        bridge: String,
        /// Rules requested.
        count: usize,
    },
    /// The FDB is full.
    #[error("bridge \"{0}\": forwarding table is full")]
    FdbFull(String),
    /// PMD thread setup failed.
    #[error("PMD thread for core {core}: {reason}")]
    Pmd {
        /// Core.
        core: usize,
        /// Why.
        reason: String,
    },
}

/// A rule with its counters, as `dump-flows` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEntry {
    /// The rule.
    pub rule: Rule,
    /// Packets that hit it.
    pub n_packets: u64,
    /// Bytes that hit it.
    pub n_bytes: u64,
    /// Milliseconds since it was installed.
    pub duration_ms: u64,
    /// Milliseconds since its last hit (or installation).
    pub idle_ms: u64,
}

/// Non-strict or strict selection of rules for `del-flows`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// Only this table (None: all tables).
    pub table: Option<TableId>,
    /// Rules whose match is equal to or narrower than this one (non-strict),
    /// or exactly this one (strict).
    pub r#match: Match,
    /// Strict: also the priority must be equal.
    pub strict_priority: Option<u16>,
}

impl FlowFilter {
    fn selects(&self, r: &Rule) -> bool {
        if self.table.is_some_and(|t| t != r.table) {
            return false;
        }
        match self.strict_priority {
            Some(p) => r.priority == p && r.r#match == self.r#match,
            None => r.r#match.is_within(&self.r#match),
        }
    }
}

/// A port as `show` and `stats ports` report it.
#[derive(Clone, Debug)]
pub struct PortInfo {
    /// Number.
    pub no: PortNo,
    /// Name.
    pub name: String,
    /// Bridge name.
    pub bridge: String,
    /// Backend kind.
    pub kind: PortKind,
    /// Link state.
    pub link: LinkState,
    /// MAC.
    pub mac: [u8; 6],
    /// MTU.
    pub mtu: u32,
    /// VLAN membership.
    pub vlan: VlanMode,
    /// Counters.
    pub stats: PortStats,
    /// Rx queues.
    pub rx_queues: usize,
    /// Port security policy (default: none).
    pub security: PortSecurity,
    /// Learned FDB entries on the port (what `max-macs` limits).
    pub learned_macs: usize,
    /// Tunnel settings and per-VTEP counters (tunnel ports only).
    pub tunnel: Option<crate::port::TunnelInfo>,
}

/// A PMD as `show` and `stats pmd` report it.
#[derive(Clone, Debug)]
pub struct PmdInfo {
    /// Index.
    pub index: usize,
    /// Pinned core (None: driven by the caller).
    pub core: Option<usize>,
    /// (port name, queue) pairs it polls.
    pub rxqs: Vec<(String, usize)>,
    /// Counters.
    pub stats: PmdStats,
    /// EMC counters.
    pub emc: EmcStats,
    /// Megaflow counters.
    pub megaflow: MegaflowStats,
}

/// One megaflow, as `dump-cache` shows it.
#[derive(Clone, Debug)]
pub struct CacheEntryInfo {
    /// PMD holding it.
    pub pmd: usize,
    /// Masked key.
    pub key: FlowKey,
    /// Mask.
    pub mask: FlowMask,
    /// Actions.
    pub actions: Vec<DpAction>,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Milliseconds since last use.
    pub idle_ms: u64,
}

struct BridgeCtl {
    name: String,
    rules: Vec<Arc<InstalledRule>>,
    groups: BTreeMap<GroupId, Group>,
    fdb: Arc<Fdb>,
    pipeline: Arc<Pipeline>,
}

impl BridgeCtl {
    fn recompile(&mut self) {
        self.pipeline = Arc::new(Pipeline::build(
            self.rules.clone(),
            self.groups.values().cloned(),
        ));
    }
}

struct PortCtl {
    name: String,
    bridge: String,
    port: Arc<dyn Port>,
    vlan: VlanMode,
    capture: Option<Arc<CaptureSink>>,
    /// Port security (None when the policy is the permissive default).
    security: Option<Arc<PortSecurity>>,
}

struct Ctl {
    bridges: Vec<BridgeCtl>,
    ports: BTreeMap<PortNo, PortCtl>,
    /// Which PMD polls each (port, rx queue); kept across changes so a new
    /// port does not reshuffle the others.
    rx_assign: BTreeMap<(PortNo, usize), usize>,
    /// Port rx counters at the last rebalance (load since then decides).
    rx_baseline: BTreeMap<PortNo, u64>,
    seq: u64,
    generation: u64,
    expired: Vec<(String, Rule)>,
}

/// The switch.
pub struct Switch {
    cfg: SwitchConfig,
    ctl: Mutex<Ctl>,
    snap: Arc<ArcSwap<Snapshot>>,
    pmds: Vec<Arc<Mutex<Pmd>>>,
    threads: Mutex<Vec<PmdHandle>>,
    epoch: Instant,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch").field("cfg", &self.cfg).finish()
    }
}

fn validate_rule(bridge: &str, r: &Rule) -> Result<(), SwitchError> {
    let bad = |reason: String| SwitchError::BadRule {
        bridge: bridge.to_owned(),
        reason,
    };
    if usize::from(r.table) >= MAX_TABLES {
        return Err(bad(format!("table {} out of range", r.table)));
    }
    for (i, a) in r.actions.iter().enumerate() {
        match a {
            Action::GotoTable(t) if *t <= r.table => {
                return Err(bad(format!(
                    "goto_table:{t} in table {} must go to a later table",
                    r.table
                )))
            }
            Action::GotoTable(_) if i + 1 != r.actions.len() => {
                return Err(bad("goto_table must be the last action".into()))
            }
            Action::Resubmit(t) | Action::GotoTable(t) if usize::from(*t) >= MAX_TABLES => {
                return Err(bad(format!("table {t} out of range")))
            }
            Action::SetVlanVid(v) if *v > 4095 => {
                return Err(bad(format!("VLAN id {v} out of range 0..=4095")))
            }
            Action::Output(p) if *p == 0 || *p > MAX_PORT_NO => {
                return Err(bad(format!("output port {p} out of range")))
            }
            _ => {}
        }
    }
    Ok(())
}

impl Switch {
    /// Creates a switch and starts its PMD threads.
    pub fn new(cfg: SwitchConfig) -> Result<Arc<Switch>, SwitchError> {
        let n_pmds = cfg.pmd_cores.len().max(1);
        let (s, j, g) = cfg.pool_buffers;
        let pmds: Vec<Arc<Mutex<Pmd>>> = (0..n_pmds)
            .map(|i| Arc::new(Mutex::new(Pmd::new(i, cfg.pmd, PacketPool::new(s, j, g)))))
            .collect();
        let sw = Arc::new(Switch {
            ctl: Mutex::new(Ctl {
                bridges: Vec::new(),
                ports: BTreeMap::new(),
                rx_assign: BTreeMap::new(),
                rx_baseline: BTreeMap::new(),
                seq: 0,
                generation: 0,
                expired: Vec::new(),
            }),
            snap: Arc::new(ArcSwap::from_pointee(Snapshot {
                rxqs: vec![Vec::new(); n_pmds],
                ..Snapshot::default()
            })),
            pmds,
            threads: Mutex::new(Vec::new()),
            epoch: Instant::now(),
            cfg,
        });
        let mut threads = Vec::new();
        for (i, &core) in sw.cfg.pmd_cores.iter().enumerate() {
            let handle = PmdHandle::spawn(PmdThreadConfig {
                index: i,
                core,
                idle: sw.cfg.idle,
                pmd: sw.pmds[i].clone(),
                snap: sw.snap.clone(),
                epoch: sw.epoch,
            })
            .map_err(|e| SwitchError::Pmd {
                core,
                reason: e.to_string(),
            })?;
            threads.push(handle);
        }
        *sw.threads.lock() = threads;
        Ok(sw)
    }

    /// Milliseconds since the switch started (the datapath clock).
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.load_full()
    }

    fn publish(&self, ctl: &mut Ctl) {
        ctl.generation += 1;
        let max_no = ctl.ports.keys().next_back().copied().unwrap_or(0) as usize;
        let mut ports: Vec<Option<PortEntry>> = (0..=max_no).map(|_| None).collect();
        let mut bridges = Vec::with_capacity(ctl.bridges.len());
        for (bi, b) in ctl.bridges.iter().enumerate() {
            let mut bports = Vec::new();
            for (no, p) in &ctl.ports {
                if p.bridge == b.name {
                    bports.push(BridgePort {
                        no: *no,
                        vlan: p.vlan.clone(),
                        is_tunnel: p.port.kind() == PortKind::Vxlan,
                        security: p.security.clone(),
                    });
                    ports[*no as usize] = Some(PortEntry {
                        no: *no,
                        name: p.name.clone(),
                        port: p.port.clone(),
                        bridge: bi,
                        vlan: p.vlan.clone(),
                        capture: p.capture.clone(),
                    });
                }
            }
            bridges.push(Arc::new(BridgeState {
                name: b.name.clone(),
                pipeline: b.pipeline.clone(),
                fdb: b.fdb.clone(),
                ports: bports,
            }));
        }
        let n_pmds = self.pmds.len();
        let live: std::collections::BTreeSet<(PortNo, usize)> = ctl
            .ports
            .iter()
            .flat_map(|(no, p)| (0..p.port.rx_queues()).map(move |q| (*no, q)))
            .collect();
        ctl.rx_assign
            .retain(|k, pmd| live.contains(k) && *pmd < n_pmds);
        let mut rxqs = vec![Vec::new(); n_pmds];
        for (k, pmd) in &ctl.rx_assign {
            rxqs[*pmd].push(*k);
        }
        // New queues go to the PMD polling the fewest queues.
        for k in live {
            if ctl.rx_assign.contains_key(&k) {
                continue;
            }
            let pmd = (0..n_pmds)
                .min_by_key(|i| rxqs[*i].len())
                .expect("at least one PMD");
            rxqs[pmd].push(k);
            ctl.rx_assign.insert(k, pmd);
        }
        self.snap.store(Arc::new(Snapshot {
            generation: ctl.generation,
            ports,
            bridges,
            rxqs,
        }));
        for t in self.threads.lock().iter() {
            t.wake();
        }
    }

    fn bridge_mut<'a>(ctl: &'a mut Ctl, name: &str) -> Result<&'a mut BridgeCtl, SwitchError> {
        ctl.bridges
            .iter_mut()
            .find(|b| b.name == name)
            .ok_or_else(|| SwitchError::NoSuchBridge(name.to_owned()))
    }

    fn bridge<'a>(ctl: &'a Ctl, name: &str) -> Result<&'a BridgeCtl, SwitchError> {
        ctl.bridges
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| SwitchError::NoSuchBridge(name.to_owned()))
    }

    /// Creates a bridge holding one rule, `table=0,priority=0,actions=NORMAL`.
    pub fn add_bridge(&self, name: &str) -> Result<(), SwitchError> {
        let mut ctl = self.ctl.lock();
        if ctl.bridges.iter().any(|b| b.name == name) {
            return Err(SwitchError::BridgeExists(name.to_owned()));
        }
        ctl.seq += 1;
        let rule = Arc::new(InstalledRule {
            rule: Rule::default_normal(),
            seq: ctl.seq,
            stats: RuleStats::new(self.now_ms()),
        });
        let mut b = BridgeCtl {
            name: name.to_owned(),
            rules: vec![rule],
            groups: BTreeMap::new(),
            fdb: Arc::new(Fdb::new(self.cfg.fdb_max, self.cfg.fdb_aging_secs)),
            pipeline: Arc::new(Pipeline::default()),
        };
        b.recompile();
        ctl.bridges.push(b);
        self.publish(&mut ctl);
        Ok(())
    }

    /// Deletes a bridge and its ports; returns the ports' backends so the
    /// caller can destroy them.
    pub fn del_bridge(&self, name: &str) -> Result<Vec<Arc<dyn Port>>, SwitchError> {
        let mut ctl = self.ctl.lock();
        let idx = ctl
            .bridges
            .iter()
            .position(|b| b.name == name)
            .ok_or_else(|| SwitchError::NoSuchBridge(name.to_owned()))?;
        ctl.bridges.remove(idx);
        let nos: Vec<PortNo> = ctl
            .ports
            .iter()
            .filter(|(_, p)| p.bridge == name)
            .map(|(n, _)| *n)
            .collect();
        let removed = nos
            .iter()
            .filter_map(|n| ctl.ports.remove(n))
            .map(|p| p.port)
            .collect();
        self.publish(&mut ctl);
        Ok(removed)
    }

    /// Bridge names, in creation order.
    pub fn bridges(&self) -> Vec<String> {
        self.ctl
            .lock()
            .bridges
            .iter()
            .map(|b| b.name.clone())
            .collect()
    }

    /// Adds a port to a bridge under a number unique in the switch.
    pub fn add_port(
        &self,
        bridge: &str,
        no: PortNo,
        port: Arc<dyn Port>,
        vlan: VlanMode,
    ) -> Result<(), SwitchError> {
        let mut ctl = self.ctl.lock();
        Self::bridge(&ctl, bridge)?;
        if no == 0 || no > MAX_PORT_NO {
            return Err(SwitchError::BadPortNumber(no));
        }
        if ctl.ports.contains_key(&no) {
            return Err(SwitchError::PortNumberInUse(no));
        }
        let name = port.name().to_owned();
        if ctl.ports.values().any(|p| p.name == name) {
            return Err(SwitchError::PortExists(name));
        }
        ctl.ports.insert(
            no,
            PortCtl {
                name,
                bridge: bridge.to_owned(),
                port,
                vlan,
                capture: None,
                security: None,
            },
        );
        self.publish(&mut ctl);
        Ok(())
    }

    /// Sets a port's security policy (anti-spoofing lists, `max-macs`,
    /// `storm-pps`); the default policy removes every restriction. The
    /// port's learned FDB entries are flushed so that the new lists and
    /// limit apply to every MAC from now on, and the caches are flushed by
    /// the new generation.
    pub fn set_port_security(&self, name: &str, security: PortSecurity) -> Result<(), SwitchError> {
        let mut ctl = self.ctl.lock();
        let no = Self::port_no(&ctl, name)?;
        let bridge = ctl.ports[&no].bridge.clone();
        ctl.ports.get_mut(&no).expect("found above").security =
            security.is_active().then(|| Arc::new(security));
        if let Ok(b) = Self::bridge(&ctl, &bridge) {
            b.fdb.flush_port(no);
        }
        self.publish(&mut ctl);
        Ok(())
    }

    fn port_no(ctl: &Ctl, name: &str) -> Result<PortNo, SwitchError> {
        ctl.ports
            .iter()
            .find(|(_, p)| p.name == name)
            .map(|(n, _)| *n)
            .ok_or_else(|| SwitchError::NoSuchPort(name.to_owned()))
    }

    /// Removes a port (by name) from its bridge and returns its backend.
    /// With `bridge`, the port must be on that bridge.
    pub fn del_port(&self, bridge: Option<&str>, name: &str) -> Result<Arc<dyn Port>, SwitchError> {
        let mut ctl = self.ctl.lock();
        let no = Self::port_no(&ctl, name)?;
        let actual = ctl.ports[&no].bridge.clone();
        if let Some(b) = bridge {
            if b != actual {
                return Err(SwitchError::WrongBridge {
                    port: name.to_owned(),
                    bridge: b.to_owned(),
                    actual,
                });
            }
        }
        let p = ctl.ports.remove(&no).expect("found above");
        if let Ok(b) = Self::bridge(&ctl, &actual) {
            b.fdb.flush_port(no);
        }
        self.publish(&mut ctl);
        Ok(p.port)
    }

    /// Changes a port's VLAN membership.
    pub fn set_port_vlan(&self, name: &str, vlan: VlanMode) -> Result<(), SwitchError> {
        let mut ctl = self.ctl.lock();
        let no = Self::port_no(&ctl, name)?;
        let bridge = ctl.ports[&no].bridge.clone();
        ctl.ports.get_mut(&no).expect("found above").vlan = vlan;
        if let Ok(b) = Self::bridge(&ctl, &bridge) {
            b.fdb.flush_port(no);
        }
        self.publish(&mut ctl);
        Ok(())
    }

    /// Starts capturing a port's traffic (both directions) into a new sink
    /// of at most `queue` unread frames, stopping after `count` frames.
    /// A capture already running on the port is replaced.
    pub fn start_capture(
        &self,
        port: &str,
        queue: usize,
        count: u64,
    ) -> Result<Arc<CaptureSink>, SwitchError> {
        let mut ctl = self.ctl.lock();
        let no = Self::port_no(&ctl, port)?;
        let sink = Arc::new(CaptureSink::new(queue, count));
        ctl.ports.get_mut(&no).expect("found above").capture = Some(sink.clone());
        self.publish(&mut ctl);
        Ok(sink)
    }

    /// Stops capturing on a port (no-op when no capture runs).
    pub fn stop_capture(&self, port: &str) -> Result<(), SwitchError> {
        let mut ctl = self.ctl.lock();
        let no = Self::port_no(&ctl, port)?;
        if ctl
            .ports
            .get_mut(&no)
            .expect("found above")
            .capture
            .take()
            .is_some()
        {
            self.publish(&mut ctl);
        }
        Ok(())
    }

    /// Port names and numbers of a bridge (for flow syntax resolution).
    pub fn port_numbers(&self, bridge: &str) -> Result<BTreeMap<String, PortNo>, SwitchError> {
        let ctl = self.ctl.lock();
        Self::bridge(&ctl, bridge)?;
        Ok(ctl
            .ports
            .iter()
            .filter(|(_, p)| p.bridge == bridge)
            .map(|(n, p)| (p.name.clone(), *n))
            .collect())
    }

    /// Adds a rule; one with the same table, priority and match is replaced.
    pub fn add_flow(&self, bridge: &str, rule: Rule) -> Result<(), SwitchError> {
        self.add_flows(bridge, vec![rule])
    }

    /// Adds several rules in one generation (each replacing its twin).
    pub fn add_flows(&self, bridge: &str, rules: Vec<Rule>) -> Result<(), SwitchError> {
        for r in &rules {
            validate_rule(bridge, r)?;
        }
        let now = self.now_ms();
        let mut ctl = self.ctl.lock();
        let mut seq = ctl.seq;
        let b = Self::bridge_mut(&mut ctl, bridge)?;
        let mut index: std::collections::HashMap<(TableId, u16, Match), usize> = b
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.rule.table, r.rule.priority, r.rule.r#match), i))
            .collect();
        let mut slots: Vec<Option<Arc<InstalledRule>>> =
            b.rules.iter().cloned().map(Some).collect();
        for r in rules {
            seq += 1;
            let key = (r.table, r.priority, r.r#match);
            let new = Arc::new(InstalledRule {
                rule: r,
                seq,
                stats: RuleStats::new(now),
            });
            if let Some(&i) = index.get(&key) {
                slots[i] = None;
            }
            index.insert(key, slots.len());
            slots.push(Some(new));
        }
        let kept: Vec<Arc<InstalledRule>> = slots.into_iter().flatten().collect();
        if kept.len() > MAX_RULES {
            // Refused before anything changed.
            return Err(SwitchError::TooManyRules {
                bridge: bridge.to_owned(),
                count: kept.len(),
            });
        }
        b.rules = kept;
        b.recompile();
        ctl.seq = seq;
        self.publish(&mut ctl);
        Ok(())
    }

    /// Deletes the rules a filter selects; returns how many.
    pub fn del_flows(&self, bridge: &str, filter: &FlowFilter) -> Result<usize, SwitchError> {
        let mut ctl = self.ctl.lock();
        let b = Self::bridge_mut(&mut ctl, bridge)?;
        let before = b.rules.len();
        b.rules.retain(|r| !filter.selects(&r.rule));
        let n = before - b.rules.len();
        if n > 0 {
            b.recompile();
            self.publish(&mut ctl);
        }
        Ok(n)
    }

    /// Replaces all rules (and, with `groups`, all groups) at once: packets
    /// see the old set or the new one, never a mix. Rules identical to an
    /// installed one keep their counters.
    pub fn replace_flows(
        &self,
        bridge: &str,
        rules: Vec<Rule>,
        groups: Option<Vec<Group>>,
    ) -> Result<(), SwitchError> {
        if rules.len() > MAX_RULES {
            return Err(SwitchError::TooManyRules {
                bridge: bridge.to_owned(),
                count: rules.len(),
            });
        }
        for r in &rules {
            validate_rule(bridge, r)?;
        }
        let now = self.now_ms();
        let mut ctl = self.ctl.lock();
        let mut seq = ctl.seq;
        let b = Self::bridge_mut(&mut ctl, bridge)?;
        let mut old: std::collections::HashMap<&Rule, &Arc<InstalledRule>> =
            b.rules.iter().map(|r| (&r.rule, r)).collect();
        let mut new_rules = Vec::with_capacity(rules.len());
        let mut seen = std::collections::HashMap::new();
        for r in rules {
            let key = (r.table, r.priority, r.r#match);
            let installed = match old.remove(&r) {
                Some(existing) => existing.clone(),
                None => {
                    seq += 1;
                    Arc::new(InstalledRule {
                        rule: r,
                        seq,
                        stats: RuleStats::new(now),
                    })
                }
            };
            // A later duplicate (same table, priority, match) replaces an
            // earlier one, as add-flow would.
            if let Some(i) = seen.insert(key, new_rules.len()) {
                new_rules[i] = None;
            }
            new_rules.push(Some(installed));
        }
        drop(old);
        b.rules = new_rules.into_iter().flatten().collect();
        if let Some(groups) = groups {
            b.groups = groups.into_iter().map(|g| (g.id, g)).collect();
        }
        b.recompile();
        ctl.seq = seq;
        self.publish(&mut ctl);
        Ok(())
    }

    /// Adds or replaces a group.
    pub fn add_group(&self, bridge: &str, group: Group) -> Result<(), SwitchError> {
        let mut ctl = self.ctl.lock();
        let b = Self::bridge_mut(&mut ctl, bridge)?;
        b.groups.insert(group.id, group);
        b.recompile();
        self.publish(&mut ctl);
        Ok(())
    }

    /// Deletes every group (or one).
    pub fn del_groups(&self, bridge: &str, id: Option<GroupId>) -> Result<usize, SwitchError> {
        let mut ctl = self.ctl.lock();
        let b = Self::bridge_mut(&mut ctl, bridge)?;
        let n = match id {
            Some(id) => usize::from(b.groups.remove(&id).is_some()),
            None => std::mem::take(&mut b.groups).len(),
        };
        b.recompile();
        self.publish(&mut ctl);
        Ok(n)
    }

    /// The groups of a bridge.
    pub fn dump_groups(&self, bridge: &str) -> Result<Vec<Group>, SwitchError> {
        let ctl = self.ctl.lock();
        Ok(Self::bridge(&ctl, bridge)?
            .groups
            .values()
            .cloned()
            .collect())
    }

    /// The rules of a bridge with their counters, by table, then priority
    /// (highest first), then age.
    pub fn dump_flows(&self, bridge: &str) -> Result<Vec<FlowEntry>, SwitchError> {
        let now = self.now_ms();
        let ctl = self.ctl.lock();
        let b = Self::bridge(&ctl, bridge)?;
        let mut rules: Vec<&Arc<InstalledRule>> = b.rules.iter().collect();
        rules.sort_by(|a, b| {
            (a.rule.table, std::cmp::Reverse(a.rule.priority), a.seq).cmp(&(
                b.rule.table,
                std::cmp::Reverse(b.rule.priority),
                b.seq,
            ))
        });
        Ok(rules
            .into_iter()
            .map(|r| FlowEntry {
                rule: r.rule.clone(),
                n_packets: r.stats.n_packets.load(Relaxed),
                n_bytes: r.stats.n_bytes.load(Relaxed),
                duration_ms: now.saturating_sub(r.stats.installed_ms),
                idle_ms: now.saturating_sub(r.stats.last_hit_ms.load(Relaxed)),
            })
            .collect())
    }

    /// Runs every port's `health_check` (link state, and rate-driven
    /// tuning such as AF_XDP's `peer-napi=auto`). [`Switch::run_timers`]
    /// includes it; [`Switch::run_maintenance`] also calls it alone between
    /// two timer runs so link changes and load changes are seen within a
    /// fraction of a second.
    pub fn check_ports(&self) {
        let ctl = self.ctl.lock();
        for p in ctl.ports.values() {
            p.port.health_check();
        }
    }

    /// The maintenance loop, on the caller's thread until `stop` is set:
    /// [`Switch::run_timers`] about once a second and
    /// [`Switch::check_ports`] every [`PORT_CHECK_INTERVAL`] in between.
    /// vswitchd and the in-process bench run it on a thread of their own.
    pub fn run_maintenance(&self, stop: &std::sync::atomic::AtomicBool) {
        let mut next_timers = Instant::now();
        while !stop.load(Relaxed) {
            if Instant::now() >= next_timers {
                self.run_timers(self.now_ms());
                next_timers += std::time::Duration::from_secs(1);
            } else {
                self.check_ports();
            }
            std::thread::sleep(PORT_CHECK_INTERVAL);
        }
    }

    /// Expires idle/hard timeouts and ages the FDBs at `now_ms`, after
    /// [`Switch::check_ports`]. Called about once a second by the
    /// maintenance loop (or by tests).
    pub fn run_timers(&self, now_ms: u64) {
        self.check_ports();
        let mut ctl = self.ctl.lock();
        let mut changed = false;
        let mut expired = Vec::new();
        for b in &mut ctl.bridges {
            b.fdb.age(now_ms);
            let before = b.rules.len();
            b.rules.retain(|r| {
                let hard = u64::from(r.rule.hard_timeout) * 1000;
                let idle = u64::from(r.rule.idle_timeout) * 1000;
                let dead = (hard > 0 && now_ms.saturating_sub(r.stats.installed_ms) >= hard)
                    || (idle > 0
                        && now_ms.saturating_sub(r.stats.last_hit_ms.load(Relaxed)) >= idle);
                if dead {
                    expired.push((b.name.clone(), r.rule.clone()));
                }
                !dead
            });
            if b.rules.len() != before {
                b.recompile();
                changed = true;
            }
        }
        ctl.expired.extend(expired);
        if changed {
            self.publish(&mut ctl);
        }
        drop(ctl);
        for p in &self.pmds {
            p.lock().housekeeping();
        }
    }

    /// Rules removed by timeouts since the last call.
    pub fn take_expired(&self) -> Vec<(String, Rule)> {
        std::mem::take(&mut self.ctl.lock().expired)
    }

    /// Re-assigns rx queues to PMDs by the packets each received since the
    /// last rebalance (busiest queue to the least loaded PMD, greedily).
    /// Returns the new assignment as (port name, queue, PMD index).
    pub fn pmd_rebalance(&self) -> Vec<(String, usize, usize)> {
        let mut ctl = self.ctl.lock();
        let n_pmds = self.pmds.len();
        let mut loads: Vec<((PortNo, usize), u64)> = Vec::new();
        let mut baseline = BTreeMap::new();
        for (no, p) in &ctl.ports {
            let rx = p.port.stats().rx_packets;
            let since = rx.saturating_sub(ctl.rx_baseline.get(no).copied().unwrap_or(0));
            baseline.insert(*no, rx);
            let queues = p.port.rx_queues().max(1);
            for q in 0..queues {
                loads.push(((*no, q), since / queues as u64));
            }
        }
        loads.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut pmd_load = vec![(0u64, 0usize); n_pmds];
        let mut assign = BTreeMap::new();
        for (k, load) in loads {
            let pmd = (0..n_pmds)
                .min_by_key(|i| pmd_load[*i])
                .expect("at least one PMD");
            pmd_load[pmd].0 += load;
            pmd_load[pmd].1 += 1;
            assign.insert(k, pmd);
        }
        ctl.rx_assign = assign;
        ctl.rx_baseline = baseline;
        self.publish(&mut ctl);
        ctl.rx_assign
            .iter()
            .filter_map(|((no, q), pmd)| ctl.ports.get(no).map(|p| (p.name.clone(), *q, *pmd)))
            .collect()
    }

    /// Runs one forwarding iteration of every PMD in the caller's thread
    /// (for a switch without PMD threads). Returns packets received.
    pub fn poll(&self) -> usize {
        self.poll_at(self.now_ms())
    }

    /// [`Switch::poll`] at a given clock value (deterministic tests).
    pub fn poll_at(&self, now_ms: u64) -> usize {
        let snap = self.snap.load_full();
        let mut n = 0;
        for (i, p) in self.pmds.iter().enumerate() {
            let queues = snap.rxqs.get(i).map(Vec::as_slice).unwrap_or(&[]);
            n += p.lock().poll(&snap, queues, now_ms);
        }
        n
    }

    /// Polls until an iteration receives nothing (bounded to `max_rounds`).
    pub fn run_until_idle(&self, max_rounds: usize) -> usize {
        let mut total = 0;
        for _ in 0..max_rounds {
            let n = self.poll();
            total += n;
            if n == 0 {
                break;
            }
        }
        total
    }

    /// Runs `f` with PMD `index`'s context (benches preloading caches).
    pub fn with_pmd<R>(&self, index: usize, f: impl FnOnce(&mut Pmd, &Snapshot) -> R) -> R {
        let snap = self.snap.load_full();
        f(&mut self.pmds[index].lock(), &snap)
    }

    /// Runs `f` with PMD 0's buffer pool (hosts injecting into memory ports
    /// borrow buffers from the switch so steady state allocates nothing).
    pub fn with_pool<R>(&self, f: impl FnOnce(&mut PacketPool) -> R) -> R {
        f(self.pmds[0].lock().pool_mut())
    }

    /// Explains what the bridge would do with `key`, table by table,
    /// without learning anything.
    pub fn trace(&self, bridge: &str, key: &FlowKey) -> Result<Translation, SwitchError> {
        let snap = self.snap.load_full();
        let b = snap
            .bridges
            .iter()
            .find(|b| b.name == bridge)
            .ok_or_else(|| SwitchError::NoSuchBridge(bridge.to_owned()))?;
        let view = BridgeView {
            pipeline: &b.pipeline,
            fdb: &b.fdb,
            ports: &b.ports,
        };
        Ok(translate(view, key, self.now_ms(), true))
    }

    fn fdb_of(&self, bridge: &str) -> Result<Arc<Fdb>, SwitchError> {
        let ctl = self.ctl.lock();
        Ok(Self::bridge(&ctl, bridge)?.fdb.clone())
    }

    /// FDB entries with port names.
    pub fn fdb_show(&self, bridge: &str) -> Result<Vec<(FdbEntryInfo, String)>, SwitchError> {
        let fdb = self.fdb_of(bridge)?;
        let names: BTreeMap<PortNo, String> = {
            let ctl = self.ctl.lock();
            ctl.ports
                .iter()
                .map(|(n, p)| (*n, p.name.clone()))
                .collect()
        };
        Ok(fdb
            .entries(self.now_ms())
            .into_iter()
            .map(|e| {
                let name = names
                    .get(&e.dest.port)
                    .cloned()
                    .unwrap_or_else(|| e.dest.port.to_string());
                (e, name)
            })
            .collect())
    }

    /// FDB counters of a bridge.
    pub fn fdb_stats(&self, bridge: &str) -> Result<FdbStats, SwitchError> {
        Ok(self.fdb_of(bridge)?.stats())
    }

    /// Removes learned entries (not static ones).
    pub fn fdb_flush(&self, bridge: &str) -> Result<(), SwitchError> {
        self.fdb_of(bridge)?.flush(false);
        Ok(())
    }

    /// Adds a static entry.
    pub fn fdb_add(
        &self,
        bridge: &str,
        mac: [u8; 6],
        vlan: u16,
        port: &str,
        remote: Option<u32>,
    ) -> Result<(), SwitchError> {
        let no = {
            let ctl = self.ctl.lock();
            Self::bridge(&ctl, bridge)?;
            let no = Self::port_no(&ctl, port)?;
            if ctl.ports[&no].bridge != bridge {
                return Err(SwitchError::WrongBridge {
                    port: port.to_owned(),
                    bridge: bridge.to_owned(),
                    actual: ctl.ports[&no].bridge.clone(),
                });
            }
            no
        };
        let fdb = self.fdb_of(bridge)?;
        if fdb.add_static(
            mac_to_u64(mac),
            vlan,
            FdbDest { port: no, remote },
            self.now_ms(),
        ) {
            Ok(())
        } else {
            Err(SwitchError::FdbFull(bridge.to_owned()))
        }
    }

    /// Removes an entry; false when there was none.
    pub fn fdb_del(&self, bridge: &str, mac: [u8; 6], vlan: u16) -> Result<bool, SwitchError> {
        Ok(self.fdb_of(bridge)?.remove(mac_to_u64(mac), vlan))
    }

    /// Ports with their state and counters.
    pub fn ports(&self) -> Vec<PortInfo> {
        let ctl = self.ctl.lock();
        ctl.ports
            .iter()
            .map(|(no, p)| PortInfo {
                security: p.security.as_deref().cloned().unwrap_or_default(),
                learned_macs: Self::bridge(&ctl, &p.bridge)
                    .map(|b| b.fdb.port_count(*no))
                    .unwrap_or(0),
                no: *no,
                name: p.name.clone(),
                bridge: p.bridge.clone(),
                kind: p.port.kind(),
                link: p.port.link(),
                mac: p.port.mac(),
                mtu: p.port.mtu(),
                vlan: p.vlan.clone(),
                stats: p.port.stats(),
                rx_queues: p.port.rx_queues(),
                tunnel: p.port.tunnel_info(),
            })
            .collect()
    }

    /// Drops by reason, summed over PMDs.
    pub fn drop_stats(&self) -> DropCounters {
        let mut d = DropCounters::default();
        for p in &self.pmds {
            d.merge(&p.lock().drops());
        }
        d
    }

    /// PMDs with their queues and counters.
    pub fn pmd_stats(&self) -> Vec<PmdInfo> {
        let snap = self.snap.load_full();
        self.pmds
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let p = p.lock();
                PmdInfo {
                    index: i,
                    core: self.cfg.pmd_cores.get(i).copied(),
                    rxqs: snap
                        .rxqs
                        .get(i)
                        .map(|qs| {
                            qs.iter()
                                .filter_map(|(no, q)| snap.port(*no).map(|e| (e.name.clone(), *q)))
                                .collect()
                        })
                        .unwrap_or_default(),
                    stats: p.stats(),
                    emc: p.emc_stats(),
                    megaflow: p.megaflow_stats(),
                }
            })
            .collect()
    }

    /// The megaflows of every PMD whose ingress port is on `bridge`.
    pub fn dump_cache(&self, bridge: &str) -> Result<Vec<CacheEntryInfo>, SwitchError> {
        let snap = self.snap.load_full();
        let bi = snap
            .bridges
            .iter()
            .position(|b| b.name == bridge)
            .ok_or_else(|| SwitchError::NoSuchBridge(bridge.to_owned()))?;
        let now = self.now_ms();
        let mut out = Vec::new();
        for (i, p) in self.pmds.iter().enumerate() {
            let p = p.lock();
            for (_, e) in p.megaflows().entries() {
                if snap.port(e.key.in_port()).is_some_and(|pe| pe.bridge == bi) {
                    out.push(CacheEntryInfo {
                        pmd: i,
                        key: e.key,
                        mask: e.mask,
                        actions: e.actions.to_vec(),
                        packets: e.packets,
                        bytes: e.bytes,
                        idle_ms: now.saturating_sub(e.used_ms),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Stops the PMD threads (also done on drop).
    pub fn shutdown(&self) {
        for t in self.threads.lock().drain(..) {
            t.stop();
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.shutdown();
    }
}
