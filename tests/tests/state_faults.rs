//! System tests (root) of `state.json` under faults (issue 8, part 3):
//! a full disk rejects a change with a clear error naming the cause, the
//! datapath is rolled back and the old file is intact, and the same change
//! succeeds once space is freed; a corrupt file at start is moved aside
//! (never overwritten) and the running datapath's configuration adopted.
//!
//! The disk is a tiny tmpfs mounted on the instance's run dir (which holds
//! its `state.json`), unmounted on drop, also when the test panics.

mod cli_support;

use cli_support::{ready, Instance};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a directory; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        // mode=0755: the daemons refuse a run dir others can write to, and
        // a tmpfs root is 1777 by default.
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        for _ in 0..20 {
            if Command::new("umount")
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success())
            {
                let _ = std::fs::remove_dir(&self.dir);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // Something still holds a file open: detach it anyway.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The instance on its own tmpfs. Fields drop in order: the daemons stop
/// (closing their logs) before the unmount.
struct SmallDisk {
    inst: Instance,
    _fs: Tmpfs,
}

/// Fills the file system holding `dir` with `dir/filler` until ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create filler");
    let chunk = vec![0xa5u8; 64 << 10];
    // Bounded: the tmpfs is a few MiB.
    for _ in 0..10_000 {
        match f.write(&chunk) {
            Ok(0) => return path,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return path,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    panic!("{} never filled up", dir.display());
}

fn tmp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            n.contains(".tmp-").then_some(n)
        })
        .collect()
}

#[test]
fn full_disk_rejects_change_keeps_datapath_and_state_then_recovers() {
    const T: &str = "full_disk_rejects_change_keeps_datapath_and_state_then_recovers";
    if !ready(T) {
        return;
    }
    if !tests::have_tool("mount") || !tests::have_tool("umount") {
        eprintln!("SKIP {T}: mount/umount not installed");
        return;
    }
    let inst = Instance::new();
    let fs = Tmpfs::mount(&inst.dir, "4m");
    let env = SmallDisk { inst, _fs: fs };
    let inst = &env.inst;
    inst.ctl_ok(&["start"]);
    inst.ctl_ok(&["add-br", "br0"]);
    inst.ctl_ok(&[
        "add-flow",
        "br0",
        "priority=10,ip,nw_dst=10.99.0.1,actions=drop",
    ]);
    let state = inst.dir.join("state.json");
    let rules_before = inst.rules("br0");
    let state_before = std::fs::read(&state).unwrap();

    let filler = fill(&inst.dir);
    let new_flow = "priority=20,ip,nw_dst=10.99.0.2,actions=drop";
    let o = inst.ctl(&["add-flow", "br0", new_flow]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "add-flow on a full disk: {err}");
    assert!(
        err.contains("not applied") && err.contains("No space left on device"),
        "error names the cause: {err}"
    );
    assert!(err.contains("state.json"), "error names the file: {err}");
    // The datapath was rolled back and the file is the old one, whole.
    assert_eq!(inst.rules("br0"), rules_before, "datapath unchanged");
    assert_eq!(
        std::fs::read(&state).unwrap(),
        state_before,
        "old state intact"
    );
    assert!(tmp_files(&inst.dir).is_empty(), "no temporary file left");
    // Other changes fail the same way; reads keep working.
    let o = inst.ctl(&["add-br", "br1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(inst.ctl_ok(&["show"]).contains("br0"));
    assert!(!inst.ctl_ok(&["show"]).contains("br1"));

    // Space freed: the same command succeeds and is persisted.
    std::fs::remove_file(&filler).unwrap();
    inst.ctl_ok(&["add-flow", "br0", new_flow]);
    let rules = inst.rules("br0");
    assert_eq!(rules.len(), rules_before.len() + 1);
    assert!(rules.iter().any(|r| r.contains("10.99.0.2")), "{rules:?}");
    let count = |bytes: &[u8]| {
        control::state::parse_state(bytes)
            .expect("valid state.json")
            .bridge("br0")
            .expect("br0 persisted")
            .rules
            .len()
    };
    assert_eq!(
        count(&std::fs::read(&state).unwrap()),
        count(&state_before) + 1,
        "the new rule is persisted"
    );
    // And it survives a restart of both daemons.
    inst.ctl_ok(&["stop"]);
    inst.ctl_ok(&["start"]);
    assert_eq!(inst.rules("br0"), rules);
    inst.ctl_ok(&["stop"]);
}

#[test]
fn corrupt_state_at_start_is_moved_aside_and_datapath_adopted() {
    const T: &str = "corrupt_state_at_start_is_moved_aside_and_datapath_adopted";
    if !ready(T) {
        return;
    }
    let inst = Instance::new();
    inst.ctl_ok(&["start"]);
    inst.ctl_ok(&["add-br", "br0"]);
    inst.ctl_ok(&[
        "add-flow",
        "br0",
        "priority=10,ip,nw_dst=10.99.1.1,actions=drop",
    ]);
    let rules = inst.rules("br0");
    // vswitch-controld dies; its file is damaged while it is down.
    inst.kill9("vswitch-controld");
    let state = inst.dir.join("state.json");
    let garbage = b"{\"format\":1,\"bridges\":[{\"name\":\"br0\",\"rules\":[{\x00\xff";
    std::fs::write(&state, garbage).unwrap();
    let o = inst.ctl(&["start"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "start: {all}");
    assert!(
        all.contains("corrupt") && all.contains("adopted"),
        "start reports the corrupt file: {all}"
    );
    // The bad file is kept byte for byte beside the new one.
    let aside: Vec<PathBuf> = std::fs::read_dir(&inst.dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            p.file_name()?
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
                .then_some(p)
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage);
    assert!(all.contains(&*aside[0].to_string_lossy()), "{all}");
    // Nothing the operator built was lost: adopted from the datapath and
    // written as a valid new state.
    assert_eq!(inst.rules("br0"), rules);
    let saved = std::fs::read(&state).unwrap();
    let parsed = control::state::parse_state(&saved).expect("new state.json is valid");
    assert!(parsed.bridge("br0").is_some());
    inst.ctl_ok(&["stop"]);
}
