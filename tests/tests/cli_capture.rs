//! System test (root) of `vswitchctl capture`: the daemon streams a port's
//! frames over its socket, vswitchctl writes a pcap file with the caller's
//! rights, and stops at `--count`.

mod cli_support;

use cli_support::{bin_dir, ready, Instance};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tests::{ChildGuard, Netns};

#[test]
fn capture_writes_a_pcap_of_both_directions_and_stops_at_count() {
    if !ready("capture_writes_a_pcap_of_both_directions_and_stops_at_count") {
        return;
    }
    let inst = Instance::new();
    inst.ctl_ok(&["start"]);
    inst.ctl_ok(&["add-br", "br0"]);
    let (a, b) = (Netns::new("capa"), Netns::new("capb"));
    let na = format!("netns={}", a.name());
    let nb = format!("netns={}", b.name());
    inst.ctl_ok(&["add-port", "br0", "ca", "type=tap", &na, "ip=10.97.0.1/24"]);
    inst.ctl_ok(&["add-port", "br0", "cb", "type=tap", &nb, "ip=10.97.0.2/24"]);
    let file = inst.dir.join("ca.pcap");
    let child = Command::new(bin_dir().join("vswitchctl"))
        .arg("--run-dir")
        .arg(&inst.dir)
        .args(["capture", "ca"])
        .arg(&file)
        .args(["--count", "6"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start capture");
    let mut guard = ChildGuard::new(child);
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = a.exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", "10.97.0.2"]);
        if guard.child_mut().try_wait().expect("wait").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "capture did not stop at --count");
    }
    let out = guard.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcap = std::fs::read(&file).expect("pcap written");
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "pcap magic");
    let mut ofs = 24;
    let mut records = 0;
    let mut ethertypes = Vec::new();
    while ofs + 16 <= pcap.len() {
        let incl = u32::from_le_bytes(pcap[ofs + 8..ofs + 12].try_into().unwrap()) as usize;
        let frame = &pcap[ofs + 16..ofs + 16 + incl];
        ethertypes.push(u16::from_be_bytes([frame[12], frame[13]]));
        ofs += 16 + incl;
        records += 1;
    }
    assert_eq!(ofs, pcap.len(), "records fill the file exactly");
    assert_eq!(records, 6);
    // ARP and/or IPv4 (ping) frames, both directions of port ca.
    assert!(ethertypes
        .iter()
        .all(|t| matches!(t, 0x0800 | 0x0806 | 0x86dd)));
    // A capture on a port that does not exist is a rejected request.
    let bad = inst.dir.join("nope.pcap");
    let o = inst.ctl(&["capture", "nope", bad.to_str().unwrap(), "--count", "1"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    inst.ctl_ok(&["del-port", "br0", "ca"]);
    inst.ctl_ok(&["del-port", "br0", "cb"]);
}
