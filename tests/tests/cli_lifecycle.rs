//! System tests (root) of `vswitchctl` against real daemons: start is
//! idempotent, exit codes follow the contract, bad messages and corrupt
//! state are refused without harming the daemons.

mod cli_support;

use cli_support::{ready, Instance};
use control::api::{ErrorKind, Response, API_VERSION, MAX_MESSAGE_BYTES};
use control::ipc::{Client, IpcError};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[test]
fn start_is_idempotent_and_stop_makes_reads_unreachable() {
    if !ready("start_is_idempotent_and_stop_makes_reads_unreachable") {
        return;
    }
    let inst = Instance::new();
    inst.ctl_ok(&["start"]);
    let (d1, c1) = (inst.pid("vswitchd"), inst.pid("vswitch-controld"));
    assert!(d1.is_some() && c1.is_some());
    inst.ctl_ok(&["start"]);
    assert_eq!(
        inst.pid("vswitchd"),
        d1,
        "second start must not restart vswitchd"
    );
    assert_eq!(inst.pid("vswitch-controld"), c1);
    assert_eq!(inst.code(&["status"]), 0);
    inst.ctl_ok(&["stop"]);
    assert_eq!(inst.code(&["show"]), 3);
    assert_eq!(inst.code(&["add-br", "br0"]), 3);
    assert_eq!(inst.code(&["status"]), 3);
}

#[test]
fn exit_codes_follow_the_contract() {
    if !ready("exit_codes_follow_the_contract") {
        return;
    }
    let inst = Instance::new();
    inst.ctl_ok(&["start"]);
    inst.ctl_ok(&["add-br", "br0"]);
    // 1: rejected requests, with the reason.
    for args in [
        &["add-br", "br0"][..],
        &["del-br", "nope"],
        &["add-flow", "br0", "priority=10,icmpx,actions=drop"],
        &["add-flow", "nope", "actions=drop"],
        &["add-port", "br0", "p1", "type=tap", "netns=vswnonexistent0"],
        &["add-port", "br0", "a234567890123456", "type=tap"],
        &["add-port", "br0", "p1", "type=memory"],
        &["del-flows", "br0", "nw_src=1.2.3.4"],
        &["fdb-add", "br0", "02:00:00:00:00:01", "ghost"],
        &["trace", "br0", "in_port=ghost"],
        &["add-group", "br0", "group_id=x"],
    ] {
        let o = inst.ctl(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(!o.stderr.is_empty(), "{args:?} must say why");
    }
    // 2: malformed command lines.
    for args in [
        &["add-br"][..],
        &["add-port", "br0", "p1", "type"],
        &["dump-flows", "br0", "--table", "x"],
        &["stats", "all"],
        &["frobnicate"],
    ] {
        assert_eq!(inst.code(args), 2, "{args:?}");
    }
    // A refused add-port left nothing behind.
    let show = inst.ctl_ok(&["-o", "json", "show"]);
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["bridges"][0]["ports"].as_array().unwrap().len(), 0);
    // The daemons are still fine.
    assert_eq!(inst.code(&["status"]), 0);
}

#[test]
fn flows_round_trip_through_dump_and_del_flows_is_non_strict() {
    if !ready("flows_round_trip_through_dump_and_del_flows_is_non_strict") {
        return;
    }
    let inst = Instance::new();
    inst.ctl_ok(&["start"]);
    inst.ctl_ok(&["add-br", "br0"]);
    let file = inst.dir.join("rules.txt");
    std::fs::write(
        &file,
        "# test rules\npriority=10,icmp,actions=drop\npriority=20,tcp,tp_dst=80,actions=NORMAL\n\npriority=30,icmp,nw_src=10.0.0.1,actions=drop\n",
    )
    .unwrap();
    inst.ctl_ok(&["add-flows", "br0", file.to_str().unwrap()]);
    let before = inst.rules("br0");
    assert_eq!(before.len(), 4);
    // --no-stats output re-loads to the same set.
    let dump = inst.dir.join("dump.txt");
    std::fs::write(&dump, before.join("\n")).unwrap();
    inst.ctl_ok(&["replace-flows", "br0", dump.to_str().unwrap()]);
    assert_eq!(inst.rules("br0"), before);
    // Non-strict: icmp and narrower go, the catch-all stays.
    inst.ctl_ok(&["del-flows", "br0", "icmp"]);
    let after = inst.rules("br0");
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after
        .iter()
        .any(|r| r.ends_with("actions=NORMAL") && r.contains("priority=0")));
    // JSON shape of dump-flows.
    let j: serde_json::Value =
        serde_json::from_str(&inst.ctl_ok(&["dump-flows", "br0", "-o", "json"])).unwrap();
    let f = &j["flows"][0];
    for k in [
        "table",
        "priority",
        "match",
        "actions",
        "cookie",
        "n_packets",
        "n_bytes",
        "duration_s",
    ] {
        assert!(!f[k].is_null(), "dump-flows json lacks {k}: {f}");
    }
    // State survives a restart of both daemons.
    inst.ctl_ok(&["stop"]);
    inst.ctl_ok(&["start"]);
    assert_eq!(inst.rules("br0"), after);
}

#[test]
fn corrupt_state_is_kept_aside_and_reported() {
    if !ready("corrupt_state_is_kept_aside_and_reported") {
        return;
    }
    let inst = Instance::new();
    let state = inst.dir.join("state.json");
    std::fs::write(&state, b"{\"format\":1,\"bridges\":[{").unwrap();
    let o = inst.ctl(&["start"]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(state.to_str().unwrap()) && err.contains("corrupt"),
        "{err}"
    );
    let aside: Vec<_> = std::fs::read_dir(&inst.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"{\"format\":1,\"bridges\":[{"
    );
    // Usable afterwards, with a valid new state file.
    inst.ctl_ok(&["add-br", "br0"]);
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains("\"br0\""));
}

fn raw_exchange(sock: &std::path::Path, lines: &[&[u8]]) -> Vec<serde_json::Value> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut out = Vec::new();
    for l in lines {
        if s.write_all(l).and_then(|_| s.write_all(b"\n")).is_err() {
            break;
        }
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        out.push(serde_json::from_str(&line).expect("every answer is JSON"));
    }
    out
}

#[test]
fn bad_api_messages_get_typed_errors_and_daemons_keep_running() {
    if !ready("bad_api_messages_get_typed_errors_and_daemons_keep_running") {
        return;
    }
    let inst = Instance::new();
    inst.ctl_ok(&["start"]);
    for sock in ["controld.sock", "vswitchd.sock"] {
        let path = inst.dir.join(sock);
        // Wrong version.
        let r = raw_exchange(&path, &[b"{\"api_version\":99,\"client\":\"t\"}"]);
        assert_eq!(r[0]["error"]["kind"], "version", "{sock}: {r:?}");
        // Malformed after a good hello: answered, connection kept.
        let hello = format!("{{\"api_version\":{API_VERSION},\"client\":\"t\"}}");
        let r = raw_exchange(
            &path,
            &[
                hello.as_bytes(),
                b"{\"call\":",
                b"{\"call\":\"rm-rf\"}",
                b"{\"call\":\"show\"}",
            ],
        );
        assert_eq!(r.len(), 4, "{sock}: {r:?}");
        assert!(r[0].get("ok").is_some(), "{sock}: hello {r:?}");
        assert_eq!(r[1]["error"]["kind"], "malformed");
        assert_eq!(r[2]["error"]["kind"], "malformed");
        assert_eq!(r[3]["ok"]["reply"], "show");
        // Oversized.
        let mut c = Client::connect(&path, "t", Duration::from_secs(30)).unwrap();
        let big = vec![b'x'; MAX_MESSAGE_BYTES + 1];
        match c.call_raw(&big) {
            Ok(Response::Error(e)) => assert_eq!(e.kind, ErrorKind::TooLarge),
            Err(IpcError::Io { .. } | IpcError::Closed(_)) => {}
            other => panic!("{sock}: unexpected {other:?}"),
        }
    }
    // vswitchd refuses operator changes that bypass vswitch-controld.
    let mut c =
        Client::connect(&inst.dir.join("vswitchd.sock"), "t", Duration::from_secs(5)).unwrap();
    let e = c
        .call(&control::api::Request::AddBridge {
            bridge: "sneaky".into(),
        })
        .unwrap_err();
    assert!(matches!(e, IpcError::Api(ref a) if a.kind == ErrorKind::Unsupported));
    assert_eq!(inst.code(&["status"]), 0);
    inst.ctl_ok(&["add-br", "br0"]);
}
