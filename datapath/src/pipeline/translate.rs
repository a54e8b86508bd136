//! The slow path: runs a bridge's pipeline on one flow key and produces
//! the datapath actions for every packet of that flow, plus the wildcard
//! mask under which the answer holds (the megaflow), the FDB tags it
//! depends on, and the rules it hit (to credit their counters).
//!
//! Header-changing actions update the working key, so later tables see the
//! packet as modified, as OpenFlow requires. NORMAL performs MAC learning
//! here, on the first packet of a flow; cached packets of the same flow only
//! refresh the learned entry's age.
//!
//! Port security ([`crate::security`]) runs first: a frame whose source
//! addresses the ingress port does not own never reaches the tables, and
//! the verdict is cached with the fields it consulted. NORMAL enforces the
//! port's `max-macs` while learning, and a flooding translation from a port
//! with `storm-pps` carries a [`DpAction::StormCheck`] for the fast path.

use super::fdb::{Fdb, FdbDest, FdbTag};
use super::rule::{Action, GroupType, TableId};
use super::table::InstalledRule;
use super::{Pipeline, VlanMode};
use crate::drop::DropReason;
use crate::flow::{Field, FlowKey, FlowMask, PortNo, VLAN_PCP_MASK, VLAN_PRESENT, VLAN_VID_MASK};
use crate::security::PortSecurity;
use std::sync::Arc;

/// Resubmit/goto nesting limit.
pub const MAX_DEPTH: usize = 32;
/// Limit on datapath actions one translation may emit (flood fan-out,
/// group buckets): beyond it the packet is dropped as `RecursionLimit`.
pub const MAX_DP_ACTIONS: usize = 1024;

/// An action the fast path applies to packets, in order. Outputs send the
/// packet as modified so far; `Clone` applies its list to a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DpAction {
    /// Send (a copy of) the packet to a port.
    Output(PortNo),
    /// Set the outer tag's VID, pushing an 802.1Q tag if untagged.
    SetVlanVid(u16),
    /// Set the outer tag's PCP, pushing an 802.1Q tag if untagged.
    SetVlanPcp(u8),
    /// Push a tag with this TPID and TCI (VLAN_PRESENT bit ignored).
    PushVlan {
        /// 0x8100 or 0x88a8.
        tpid: u16,
        /// Tag control information.
        tci: u16,
    },
    /// Remove the outer tag.
    PopVlan,
    /// Set Ethernet source.
    SetEthSrc([u8; 6]),
    /// Set Ethernet destination.
    SetEthDst([u8; 6]),
    /// Set IPv4 source.
    SetIpv4Src(u32),
    /// Set IPv4 destination.
    SetIpv4Dst(u32),
    /// Set L4 source port.
    SetTpSrc(u16),
    /// Set L4 destination port.
    SetTpDst(u16),
    /// Decrement TTL/hop limit; drop when expired.
    DecTtl,
    /// Tunnel id for the next output to a tunnel port.
    SetTunnelId(u32),
    /// Remote VTEP for the next output to a tunnel port.
    SetTunnelRemote(u32),
    /// Apply the inner list to a copy of the packet.
    Clone(Box<[DpAction]>),
    /// Storm control: meter the packet against its ingress port's token
    /// bucket at this rate (packets per second); when the bucket is empty
    /// the packet goes no further (dropped as `storm`). Emitted before the
    /// outputs of a flood only.
    StormCheck(u32),
}

/// How a bridge port takes part in NORMAL switching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgePort {
    /// Port number.
    pub no: PortNo,
    /// VLAN membership.
    pub vlan: VlanMode,
    /// A tunnel port (split horizon applies between tunnels).
    pub is_tunnel: bool,
    /// Port security policy (None: the port may send anything).
    pub security: Option<Arc<PortSecurity>>,
}

/// What the slow path needs to know about a bridge.
#[derive(Clone, Copy, Debug)]
pub struct BridgeView<'a> {
    /// The compiled tables and groups.
    pub pipeline: &'a Pipeline,
    /// The bridge's FDB.
    pub fdb: &'a Fdb,
    /// The bridge's ports, in port-number order.
    pub ports: &'a [BridgePort],
}

impl BridgeView<'_> {
    fn port(&self, no: PortNo) -> Option<&BridgePort> {
        self.ports
            .binary_search_by_key(&no, |p| p.no)
            .ok()
            .map(|i| &self.ports[i])
    }
}

/// One step of a trace (`vswitchctl trace`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// A table lookup and the rule it found (None: table miss).
    Table {
        /// Table.
        table: TableId,
        /// The matching rule.
        rule: Option<Box<super::Rule>>,
    },
    /// What NORMAL decided, in words.
    Normal(String),
    /// A group executed.
    Group {
        /// Group id.
        id: u32,
        /// Bucket indices used.
        buckets: Vec<usize>,
    },
    /// The packet (or a branch of it) is dropped.
    Drop(DropReason),
}

/// The result of translating one flow.
#[derive(Debug, Default)]
pub struct Translation {
    /// Actions for every packet of the flow.
    pub actions: Vec<DpAction>,
    /// Bits of the key the answer depends on.
    pub mask: FlowMask,
    /// FDB state the answer depends on.
    pub tags: Vec<FdbTag>,
    /// Rules hit, to credit with the flow's packets.
    pub rules: Vec<Arc<InstalledRule>>,
    /// FDB slot of the learned source MAC, refreshed on every hit.
    pub src_slot: Option<usize>,
    /// When the actions send the packet nowhere: why.
    pub drop: Option<DropReason>,
    /// Steps taken, when tracing.
    pub trace: Vec<TraceEvent>,
}

struct Ctx<'a> {
    view: BridgeView<'a>,
    in_port: PortNo,
    key: FlowKey,
    /// Current outer TCI of the packet as modified so far.
    cur_tci: u16,
    now_ms: u64,
    out: Translation,
    tracing: bool,
    depth: usize,
    overflow: bool,
    halted: bool,
    /// A StormCheck was already emitted (one meter per packet).
    storm_checked: bool,
}

/// Translates `key` (whose `in_port` is a port of the bridge) through the
/// bridge's pipeline. With `tracing`, every step is recorded.
pub fn translate(view: BridgeView<'_>, key: &FlowKey, now_ms: u64, tracing: bool) -> Translation {
    let mut ctx = Ctx {
        view,
        in_port: key.in_port(),
        key: *key,
        cur_tci: key.vlan_tci(),
        now_ms,
        out: Translation::default(),
        tracing,
        depth: 0,
        overflow: false,
        halted: false,
        storm_checked: false,
    };
    // Every megaflow is specific to its ingress port (and so its bridge).
    ctx.out.mask.set_exact(Field::InPort);
    let security = view.port(ctx.in_port).and_then(|p| p.security.clone());
    if let Some(reason) = security.and_then(|s| s.check(key, &mut ctx.out.mask)) {
        ctx.note_drop(reason);
        return ctx.out;
    }
    run_table(&mut ctx, 0);
    if ctx.overflow {
        ctx.out.actions.clear();
        ctx.note_drop(DropReason::RecursionLimit);
    }
    if !has_output(&ctx.out.actions) && ctx.out.drop.is_none() {
        ctx.out.drop = Some(DropReason::ActionDrop);
    }
    if has_output(&ctx.out.actions) {
        ctx.out.drop = None;
    }
    ctx.out
}

fn has_output(actions: &[DpAction]) -> bool {
    actions.iter().any(|a| match a {
        DpAction::Output(_) => true,
        DpAction::Clone(inner) => has_output(inner),
        _ => false,
    })
}

impl Ctx<'_> {
    fn emit(&mut self, a: DpAction) {
        if self.out.actions.len() >= MAX_DP_ACTIONS {
            self.overflow = true;
            return;
        }
        self.out.actions.push(a);
    }

    fn note_drop(&mut self, reason: DropReason) {
        self.out.drop = Some(reason);
        if self.tracing {
            self.out.trace.push(TraceEvent::Drop(reason));
        }
    }

    fn wc(&mut self, f: Field) {
        self.out.mask.set_exact(f);
    }

    fn is_ipv4(&mut self) -> bool {
        self.wc(Field::EthType);
        self.key.eth_type() == 0x0800
    }

    fn is_ip(&mut self) -> bool {
        self.wc(Field::EthType);
        matches!(self.key.eth_type(), 0x0800 | 0x86dd)
    }

    fn has_ports(&mut self) -> bool {
        if !self.is_ip() {
            return false;
        }
        self.wc(Field::NwProto);
        self.wc(Field::NwFrag);
        matches!(self.key.nw_proto(), 6 | 17 | 132)
            && self.key.get(Field::NwFrag) as u8 & crate::flow::FRAG_LATER == 0
    }

    /// Puts a StormCheck at `at` (the start of a flood's outputs) when the
    /// ingress port has storm control and none was emitted yet.
    fn storm_check_at(&mut self, at: usize) {
        if self.storm_checked || self.overflow {
            return;
        }
        let pps = self
            .view
            .port(self.in_port)
            .and_then(|p| p.security.as_ref())
            .and_then(|s| s.storm_pps);
        if let Some(pps) = pps {
            self.storm_checked = true;
            self.out.actions.insert(at, DpAction::StormCheck(pps));
        }
    }

    fn output(&mut self, port: PortNo) {
        if port == self.in_port {
            // OpenFlow: output to the ingress port needs IN_PORT.
            self.note_drop(DropReason::Loop);
            return;
        }
        if self.view.port(port).is_none() {
            self.note_drop(DropReason::NoSuchPort);
            return;
        }
        self.emit(DpAction::Output(port));
    }
}

fn run_table(ctx: &mut Ctx<'_>, table: TableId) {
    if ctx.depth >= MAX_DEPTH {
        ctx.overflow = true;
        return;
    }
    ctx.depth += 1;
    let pipeline = ctx.view.pipeline;
    let found = pipeline
        .table(table)
        .and_then(|t| t.lookup(&ctx.key, &mut ctx.out.mask))
        .cloned();
    if ctx.tracing {
        ctx.out.trace.push(TraceEvent::Table {
            table,
            rule: found.as_ref().map(|r| Box::new(r.rule.clone())),
        });
    }
    match found {
        None => ctx.note_drop(DropReason::NoMatch),
        Some(rule) => {
            ctx.out.rules.push(rule.clone());
            if rule.rule.actions.is_empty() {
                ctx.note_drop(DropReason::ActionDrop);
            }
            run_actions(ctx, &rule.rule.actions);
        }
    }
    ctx.depth -= 1;
}

fn run_actions(ctx: &mut Ctx<'_>, actions: &[Action]) {
    for a in actions {
        if ctx.overflow || ctx.halted {
            return;
        }
        match a {
            Action::Output(p) => ctx.output(*p),
            Action::InPort => {
                let p = ctx.in_port;
                ctx.emit(DpAction::Output(p));
            }
            Action::Normal => normal(ctx),
            Action::Flood | Action::All => {
                let split = matches!(a, Action::Flood)
                    && ctx.view.port(ctx.in_port).is_some_and(|p| p.is_tunnel);
                let ports = ctx.view.ports;
                let start = ctx.out.actions.len();
                for p in ports {
                    if p.no != ctx.in_port && !(split && p.is_tunnel) {
                        ctx.emit(DpAction::Output(p.no));
                    }
                }
                if ctx.out.actions.len() > start {
                    ctx.storm_check_at(start);
                }
            }
            Action::SetVlanVid(vid) => {
                let vid = vid & VLAN_VID_MASK;
                ctx.wc(Field::VlanTci);
                ctx.cur_tci = (ctx.cur_tci & VLAN_PCP_MASK) | VLAN_PRESENT | vid;
                ctx.key.set(Field::VlanTci, u128::from(ctx.cur_tci));
                ctx.emit(DpAction::SetVlanVid(vid));
            }
            Action::SetVlanPcp(pcp) => {
                ctx.wc(Field::VlanTci);
                ctx.cur_tci =
                    (ctx.cur_tci & VLAN_VID_MASK) | VLAN_PRESENT | (u16::from(*pcp & 7) << 13);
                ctx.key.set(Field::VlanTci, u128::from(ctx.cur_tci));
                ctx.emit(DpAction::SetVlanPcp(*pcp & 7));
            }
            Action::StripVlan => {
                ctx.wc(Field::VlanTci);
                if ctx.cur_tci & VLAN_PRESENT != 0 {
                    ctx.emit(DpAction::PopVlan);
                    // A second tag, if any, becomes the outer one.
                    ctx.wc(Field::Vlan2Tci);
                    ctx.cur_tci = ctx.key.get(Field::Vlan2Tci) as u16;
                    ctx.key.set(Field::VlanTci, u128::from(ctx.cur_tci));
                    ctx.key.set(Field::Vlan2Tci, 0);
                }
            }
            Action::PushVlan(tpid) => {
                ctx.wc(Field::VlanTci);
                let tci = ctx.cur_tci & !VLAN_PRESENT;
                ctx.emit(DpAction::PushVlan { tpid: *tpid, tci });
                ctx.key.set(Field::Vlan2Tci, u128::from(ctx.cur_tci));
                ctx.cur_tci = tci | VLAN_PRESENT;
                ctx.key.set(Field::VlanTci, u128::from(ctx.cur_tci));
            }
            Action::SetEthSrc(m) => {
                ctx.key
                    .set(Field::EthSrc, u128::from(crate::flow::mac_to_u64(*m)));
                ctx.emit(DpAction::SetEthSrc(*m));
            }
            Action::SetEthDst(m) => {
                ctx.key
                    .set(Field::EthDst, u128::from(crate::flow::mac_to_u64(*m)));
                ctx.emit(DpAction::SetEthDst(*m));
            }
            Action::SetIpv4Src(ip) => {
                if ctx.is_ipv4() {
                    ctx.key.set(Field::NwSrc, u128::from(*ip));
                    ctx.emit(DpAction::SetIpv4Src(*ip));
                }
            }
            Action::SetIpv4Dst(ip) => {
                if ctx.is_ipv4() {
                    ctx.key.set(Field::NwDst, u128::from(*ip));
                    ctx.emit(DpAction::SetIpv4Dst(*ip));
                }
            }
            Action::SetTpSrc(p) => {
                if ctx.has_ports() {
                    ctx.key.set(Field::TpSrc, u128::from(*p));
                    ctx.emit(DpAction::SetTpSrc(*p));
                }
            }
            Action::SetTpDst(p) => {
                if ctx.has_ports() {
                    ctx.key.set(Field::TpDst, u128::from(*p));
                    ctx.emit(DpAction::SetTpDst(*p));
                }
            }
            Action::DecTtl => {
                if ctx.is_ip() {
                    ctx.wc(Field::NwTtl);
                    let ttl = ctx.key.get(Field::NwTtl) as u8;
                    if ttl <= 1 {
                        // Nothing after an expired TTL runs; outputs
                        // already emitted stand, as in OpenFlow.
                        ctx.note_drop(DropReason::TtlExpired);
                        ctx.halted = true;
                        return;
                    }
                    ctx.key.set(Field::NwTtl, u128::from(ttl - 1));
                    ctx.emit(DpAction::DecTtl);
                }
            }
            Action::SetTunnel(id) => {
                ctx.key.set(Field::TunId, u128::from(*id));
                ctx.emit(DpAction::SetTunnelId(*id));
            }
            Action::Resubmit(t) => run_table(ctx, *t),
            Action::GotoTable(t) => {
                run_table(ctx, *t);
                return;
            }
            Action::Group(id) => group(ctx, *id),
        }
    }
}

fn group(ctx: &mut Ctx<'_>, id: u32) {
    let Some(g) = ctx.view.pipeline.group(id) else {
        ctx.note_drop(DropReason::NoSuchGroup);
        return;
    };
    if g.buckets.is_empty() {
        ctx.note_drop(DropReason::NoSuchGroup);
        return;
    }
    match g.kind {
        GroupType::Select => {
            let h = select_hash(ctx);
            let total: u64 = g.buckets.iter().map(|b| u64::from(b.weight.max(1))).sum();
            let mut pick = h % total;
            let mut idx = 0;
            for (i, b) in g.buckets.iter().enumerate() {
                let w = u64::from(b.weight.max(1));
                if pick < w {
                    idx = i;
                    break;
                }
                pick -= w;
            }
            if ctx.tracing {
                ctx.out.trace.push(TraceEvent::Group {
                    id,
                    buckets: vec![idx],
                });
            }
            run_actions(ctx, &g.buckets[idx].actions);
        }
        GroupType::All => {
            if ctx.tracing {
                ctx.out.trace.push(TraceEvent::Group {
                    id,
                    buckets: (0..g.buckets.len()).collect(),
                });
            }
            for b in &g.buckets {
                let saved_key = ctx.key;
                let saved_tci = ctx.cur_tci;
                let outer = std::mem::take(&mut ctx.out.actions);
                run_actions(ctx, &b.actions);
                let inner = std::mem::replace(&mut ctx.out.actions, outer);
                ctx.key = saved_key;
                ctx.cur_tci = saved_tci;
                if !inner.is_empty() {
                    ctx.emit(DpAction::Clone(inner.into_boxed_slice()));
                }
            }
        }
    }
}

/// Hash of the 5-tuple (symmetric in neither direction: per-direction
/// stickiness is what load balancing needs).
fn select_hash(ctx: &mut Ctx<'_>) -> u64 {
    let mut m = FlowKey::ZERO;
    for f in [
        Field::EthType,
        Field::NwProto,
        Field::NwSrc,
        Field::NwDst,
        Field::TpSrc,
        Field::TpDst,
    ] {
        m.set_exact(f);
        ctx.wc(f);
    }
    ctx.key.masked(&m).hash_with(0x005e_1ec7)
}

fn is_multicast(mac: u64) -> bool {
    mac & (1 << 40) != 0
}

fn vlan_allowed(mode: &VlanMode, vlan: u16) -> bool {
    match mode {
        VlanMode::Access(v) => *v == vlan,
        VlanMode::Trunk(list) => list.is_empty() || list.contains(&vlan),
    }
}

fn normal(ctx: &mut Ctx<'_>) {
    for f in [Field::EthSrc, Field::EthDst, Field::VlanTci] {
        ctx.wc(f);
    }
    let Some(in_port) = ctx.view.port(ctx.in_port).cloned() else {
        ctx.note_drop(DropReason::NoSuchPort);
        return;
    };
    let tci = ctx.cur_tci;
    let tagged_vid = if tci & VLAN_PRESENT != 0 {
        tci & VLAN_VID_MASK
    } else {
        0
    };
    let vlan = match &in_port.vlan {
        VlanMode::Access(v) => {
            if tagged_vid != 0 {
                ctx.note_drop(DropReason::VlanFiltered);
                return;
            }
            *v
        }
        VlanMode::Trunk(list) => {
            if !list.is_empty() && !list.contains(&tagged_vid) {
                ctx.note_drop(DropReason::VlanFiltered);
                return;
            }
            tagged_vid
        }
    };
    let src = ctx.key.get(Field::EthSrc) as u64;
    let dst = ctx.key.get(Field::EthDst) as u64;
    let fdb: &Fdb = ctx.view.fdb;
    let max_macs = in_port.security.as_ref().and_then(|s| s.max_macs);
    // A trace only explains: it must not change the FDB.
    if !is_multicast(src) && ctx.tracing {
        if max_macs.is_some_and(|l| fdb.would_hit_port_limit(src, vlan, ctx.in_port, l)) {
            ctx.out.trace.push(TraceEvent::Normal(format!(
                "source not learned: port {} holds its max-macs entries",
                ctx.in_port
            )));
            ctx.note_drop(DropReason::PortMacLimit);
            return;
        }
    } else if !is_multicast(src) {
        if in_port.is_tunnel {
            ctx.wc(Field::TunSrc);
        }
        let remote = in_port.is_tunnel.then(|| ctx.key.get(Field::TunSrc) as u32);
        let learned = fdb.learn_limited(
            src,
            vlan,
            FdbDest {
                port: ctx.in_port,
                remote,
            },
            ctx.now_ms,
            max_macs,
        );
        ctx.out.tags.push(fdb.tag(src, vlan));
        ctx.out.src_slot = learned.slot();
        if learned == super::fdb::Learned::PortLimit {
            // Re-translated once the port has room again.
            ctx.out.tags.push(fdb.port_tag(ctx.in_port));
            ctx.note_drop(DropReason::PortMacLimit);
            return;
        }
    }
    let dest = if is_multicast(dst) {
        None
    } else {
        ctx.out.tags.push(fdb.tag(dst, vlan));
        fdb.lookup(dst, vlan)
    };
    match dest {
        Some(d) if d.port == ctx.in_port => {
            if ctx.tracing {
                ctx.out.trace.push(TraceEvent::Normal(format!(
                    "destination learned on the ingress port {}: dropped",
                    d.port
                )));
            }
            ctx.note_drop(DropReason::Loop);
        }
        Some(d) => {
            if ctx.tracing {
                ctx.out.trace.push(TraceEvent::Normal(format!(
                    "learned destination: port {} vlan {vlan}",
                    d.port
                )));
            }
            match ctx.view.port(d.port).cloned() {
                Some(p) if vlan_allowed(&p.vlan, vlan) => {
                    if let Some(remote) = d.remote {
                        ctx.emit(DpAction::SetTunnelRemote(remote));
                    }
                    normal_output(ctx, &p, vlan);
                }
                Some(_) => ctx.note_drop(DropReason::VlanFiltered),
                None => ctx.note_drop(DropReason::NoSuchPort),
            }
        }
        None => {
            if ctx.tracing {
                ctx.out
                    .trace
                    .push(TraceEvent::Normal(format!("flood in vlan {vlan}")));
            }
            let ports = ctx.view.ports;
            let start = ctx.out.actions.len();
            let mut any = false;
            for p in ports {
                if p.no == ctx.in_port
                    || (in_port.is_tunnel && p.is_tunnel)
                    || !vlan_allowed(&p.vlan, vlan)
                {
                    continue;
                }
                any = true;
                normal_output(ctx, p, vlan);
            }
            if any {
                ctx.storm_check_at(start);
            } else {
                ctx.note_drop(DropReason::NoDestination);
            }
        }
    }
}

/// Emits the tag edits that make the packet right for `port` in `vlan`,
/// then the output.
fn normal_output(ctx: &mut Ctx<'_>, port: &BridgePort, vlan: u16) {
    let want_tag = match port.vlan {
        VlanMode::Access(_) => false,
        VlanMode::Trunk(_) => vlan != 0,
    };
    let has_tag = ctx.cur_tci & VLAN_PRESENT != 0;
    match (has_tag, want_tag) {
        (true, false) => {
            ctx.emit(DpAction::PopVlan);
            ctx.cur_tci = 0;
        }
        (false, true) => {
            ctx.emit(DpAction::PushVlan {
                tpid: 0x8100,
                tci: vlan,
            });
            ctx.cur_tci = VLAN_PRESENT | vlan;
        }
        (true, true) if ctx.cur_tci & VLAN_VID_MASK != vlan => {
            ctx.emit(DpAction::SetVlanVid(vlan));
            ctx.cur_tci = (ctx.cur_tci & !VLAN_VID_MASK) | vlan;
        }
        _ => {}
    }
    ctx.emit(DpAction::Output(port.no));
}
