//! The vswitch API: every message `vswitchctl`, `vswitch-controld` and
//! `vswitchd` exchange, in one place so the three programs never disagree.
//!
//! Transport (see [`crate::ipc`]): JSON lines over Unix stream sockets. A
//! connection starts with a [`Hello`] carrying [`API_VERSION`]; then each
//! line is one [`Request`] answered by one [`Response`]. Lines are at most
//! [`MAX_MESSAGE_BYTES`] long.
//!
//! Requests come in two families:
//! - operator calls (what `vswitchctl` sends): rules and matches travel as
//!   text in the flow syntax of `ovs-ofctl(8)`, port options as the CLI's
//!   `key=value` pairs. vswitch-controld serves all of them; vswitchd
//!   serves the read-only ones directly so they still answer while the
//!   control process is down.
//! - datapath calls (`Dp*`, what vswitch-controld sends vswitchd): rules
//!   travel structured with port *numbers* ([`WireRule`]), already
//!   validated, so the datapath never parses operator text.
//!
//! The `-o json` output shapes of the CLI are the reply types below
//! ([`ShowReply`], [`FlowsReply`], [`FdbReply`], [`DropsReply`], ...), so
//! they are stable as long as [`API_VERSION`] is.

use datapath::flow::{FlowKey, KEY_WORDS};
use datapath::pipeline::{Action, Bucket, Group, GroupType, Match, Rule};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the message types; bumped on every incompatible change. A
/// peer speaking another version is refused at [`Hello`].
pub const API_VERSION: u32 = 1;

/// Longest accepted line (request or response), in bytes. Large enough for
/// a 100k-rule `replace-flows` in flow syntax, small enough that a
/// malicious client cannot make a daemon buffer without bound.
pub const MAX_MESSAGE_BYTES: usize = 32 << 20;

/// First message of every connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`API_VERSION`] of the client.
    pub api_version: u32,
    /// Program name, for logs.
    pub client: String,
}

/// The server's answer to [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    /// [`API_VERSION`] of the server.
    pub api_version: u32,
    /// `vswitchd` or `vswitch-controld`.
    pub server: String,
    /// Server process id.
    pub pid: u32,
    /// Random value chosen at process start: a new value means a new
    /// process, so vswitch-controld knows it must push everything again.
    pub boot_id: u64,
}

/// Which `stats` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatsKind {
    /// Per-port counters.
    Ports,
    /// Per-PMD counters.
    Pmd,
    /// Drop counters by reason.
    Drops,
    /// EMC / megaflow cache counters.
    Caches,
}

/// A request. Serialized as `{"call":"add-bridge","bridge":"br0"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "kebab-case")]
pub enum Request {
    // ---- read calls (both daemons answer) ----
    /// Bridges, ports, PMDs.
    Show,
    /// Rules of a bridge with counters.
    DumpFlows {
        /// Bridge.
        bridge: String,
        /// Only this table.
        #[serde(default)]
        table: Option<u8>,
    },
    /// Groups of a bridge.
    DumpGroups {
        /// Bridge.
        bridge: String,
    },
    /// Learned and static MAC table of a bridge.
    FdbShow {
        /// Bridge.
        bridge: String,
    },
    /// Counters.
    Stats {
        /// Which table.
        kind: StatsKind,
    },
    /// Megaflow cache entries of a bridge.
    DumpCache {
        /// Bridge.
        bridge: String,
    },
    /// Explain the pipeline's decision for a packet described in match
    /// syntax.
    Trace {
        /// Bridge.
        bridge: String,
        /// `in_port=p1,dl_src=..,ip,...`.
        flow: String,
    },
    /// Daemon status (pid, boot id, uptime, ...).
    Status,

    // ---- operator changes (vswitch-controld) ----
    /// `add-br`.
    AddBridge {
        /// Bridge.
        bridge: String,
    },
    /// `del-br`.
    DelBridge {
        /// Bridge.
        bridge: String,
    },
    /// `add-port BR NAME key=value...`.
    AddPort {
        /// Bridge.
        bridge: String,
        /// Port name (≤ 15 bytes).
        name: String,
        /// Options including `type`.
        options: BTreeMap<String, String>,
    },
    /// `del-port`.
    DelPort {
        /// Bridge.
        bridge: String,
        /// Port.
        name: String,
    },
    /// `set-port BR NAME key=value...` (changes the given options).
    SetPort {
        /// Bridge.
        bridge: String,
        /// Port.
        name: String,
        /// Options to change.
        options: BTreeMap<String, String>,
    },
    /// `add-flow` / `add-flows`: rules in flow syntax, each replacing a rule
    /// with the same table, priority and match.
    AddFlows {
        /// Bridge.
        bridge: String,
        /// One rule per element.
        rules: Vec<String>,
    },
    /// `del-flows BR [MATCH] [--strict]`.
    DelFlows {
        /// Bridge.
        bridge: String,
        /// Match in flow syntax (None: every rule).
        #[serde(default)]
        r#match: Option<String>,
        /// Exact match and priority instead of "equal or narrower".
        #[serde(default)]
        strict: bool,
    },
    /// `replace-flows BR FILE`: the whole rule set, swapped atomically.
    ReplaceFlows {
        /// Bridge.
        bridge: String,
        /// One rule per element.
        rules: Vec<String>,
    },
    /// `add-group`.
    AddGroup {
        /// Bridge.
        bridge: String,
        /// `group_id=1,type=select,bucket=...`.
        group: String,
    },
    /// `del-groups`.
    DelGroups {
        /// Bridge.
        bridge: String,
    },
    /// `fdb-flush`.
    FdbFlush {
        /// Bridge.
        bridge: String,
    },
    /// `fdb-add BR MAC PORT [vlan=N] [remote=IP]` (a static entry).
    FdbAdd {
        /// Bridge.
        bridge: String,
        /// Static entry.
        entry: StaticFdbEntry,
    },
    /// `fdb-del BR MAC [vlan=N]`.
    FdbDel {
        /// Bridge.
        bridge: String,
        /// `aa:bb:cc:dd:ee:ff`.
        mac: String,
        /// VLAN (0 = untagged).
        #[serde(default)]
        vlan: u16,
    },
    /// `pmd-rebalance`.
    PmdRebalance,

    // ---- datapath programming (vswitch-controld → vswitchd) ----
    /// Everything the datapath holds, for reconciliation.
    DpInventory,
    /// Create a bridge (holding only the default NORMAL rule).
    DpAddBridge {
        /// Bridge.
        bridge: String,
    },
    /// Delete a bridge and destroy its ports.
    DpDelBridge {
        /// Bridge.
        bridge: String,
    },
    /// Open a port from its validated spec and attach it.
    DpAddPort {
        /// Bridge.
        bridge: String,
        /// Stable OpenFlow port number.
        ofport: u32,
        /// What to open.
        spec: PortSpec,
    },
    /// Detach and destroy a port.
    DpDelPort {
        /// Bridge.
        bridge: String,
        /// Port.
        name: String,
    },
    /// Change a port's VLAN membership.
    DpSetPortVlan {
        /// Port.
        name: String,
        /// New membership.
        vlan: WireVlan,
    },
    /// Add rules (each replacing its twin) in one generation.
    DpAddFlows {
        /// Bridge.
        bridge: String,
        /// Rules.
        rules: Vec<WireRule>,
    },
    /// Delete rules selected like `del-flows`.
    DpDelFlows {
        /// Bridge.
        bridge: String,
        /// Only this table.
        #[serde(default)]
        table: Option<u8>,
        /// Match as a wire value.
        r#match: WireMatch,
        /// Strict priority (exact match) or None (equal or narrower).
        strict_priority: Option<u16>,
    },
    /// Swap the whole rule and group set atomically.
    DpReplaceFlows {
        /// Bridge.
        bridge: String,
        /// Rules.
        rules: Vec<WireRule>,
        /// Groups.
        groups: Vec<WireGroup>,
    },
    /// Add or replace a group.
    DpAddGroup {
        /// Bridge.
        bridge: String,
        /// Group.
        group: WireGroup,
    },
    /// Delete all groups.
    DpDelGroups {
        /// Bridge.
        bridge: String,
    },
    /// Flush learned MACs.
    DpFdbFlush {
        /// Bridge.
        bridge: String,
    },
    /// Add a static MAC entry.
    DpFdbAdd {
        /// Bridge.
        bridge: String,
        /// Entry.
        entry: StaticFdbEntry,
    },
    /// Remove a MAC entry.
    DpFdbDel {
        /// Bridge.
        bridge: String,
        /// MAC.
        mac: String,
        /// VLAN.
        vlan: u16,
    },
    /// Rules removed by idle/hard timeouts since the last call.
    DpTakeExpired,

    // ---- packet capture (vswitchd, uid 0 only) ----
    /// Start copying a port's rx and tx frames (at most `count`).
    CaptureStart {
        /// Port name.
        port: String,
        /// Frames to capture at most.
        count: u64,
    },
    /// Take the frames captured so far (at most [`CAPTURE_READ_MAX`]).
    CaptureRead {
        /// Capture id from `capture-start`.
        id: u64,
    },
    /// Stop a capture.
    CaptureStop {
        /// Capture id.
        id: u64,
    },
}

/// Frames one `capture-read` returns at most (keeps replies far below
/// [`MAX_MESSAGE_BYTES`] even for 64 KiB frames).
pub const CAPTURE_READ_MAX: usize = 128;

impl Request {
    /// True for calls that change state: only uid 0 may make them.
    pub fn is_mutating(&self) -> bool {
        !matches!(
            self,
            Request::Show
                | Request::DumpFlows { .. }
                | Request::DumpGroups { .. }
                | Request::FdbShow { .. }
                | Request::Stats { .. }
                | Request::DumpCache { .. }
                | Request::Trace { .. }
                | Request::Status
                | Request::DpInventory
        )
    }

    /// True for the read calls vswitchd answers itself (the CLI's fallback
    /// when vswitch-controld is down).
    pub fn is_datapath_read(&self) -> bool {
        matches!(
            self,
            Request::Show
                | Request::DumpFlows { .. }
                | Request::DumpGroups { .. }
                | Request::FdbShow { .. }
                | Request::Stats { .. }
                | Request::DumpCache { .. }
                | Request::Trace { .. }
        )
    }

    /// Name of the call as it appears on the wire.
    pub fn call_name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("call").and_then(|c| c.as_str().map(str::to_owned)))
            .unwrap_or_else(|| "?".to_owned())
    }
}

/// Category of an error answer; the CLI maps them to exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The request was understood and refused (bad syntax, unknown
    /// bridge, conflict, ...). Nothing changed.
    Rejected,
    /// The request was valid but applying it failed (e.g. a kernel call);
    /// nothing changed.
    Failed,
    /// Not a valid message (JSON, unknown call, bad field).
    Malformed,
    /// Longer than [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// The peer speaks another [`API_VERSION`].
    Version,
    /// The caller's uid may not make this call.
    PermissionDenied,
    /// The call is not served by this daemon.
    Unsupported,
    /// The daemon this call depends on is unreachable.
    Unavailable,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Category.
    pub kind: ErrorKind,
    /// Message naming the object and the reason.
    pub message: String,
}

impl ApiError {
    /// Shorthand.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// A [`ErrorKind::Rejected`] error.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Rejected, message)
    }

    /// A [`ErrorKind::Failed`] error.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// One answer: `{"ok":{...}}` or `{"error":{"kind":..,"message":..}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Response {
    /// Success.
    Ok(Reply),
    /// Failure; nothing changed.
    Error(ApiError),
}

impl From<Result<Reply, ApiError>> for Response {
    fn from(r: Result<Reply, ApiError>) -> Self {
        match r {
            Ok(v) => Response::Ok(v),
            Err(e) => Response::Error(e),
        }
    }
}

/// The payload of a successful answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    /// Nothing to report.
    Done,
    /// Count of things changed (deleted rules, ...).
    Count {
        /// How many.
        count: u64,
    },
    /// `show`.
    Show(ShowReply),
    /// `dump-flows`.
    Flows(FlowsReply),
    /// `dump-groups`.
    Groups(GroupsReply),
    /// `fdb-show`.
    Fdb(FdbReply),
    /// `stats ports`.
    PortStats(PortStatsReply),
    /// `stats pmd`.
    PmdStats(PmdStatsReply),
    /// `stats drops`.
    Drops(DropsReply),
    /// `stats caches`.
    Caches(CachesReply),
    /// `dump-cache`.
    Cache(CacheReply),
    /// `trace`.
    Trace(TraceReply),
    /// `status`.
    Status(StatusReply),
    /// `dp-inventory`.
    Inventory(Inventory),
    /// `dp-take-expired`.
    Expired(ExpiredReply),
    /// `pmd-rebalance`: the new rx queue assignment.
    Pmds(PmdsReply),
    /// `capture-start`: the capture's id.
    CaptureStarted {
        /// Id for `capture-read` / `capture-stop`.
        id: u64,
    },
    /// `capture-read`.
    CaptureFrames(CaptureFramesReply),
}

/// Frames of a running capture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureFramesReply {
    /// Frames in capture order.
    pub frames: Vec<WireFrame>,
    /// True when the count was reached and every frame was read.
    pub done: bool,
    /// Frames lost because the reader fell behind.
    pub dropped: u64,
}

/// One captured frame on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireFrame {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// "rx" or "tx" (as the port saw it).
    pub dir: String,
    /// Length on the wire.
    pub orig_len: u32,
    /// The bytes, hex encoded.
    pub hex: String,
}

/// Hex encoding of frame bytes.
pub fn to_hex(data: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(D[usize::from(b >> 4)] as char);
        s.push(D[usize::from(b & 15)] as char);
    }
    s
}

/// Inverse of [`to_hex`]; None on odd length or a non-hex digit.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// PMD threads and the rx queues each polls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmdsReply {
    /// PMDs.
    pub pmds: Vec<PmdInfo>,
}

/// `show`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowReply {
    /// Bridges in creation order.
    pub bridges: Vec<BridgeInfo>,
    /// PMD threads.
    pub pmds: Vec<PmdInfo>,
}

/// A bridge in `show`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeInfo {
    /// Name.
    pub name: String,
    /// Number of rules.
    pub n_rules: u64,
    /// Ports by ofport.
    pub ports: Vec<PortInfo>,
}

/// A port in `show`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Name.
    pub name: String,
    /// OpenFlow port number.
    pub ofport: u32,
    /// `tap`, `afxdp`, ...
    pub r#type: String,
    /// `up`, `down (admin)`, `down (device gone)`, ... or `missing` when
    /// the datapath does not hold it.
    pub state: String,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// L3 MTU.
    pub mtu: u32,
    /// Options as given to `add-port` (without `type`).
    pub options: BTreeMap<String, String>,
    /// Per remote VTEP counters (tunnel ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vteps: Vec<VtepRow>,
}

/// Counters of one remote VTEP of a tunnel port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VtepRow {
    /// Remote VTEP address.
    pub remote: String,
    /// Inner frames received from it.
    pub rx_packets: u64,
    /// Inner bytes received from it.
    pub rx_bytes: u64,
    /// Inner frames sent to it.
    pub tx_packets: u64,
    /// Inner bytes sent to it.
    pub tx_bytes: u64,
}

/// A PMD thread in `show` and `stats pmd`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmdInfo {
    /// Index.
    pub index: usize,
    /// Pinned core.
    pub core: Option<usize>,
    /// `port:queue` pairs polled.
    pub rxqs: Vec<String>,
}

/// One row of `dump-flows`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowRow {
    /// Table.
    pub table: u8,
    /// Priority.
    pub priority: u16,
    /// Match in flow syntax (empty: all).
    pub r#match: String,
    /// Actions in flow syntax.
    pub actions: String,
    /// Cookie.
    pub cookie: u64,
    /// Idle timeout (0 = none).
    pub idle_timeout: u16,
    /// Hard timeout (0 = none).
    pub hard_timeout: u16,
    /// Packets matched.
    pub n_packets: u64,
    /// Bytes matched.
    pub n_bytes: u64,
    /// Seconds since installation.
    pub duration_s: f64,
}

/// `dump-flows`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowsReply {
    /// Rules in table, then descending priority order.
    pub flows: Vec<FlowRow>,
}

/// `dump-groups`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsReply {
    /// Groups in add-group syntax.
    pub groups: Vec<String>,
}

/// One row of `fdb-show`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbRow {
    /// MAC.
    pub mac: String,
    /// VLAN (0 = untagged).
    pub vlan: u16,
    /// Port name.
    pub port: String,
    /// Seconds since last seen.
    pub age_s: u64,
    /// Configured with `fdb-add`.
    #[serde(default)]
    pub r#static: bool,
    /// Remote VTEP for entries behind a tunnel.
    #[serde(default)]
    pub remote: Option<String>,
}

/// `fdb-show`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbReply {
    /// Entries.
    pub entries: Vec<FdbRow>,
}

/// A static FDB entry as `fdb-add` gives it and `state.json` keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticFdbEntry {
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// VLAN (0 = untagged).
    #[serde(default)]
    pub vlan: u16,
    /// Port name.
    pub port: String,
    /// Remote VTEP (for a VXLAN port).
    #[serde(default)]
    pub remote: Option<String>,
}

/// One row of `stats ports`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatsRow {
    /// Port.
    pub port: String,
    /// Bridge.
    pub bridge: String,
    /// Received packets.
    pub rx_packets: u64,
    /// Received bytes.
    pub rx_bytes: u64,
    /// Receive drops.
    pub rx_dropped: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Sent packets.
    pub tx_packets: u64,
    /// Sent bytes.
    pub tx_bytes: u64,
    /// Transmit drops.
    pub tx_dropped: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Per remote VTEP counters (tunnel ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vteps: Vec<VtepRow>,
    /// Tunnel refusals by reason (tunnel ports): `truncated`, `bad_flags`,
    /// `unknown_vni`, `unknown_vtep`, `mtu`, `malformed`, `send_failed`,
    /// `no_buffer`, and `gro_merged` (segments merged on receive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tunnel: BTreeMap<String, u64>,
}

/// `stats ports`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatsReply {
    /// Rows by port.
    pub ports: Vec<PortStatsRow>,
}

/// One row of `stats pmd`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmdStatsRow {
    /// PMD.
    pub pmd: PmdInfo,
    /// Named counters (packets, emc_hits, megaflow_hits, upcalls, ...).
    pub counters: BTreeMap<String, u64>,
}

/// `stats pmd`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmdStatsReply {
    /// Rows.
    pub pmds: Vec<PmdStatsRow>,
}

/// `stats drops`: `{"drops":{"<reason>":N,..}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropsReply {
    /// Count per drop reason.
    pub drops: BTreeMap<String, u64>,
}

/// `stats caches`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachesReply {
    /// Per PMD: named counters.
    pub pmds: Vec<BTreeMap<String, u64>>,
}

/// One megaflow of `dump-cache`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRow {
    /// PMD holding it.
    pub pmd: usize,
    /// Masked key and mask, as `field=value/mask` text.
    pub r#match: String,
    /// Datapath actions.
    pub actions: String,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Milliseconds since last hit.
    pub idle_ms: u64,
}

/// `dump-cache`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReply {
    /// Megaflows.
    pub megaflows: Vec<CacheRow>,
}

/// `trace`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceReply {
    /// Explanation, one step a line.
    pub steps: Vec<String>,
    /// Final datapath actions.
    pub actions: String,
}

/// `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// Per daemon.
    pub daemons: Vec<DaemonStatus>,
}

/// One daemon in `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// `vswitchd` / `vswitch-controld`.
    pub name: String,
    /// `running` / `stopped`.
    pub state: String,
    /// Pid when running.
    pub pid: Option<u32>,
    /// Boot id when running.
    pub boot_id: Option<u64>,
    /// Seconds since start.
    pub uptime_s: Option<u64>,
    /// Extra facts (state file, datapath sync, ...).
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

/// Rules that expired in the datapath.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiredReply {
    /// (bridge, rule).
    pub rules: Vec<(String, WireRule)>,
}

/// What the datapath holds, for reconciliation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// [`HelloReply::boot_id`] of the datapath process.
    pub boot_id: u64,
    /// Bridges.
    pub bridges: Vec<DpBridge>,
}

/// One bridge of an [`Inventory`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpBridge {
    /// Name.
    pub name: String,
    /// Ports with their numbers and specs.
    pub ports: Vec<DpPort>,
    /// Rules, without counters.
    pub rules: Vec<WireRule>,
    /// Groups.
    pub groups: Vec<WireGroup>,
}

/// One port of an [`Inventory`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpPort {
    /// OpenFlow number.
    pub ofport: u32,
    /// The spec it was opened from.
    pub spec: PortSpec,
}

/// A validated port specification: everything vswitchd needs to open it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Port name.
    pub name: String,
    /// `tap`, `afxdp`, `afpacket`, `vxlan`.
    pub r#type: String,
    /// The options (without `type`), already validated.
    pub options: BTreeMap<String, String>,
}

/// VLAN membership of a port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WireVlan {
    /// Every VLAN, tagged.
    Trunk,
    /// Untagged frames belong to this VLAN.
    Access(u16),
    /// These VLANs, tagged.
    Trunks(Vec<u16>),
}

/// A [`Match`] on the wire: the packed key words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireMatch {
    /// Pre-masked value words.
    pub value: [u64; KEY_WORDS],
    /// Mask words.
    pub mask: [u64; KEY_WORDS],
}

impl From<&Match> for WireMatch {
    fn from(m: &Match) -> Self {
        WireMatch {
            value: m.value.words,
            mask: m.mask.words,
        }
    }
}

impl From<&WireMatch> for Match {
    fn from(w: &WireMatch) -> Self {
        let mask = FlowKey { words: w.mask };
        // Re-mask: a hand-made message must not install a value with bits
        // outside its mask, which would never match.
        let mut value = FlowKey { words: w.value };
        for (v, m) in value.words.iter_mut().zip(mask.words.iter()) {
            *v &= *m;
        }
        Match { value, mask }
    }
}

/// An [`Action`] on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireAction {
    /// [`Action::Output`].
    Output(u32),
    /// [`Action::Normal`].
    Normal,
    /// [`Action::Flood`].
    Flood,
    /// [`Action::All`].
    All,
    /// [`Action::InPort`].
    InPort,
    /// [`Action::SetVlanVid`].
    SetVlanVid(u16),
    /// [`Action::SetVlanPcp`].
    SetVlanPcp(u8),
    /// [`Action::StripVlan`].
    StripVlan,
    /// [`Action::PushVlan`].
    PushVlan(u16),
    /// [`Action::SetEthSrc`].
    SetEthSrc([u8; 6]),
    /// [`Action::SetEthDst`].
    SetEthDst([u8; 6]),
    /// [`Action::SetIpv4Src`].
    SetIpv4Src(u32),
    /// [`Action::SetIpv4Dst`].
    SetIpv4Dst(u32),
    /// [`Action::SetTpSrc`].
    SetTpSrc(u16),
    /// [`Action::SetTpDst`].
    SetTpDst(u16),
    /// [`Action::DecTtl`].
    DecTtl,
    /// [`Action::SetTunnel`].
    SetTunnel(u32),
    /// [`Action::Resubmit`].
    Resubmit(u8),
    /// [`Action::GotoTable`].
    GotoTable(u8),
    /// [`Action::Group`].
    Group(u32),
}

impl From<&Action> for WireAction {
    fn from(a: &Action) -> Self {
        match *a {
            Action::Output(p) => WireAction::Output(p),
            Action::Normal => WireAction::Normal,
            Action::Flood => WireAction::Flood,
            Action::All => WireAction::All,
            Action::InPort => WireAction::InPort,
            Action::SetVlanVid(v) => WireAction::SetVlanVid(v),
            Action::SetVlanPcp(v) => WireAction::SetVlanPcp(v),
            Action::StripVlan => WireAction::StripVlan,
            Action::PushVlan(v) => WireAction::PushVlan(v),
            Action::SetEthSrc(v) => WireAction::SetEthSrc(v),
            Action::SetEthDst(v) => WireAction::SetEthDst(v),
            Action::SetIpv4Src(v) => WireAction::SetIpv4Src(v),
            Action::SetIpv4Dst(v) => WireAction::SetIpv4Dst(v),
            Action::SetTpSrc(v) => WireAction::SetTpSrc(v),
            Action::SetTpDst(v) => WireAction::SetTpDst(v),
            Action::DecTtl => WireAction::DecTtl,
            Action::SetTunnel(v) => WireAction::SetTunnel(v),
            Action::Resubmit(v) => WireAction::Resubmit(v),
            Action::GotoTable(v) => WireAction::GotoTable(v),
            Action::Group(v) => WireAction::Group(v),
        }
    }
}

impl From<&WireAction> for Action {
    fn from(a: &WireAction) -> Self {
        match *a {
            WireAction::Output(p) => Action::Output(p),
            WireAction::Normal => Action::Normal,
            WireAction::Flood => Action::Flood,
            WireAction::All => Action::All,
            WireAction::InPort => Action::InPort,
            WireAction::SetVlanVid(v) => Action::SetVlanVid(v),
            WireAction::SetVlanPcp(v) => Action::SetVlanPcp(v),
            WireAction::StripVlan => Action::StripVlan,
            WireAction::PushVlan(v) => Action::PushVlan(v),
            WireAction::SetEthSrc(v) => Action::SetEthSrc(v),
            WireAction::SetEthDst(v) => Action::SetEthDst(v),
            WireAction::SetIpv4Src(v) => Action::SetIpv4Src(v),
            WireAction::SetIpv4Dst(v) => Action::SetIpv4Dst(v),
            WireAction::SetTpSrc(v) => Action::SetTpSrc(v),
            WireAction::SetTpDst(v) => Action::SetTpDst(v),
            WireAction::DecTtl => Action::DecTtl,
            WireAction::SetTunnel(v) => Action::SetTunnel(v),
            WireAction::Resubmit(v) => Action::Resubmit(v),
            WireAction::GotoTable(v) => Action::GotoTable(v),
            WireAction::Group(v) => Action::Group(v),
        }
    }
}

/// A [`Rule`] on the wire (and in `state.json`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireRule {
    /// Table.
    pub table: u8,
    /// Priority.
    pub priority: u16,
    /// Match.
    pub r#match: WireMatch,
    /// Actions.
    pub actions: Vec<WireAction>,
    /// Cookie.
    #[serde(default)]
    pub cookie: u64,
    /// Idle timeout, seconds.
    #[serde(default)]
    pub idle_timeout: u16,
    /// Hard timeout, seconds.
    #[serde(default)]
    pub hard_timeout: u16,
}

impl From<&Rule> for WireRule {
    fn from(r: &Rule) -> Self {
        WireRule {
            table: r.table,
            priority: r.priority,
            r#match: (&r.r#match).into(),
            actions: r.actions.iter().map(Into::into).collect(),
            cookie: r.cookie,
            idle_timeout: r.idle_timeout,
            hard_timeout: r.hard_timeout,
        }
    }
}

impl From<&WireRule> for Rule {
    fn from(w: &WireRule) -> Self {
        Rule {
            table: w.table,
            priority: w.priority,
            r#match: (&w.r#match).into(),
            actions: w.actions.iter().map(Into::into).collect(),
            cookie: w.cookie,
            idle_timeout: w.idle_timeout,
            hard_timeout: w.hard_timeout,
        }
    }
}

/// A [`Group`] on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WireGroup {
    /// Id.
    pub id: u32,
    /// `select` or `all`.
    pub r#type: String,
    /// Buckets: (weight, actions).
    pub buckets: Vec<(u16, Vec<WireAction>)>,
}

impl From<&Group> for WireGroup {
    fn from(g: &Group) -> Self {
        WireGroup {
            id: g.id,
            r#type: match g.kind {
                GroupType::Select => "select",
                GroupType::All => "all",
            }
            .to_owned(),
            buckets: g
                .buckets
                .iter()
                .map(|b| (b.weight, b.actions.iter().map(Into::into).collect()))
                .collect(),
        }
    }
}

impl TryFrom<&WireGroup> for Group {
    type Error = ApiError;

    fn try_from(w: &WireGroup) -> Result<Self, ApiError> {
        let kind = match w.r#type.as_str() {
            "select" => GroupType::Select,
            "all" => GroupType::All,
            other => {
                return Err(ApiError::new(
                    ErrorKind::Malformed,
                    format!("group {}: unknown type \"{other}\"", w.id),
                ))
            }
        };
        Ok(Group {
            id: w.id,
            kind,
            buckets: w
                .buckets
                .iter()
                .map(|(weight, actions)| Bucket {
                    weight: *weight,
                    actions: actions.iter().map(Into::into).collect(),
                })
                .collect(),
        })
    }
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut n = 0;
    for part in s.split([':', '-']) {
        if n == 6 || part.is_empty() || part.len() > 2 {
            return None;
        }
        out[n] = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath::flow::Field;

    #[test]
    fn request_wire_form_is_tagged_kebab_case() {
        let r = Request::AddBridge {
            bridge: "br0".into(),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"call":"add-bridge","bridge":"br0"}"#);
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        assert_eq!(r.call_name(), "add-bridge");
    }

    #[test]
    fn unknown_call_and_missing_field_are_errors() {
        assert!(serde_json::from_str::<Request>(r#"{"call":"format-disk"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"call":"add-bridge"}"#).is_err());
    }

    #[test]
    fn read_calls_are_not_mutating() {
        assert!(!Request::Show.is_mutating());
        assert!(Request::Show.is_datapath_read());
        let add = Request::AddFlows {
            bridge: "b".into(),
            rules: vec![],
        };
        assert!(add.is_mutating());
        assert!(!add.is_datapath_read());
        assert!(Request::DpTakeExpired.is_mutating());
    }

    #[test]
    fn rule_round_trips_through_wire_form() {
        let mut r = Rule::new(
            3,
            100,
            Match::ANY
                .with(Field::EthType, 0x0800)
                .with(Field::NwSrc, 0x0a00_0001)
                .with(Field::InPort, 7),
            vec![
                Action::SetEthDst([1, 2, 3, 4, 5, 6]),
                Action::Output(2),
                Action::Group(9),
            ],
        );
        r.cookie = 0xdead;
        r.idle_timeout = 10;
        let w = WireRule::from(&r);
        let json = serde_json::to_string(&w).unwrap();
        let back: WireRule = serde_json::from_str(&json).unwrap();
        assert_eq!(Rule::from(&back), r);
    }

    #[test]
    fn wire_match_value_is_remasked() {
        let mut w = WireMatch::from(&Match::ANY.with(Field::EthType, 0x86dd));
        w.value[0] = u64::MAX; // bits outside the mask
        let m = Match::from(&w);
        assert_eq!(m, Match::ANY.with(Field::EthType, 0x86dd));
    }

    #[test]
    fn group_round_trips_and_bad_type_is_rejected() {
        let g = Group {
            id: 1,
            kind: GroupType::Select,
            buckets: vec![
                Bucket {
                    weight: 1,
                    actions: vec![Action::Output(1)],
                },
                Bucket {
                    weight: 2,
                    actions: vec![Action::Output(2)],
                },
            ],
        };
        let w = WireGroup::from(&g);
        assert_eq!(Group::try_from(&w).unwrap(), g);
        let mut bad = w;
        bad.r#type = "fast-failover".into();
        let e = Group::try_from(&bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert!(e.message.contains("fast-failover"));
    }

    #[test]
    fn response_shapes() {
        let ok: Response = Ok(Reply::Drops(DropsReply {
            drops: [("no_match".to_owned(), 3)].into_iter().collect(),
        }))
        .into();
        let s = serde_json::to_string(&ok).unwrap();
        assert_eq!(s, r#"{"ok":{"reply":"drops","drops":{"no_match":3}}}"#);
        let err: Response = Err(ApiError::rejected("no bridge named \"x\"")).into();
        let s = serde_json::to_string(&err).unwrap();
        assert!(s.starts_with(r#"{"error":{"kind":"rejected""#), "{s}");
    }

    #[test]
    fn mac_parse_and_format() {
        assert_eq!(
            parse_mac("02:00:0a:FF:00:01"),
            Some([2, 0, 0x0a, 0xff, 0, 1])
        );
        assert_eq!(format_mac([2, 0, 0x0a, 0xff, 0, 1]), "02:00:0a:ff:00:01");
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:zz"), None);
        assert_eq!(parse_mac(""), None);
    }
}
