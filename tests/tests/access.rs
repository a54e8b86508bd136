//! System test (root) of access control (issue 8, part 4): the sockets
//! are root:vswitch 0660, `state.json` is 0640 root:vswitch, a member of
//! group `vswitch` may read but every change is refused by the daemons'
//! `SO_PEERCRED` check (so the check itself is exercised, not only the
//! file mode), a user outside the group cannot connect at all, and root
//! can do everything.
//!
//! Two throwaway users are created with `useradd` (names carry the test's
//! pid) and removed with `userdel` on drop, also when the test panics.
//! The users run the real `vswitchctl` through `setpriv(1)`; raw datapath
//! calls (which `vswitchctl` never sends) are made by this same test
//! binary re-run as the user in helper mode ([`reader_helper`]).

mod cli_support;

use cli_support::{bin_dir, ready, Instance};
use control::api::{ErrorKind, Reply, Request, Response, MAX_MESSAGE_BYTES};
use control::ipc::{Client, IpcError, MAX_READER_REQUEST_BYTES};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tests::Netns;

/// Exit code of `vswitchctl` for "permission denied".
const EXIT_DENIED: i32 = 4;

/// Env var that switches this binary into helper mode.
const HELPER_ENV: &str = "VSWT_ACCESS_HELPER_DIR";

/// A user created for the test; `userdel` on drop.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    fn new(name: String, groups: Option<&str>) -> TestUser {
        let _ = Command::new("userdel").arg(&name).output();
        let mut cmd = Command::new("useradd");
        cmd.args(["--no-create-home", "--shell", "/usr/sbin/nologin"]);
        if let Some(g) = groups {
            cmd.args(["-G", g]);
        }
        let out = cmd.arg(&name).output().expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // From here the guard owns the user, so a failed lookup still
        // removes it.
        let mut u = TestUser {
            name,
            uid: 0,
            gid: 0,
        };
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").arg(flag).arg(&u.name).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        u.uid = id("-u");
        u.gid = id("-g");
        assert_ne!(u.uid, 0);
        u
    }

    /// `setpriv` prefix running a program as this user with its groups.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(program)
            .stdin(Stdio::null());
        c
    }

    /// `vswitchctl --run-dir DIR ARGS` as this user.
    fn ctl(&self, inst: &Instance, args: &[&str]) -> Output {
        self.command(&bin_dir().join("vswitchctl"))
            .arg("--run-dir")
            .arg(&inst.dir)
            .args(args)
            .output()
            .expect("run vswitchctl through setpriv")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn vswitch_gid() -> u32 {
    let o = Command::new("getent")
        .args(["group", "vswitch"])
        .output()
        .expect("getent");
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    line.split(':')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("group vswitch missing after the daemons started: {line:?}"))
}

#[test]
fn group_member_reads_only_outsider_is_refused_root_does_everything() {
    const T: &str = "group_member_reads_only_outsider_is_refused_root_does_everything";
    if !ready(T) {
        return;
    }
    for tool in ["useradd", "userdel", "setpriv", "getent"] {
        if !tests::have_tool(tool) {
            eprintln!("SKIP {T}: {tool} not installed");
            return;
        }
    }
    let inst = Instance::new();
    inst.ctl_ok(&["start"]);
    // The daemons created the group when it was missing (it is part of the
    // installation, so it is left in place).
    let gid = vswitch_gid();
    let tag = std::process::id() % 1_000_000;
    let member = TestUser::new(format!("vswt{tag}m"), Some("vswitch"));
    let outsider = TestUser::new(format!("vswt{tag}o"), None);

    // Root builds something to read: a bridge, a TAP port, a flow.
    let ns = Netns::new("acc");
    let port = format!("acp{tag}");
    inst.ctl_ok(&["add-br", "br0"]);
    inst.ctl_ok(&[
        "add-port",
        "br0",
        &port,
        "type=tap",
        &format!("netns={}", ns.name()),
        "ip=10.98.0.1/24",
    ]);
    inst.ctl_ok(&[
        "add-flow",
        "br0",
        "priority=100,ip,nw_dst=10.98.0.9,actions=drop",
    ]);

    // File modes: sockets 0660 root:vswitch, state 0640 root:vswitch.
    for sock in ["controld.sock", "vswitchd.sock"] {
        let m = std::fs::metadata(inst.dir.join(sock)).unwrap();
        assert_eq!(m.mode() & 0o777, 0o660, "{sock} mode");
        assert_eq!((m.uid(), m.gid()), (0, gid), "{sock} owner");
    }
    let m = std::fs::metadata(inst.dir.join("state.json")).unwrap();
    assert_eq!(m.mode() & 0o777, 0o640, "state.json mode");
    assert_eq!((m.uid(), m.gid()), (0, gid), "state.json owner");

    let before = inst.rules("br0");

    // The member reads.
    for args in [
        &["show"][..],
        &["status"],
        &["dump-flows", "br0"],
        &["dump-groups", "br0"],
        &["fdb-show", "br0"],
        &["stats", "ports"],
        &["stats", "drops"],
        &["dump-cache", "br0"],
        &["trace", "br0", "in_port=1,ip,nw_dst=10.98.0.9"],
    ] {
        let o = member.ctl(&inst, args);
        assert!(o.status.success(), "member {args:?}: {}", text(&o));
    }
    // trace is a read: it must not teach the FDB the traced source MAC.
    let trace = format!("in_port={port},dl_src=02:5e:ed:00:00:77,dl_dst=ff:ff:ff:ff:ff:ff");
    let o = member.ctl(&inst, &["trace", "br0", &trace]);
    assert!(o.status.success(), "member trace: {}", text(&o));
    assert!(
        !inst
            .ctl_ok(&["fdb-show", "br0"])
            .contains("02:5e:ed:00:00:77"),
        "a reader's trace changed the FDB"
    );
    let o = member.ctl(&inst, &["dump-flows", "br0"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("10.98.0.9"),
        "member sees the flows: {}",
        text(&o)
    );

    // Every change by the member is refused by the daemon, with exit 4.
    let pcap = format!("/tmp/vswt-{tag}-member.pcap");
    let _ = std::fs::remove_file(&pcap);
    for args in [
        &["add-br", "br1"][..],
        &["del-br", "br0"],
        &["add-port", "br0", "acx", "type=tap"],
        &["del-port", "br0", &port],
        &["set-port", "br0", &port, "vlan=5"],
        &["add-flow", "br0", "priority=5,actions=drop"],
        &["del-flows", "br0"],
        &["replace-flows", "br0", "/dev/null"],
        &[
            "add-group",
            "br0",
            "group_id=1,type=all,bucket=actions=drop",
        ],
        &["del-groups", "br0"],
        &["fdb-flush", "br0"],
        &["fdb-add", "br0", "02:00:00:00:00:09", &port],
        &["fdb-del", "br0", "02:00:00:00:00:09"],
        &["pmd-rebalance"],
        &["capture", &port, &pcap, "--count", "1"],
    ] {
        let o = member.ctl(&inst, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(EXIT_DENIED),
            "member {args:?}: {}",
            text(&o)
        );
        assert!(
            err.contains("permission denied") && err.contains("needs root"),
            "member {args:?}: {}",
            text(&o)
        );
        assert!(err.contains(&format!("uid {}", member.uid)), "{err}");
    }
    // capture: vswitchctl created the pcap itself, with the member's own
    // rights, before the daemon refused: no daemon opened that path.
    let m = std::fs::metadata(&pcap).expect("pcap created by vswitchctl");
    assert_eq!(m.uid(), member.uid, "pcap owned by the caller");
    let _ = std::fs::remove_file(&pcap);
    // `stop` needs the run dir's lock and signals root's processes: refused.
    let o = member.ctl(&inst, &["stop"]);
    assert!(!o.status.success(), "member stop: {}", text(&o));
    assert!(inst.pid("vswitchd").is_some() && inst.pid("vswitch-controld").is_some());
    assert_eq!(inst.rules("br0"), before, "nothing changed");

    // Raw calls a CLI never sends, straight to both sockets, as the member.
    let o = reader_helper(&member, &inst, "member");
    assert!(o.status.success(), "member raw calls: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 passed"),
        "the helper ran: {}",
        text(&o)
    );
    assert_eq!(inst.rules("br0"), before, "nothing changed by raw calls");

    // The outsider cannot connect at all: a clear error, exit 4.
    for args in [&["show"][..], &["dump-flows", "br0"], &["add-br", "br1"]] {
        let o = outsider.ctl(&inst, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(EXIT_DENIED),
            "outsider {args:?}: {}",
            text(&o)
        );
        assert!(
            err.contains("permission denied") && err.contains("group \"vswitch\""),
            "outsider {args:?}: {}",
            text(&o)
        );
    }
    let o = reader_helper(&outsider, &inst, "outsider");
    assert!(o.status.success(), "outsider raw calls: {}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 passed"),
        "the helper ran: {}",
        text(&o)
    );
    // Neither can read the state file.
    let o = outsider
        .command(Path::new("/bin/cat"))
        .arg(inst.dir.join("state.json"))
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "outsider read state.json: {}",
        text(&o)
    );

    // Root does everything.
    inst.ctl_ok(&["add-br", "br1"]);
    inst.ctl_ok(&["add-flow", "br1", "priority=5,actions=drop"]);
    inst.ctl_ok(&["del-flows", "br1"]);
    inst.ctl_ok(&["fdb-flush", "br0"]);
    inst.ctl_ok(&["del-br", "br1"]);
    inst.ctl_ok(&["del-port", "br0", &port]);
    inst.ctl_ok(&["stop"]);
}

/// Runs [`raw_calls_as_reader`] in this binary as `user`.
fn reader_helper(user: &TestUser, inst: &Instance, role: &str) -> Output {
    let exe = std::env::current_exe().unwrap();
    user.command(&exe)
        .args([
            "--exact",
            "raw_calls_as_reader",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, &inst.dir)
        .env("VSWT_ACCESS_ROLE", role)
        .output()
        .expect("run the helper through setpriv")
}

/// Helper mode (run as a test user by the test above; does nothing on its
/// own): datapath programming calls to vswitchd and changes to
/// vswitch-controld are refused by `SO_PEERCRED` for a group member, a
/// request larger than the readers' cap is refused without being
/// buffered, and an outsider cannot connect.
#[test]
#[ignore = "helper of group_member_reads_only_outsider_is_refused_root_does_everything"]
fn raw_calls_as_reader() {
    let Some(dir) = std::env::var_os(HELPER_ENV) else {
        eprintln!("helper mode only");
        return;
    };
    let dir = Path::new(&dir);
    let role = std::env::var("VSWT_ACCESS_ROLE").unwrap_or_default();
    let t = Duration::from_secs(20);
    let vswitchd = dir.join("vswitchd.sock");
    let controld = dir.join("controld.sock");
    if role == "outsider" {
        for p in [&vswitchd, &controld] {
            match Client::connect(p, "access-test", t) {
                Err(e @ IpcError::Denied { .. }) => {
                    assert!(e.is_denied());
                    assert!(e.to_string().contains("permission denied"), "{e}");
                }
                Err(other) => panic!("{}: expected Denied, got {other}", p.display()),
                Ok(_) => panic!("{}: outsider connected", p.display()),
            }
        }
        return;
    }
    let denied = |c: &mut Client, req: Request| {
        let name = req.call_name();
        match c.call(&req) {
            Err(IpcError::Api(e)) => {
                assert_eq!(e.kind, ErrorKind::PermissionDenied, "{name}: {}", e.message);
                assert!(e.message.contains("needs root"), "{name}: {}", e.message);
            }
            other => panic!("{name}: expected permission denied, got {other:?}"),
        }
    };
    let mut dp = Client::connect(&vswitchd, "access-test", t).expect("member connects");
    assert!(matches!(
        dp.call(&Request::DpInventory),
        Ok(Reply::Inventory(_))
    ));
    denied(
        &mut dp,
        Request::DpAddBridge {
            bridge: "evil".into(),
        },
    );
    denied(
        &mut dp,
        Request::DpDelBridge {
            bridge: "br0".into(),
        },
    );
    denied(
        &mut dp,
        Request::DpFdbFlush {
            bridge: "br0".into(),
        },
    );
    // Taking expired rules would hide them from vswitch-controld.
    denied(&mut dp, Request::DpTakeExpired);
    denied(
        &mut dp,
        Request::CaptureStart {
            port: "x".into(),
            count: 1,
        },
    );
    denied(&mut dp, Request::CaptureRead { id: 1 });
    // The connection is still usable after refusals.
    assert!(matches!(dp.call(&Request::Show), Ok(Reply::Show(_))));
    let mut cd = Client::connect(&controld, "access-test", t).expect("member connects");
    denied(
        &mut cd,
        Request::AddBridge {
            bridge: "evil".into(),
        },
    );
    denied(
        &mut cd,
        Request::DelBridge {
            bridge: "br0".into(),
        },
    );
    // A request above the readers' cap (far below the root cap) is
    // refused as too large and the connection closed.
    const { assert!(MAX_READER_REQUEST_BYTES * 4 < MAX_MESSAGE_BYTES) };
    let big = format!(
        "{{\"call\":\"show\",\"pad\":\"{}\"}}",
        "x".repeat(MAX_READER_REQUEST_BYTES * 2)
    );
    match cd.call_raw(big.as_bytes()) {
        Ok(Response::Error(e)) => assert_eq!(e.kind, ErrorKind::TooLarge, "{}", e.message),
        Ok(other) => panic!("oversized request answered {other:?}"),
        // The server may close before the whole line is written.
        Err(IpcError::Io { .. } | IpcError::Closed(_)) => {}
        Err(other) => panic!("oversized request: {other}"),
    }
}
