//! AF_XDP port system tests (root; skipped with a message otherwise): two
//! namespaces joined by two AF_XDP ports and the test forwarder. The
//! namespaces keep their default offloads (tx checksum, TSO on), so TCP
//! works only if the port switches off what AF_XDP cannot carry and finishes
//! partial checksums itself.

mod portfwd;

use datapath::port::afxdp::{AfXdpConfig, AfXdpError, AfXdpPort, AttachMode};
use datapath::port::Port;
use portfwd::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Root, `ip`, and a kernel that lets us create an XSKMAP and an AF_XDP
/// socket (a container without CAP_BPF, or a kernel without
/// CONFIG_XDP_SOCKETS, skips with a message instead of failing).
fn require_afxdp(test: &str) -> bool {
    if !tests::require_root(test) {
        return false;
    }
    if let Err(e) = datapath::sys::bpf::XskMap::new(1) {
        eprintln!("SKIP {test}: no bpf(2) here: {e}");
        return false;
    }
    // SAFETY: plain socket(2) probe; the fd is closed right away.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW, 0) };
    if fd < 0 {
        eprintln!(
            "SKIP {test}: no AF_XDP sockets here: {}",
            std::io::Error::last_os_error()
        );
        return false;
    }
    // SAFETY: fd was just opened by this function.
    unsafe { libc::close(fd) };
    true
}

fn open(dev: &str) -> Arc<AfXdpPort> {
    Arc::new(AfXdpPort::open(&AfXdpConfig::new(dev)).expect("AF_XDP port opens"))
}

fn tx_checksum_on(text: &str) -> bool {
    feature_on(text, "tx-checksumming")
}

fn feature_on(text: &str, name: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with(&format!("{name}:")) && l.contains(": on"))
}

/// The peer's receive set-up: (GRO on, `threaded` attribute).
fn peer_napi(t: &Topology) -> (bool, String) {
    let gro = feature_on(&t.offloads(&t.ns2, t.dev2()), "generic-receive-offload");
    let path = format!("/sys/class/net/{}/threaded", t.dev2());
    let threaded = t.ns2.exec_ok("cat", &[&path]).trim().to_string();
    (gro, threaded)
}

#[test]
fn afxdp_forwards_ping_arp_tcp_and_udp_with_default_offloads() {
    if !require_afxdp("afxdp_forwards_ping_arp_tcp_and_udp_with_default_offloads") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    let offloads_before = t.offloads(&t.ns2, t.dev2());
    let napi_before = peer_napi(&t);
    let p1 = open(t.port1());
    let p2 = open(t.port2());
    // peer-napi=auto (default): GRO on the peer, its NAPI inline while the
    // port is idle (fast pings).
    assert_eq!(
        peer_napi(&t),
        (true, "0".to_string()),
        "peer GRO on and NAPI inline while idle"
    );
    assert!(matches!(p2.peer_napi(), Some((false, _))));
    if let Some(c) = p2
        .offload_changes()
        .iter()
        .find(|c| c.offload.name() == "gro")
    {
        assert!(!c.was_on, "GRO switched on: {c}");
    }
    let fwd = Forwarder::start(p1.clone(), p2.clone(), Duration::from_secs(120));

    assert!(ping(&t.ns1, IP2, None), "IPv4 ns1 -> ns2");
    assert!(ping(&t.ns2, IP1, None), "IPv4 ns2 -> ns1");
    assert!(ping(&t.ns1, IP6_2, None), "IPv6 ns1 -> ns2");
    assert!(ping(&t.ns2, IP6_1, None), "IPv6 ns2 -> ns1");
    let neigh = t.ns1.exec_ok("ip", &["neigh", "show", IP2]);
    assert!(
        neigh.contains(&mac_of(&t.ns2, t.dev2())),
        "ARP learned ns2's MAC through the switch: {neigh}"
    );

    // The maintenance tick vswitchd runs once a second, faster here: it
    // samples the transmit rate for peer-napi=auto.
    let tick_stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (p1, p2, stop) = (p1.clone(), p2.clone(), tick_stop.clone());
        std::thread::spawn(move || {
            let mut threaded_seen = false;
            while !stop.load(Ordering::Relaxed) {
                p1.health_check();
                p2.health_check();
                threaded_seen |= matches!(p2.peer_napi(), Some((true, _)));
                std::thread::sleep(Duration::from_millis(50));
            }
            threaded_seen
        })
    };
    let gbps = tcp_transfer(&t, IP2, 100 << 20);
    eprintln!("afxdp: 100 MiB TCP checked end to end, {gbps:.2} Gbit/s");
    tick_stop.store(true, Ordering::Relaxed);
    assert!(
        ticker.join().unwrap(),
        "a bulk transfer made the peer's NAPI threaded: {:?}",
        p2.peer_napi()
    );
    // Idle again: back inline after two samples.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(250));
        p2.health_check();
    }
    assert!(matches!(p2.peer_napi(), Some((false, n)) if n >= 2));
    assert_eq!(peer_napi(&t).1, "0", "peer NAPI inline again when idle");
    let (got, corrupt) = udp_burst(&t, 20_000, 1000);
    eprintln!(
        "afxdp: UDP burst 20000 x 1000 B: received {got}, lost {} ({:.1} %), corrupt {corrupt}",
        20_000 - got,
        (20_000 - got) as f64 / 200.0
    );
    assert!(got > 0 && corrupt == 0);
    let s1 = p1.stats();
    let s2 = p2.stats();
    eprintln!(
        "afxdp: port1 {s1:?}\nafxdp: port2 {s2:?}; csum completed {}",
        p1.csum_fixed() + p2.csum_fixed()
    );
    assert!(s1.rx_packets > 70_000 && s2.tx_packets > 70_000);
    assert_eq!(fwd.stats.errors.load(Ordering::Relaxed), 0);
    drop(fwd);
    drop(p2);
    assert_eq!(peer_napi(&t), napi_before, "peer GRO/NAPI mode restored");
    // Dropping the port restores the peer's offloads.
    if tx_checksum_on(&offloads_before) {
        assert!(
            tx_checksum_on(&t.offloads(&t.ns2, t.dev2())),
            "peer offloads restored"
        );
    }
}

#[test]
fn afxdp_completes_partial_checksums_when_peer_offloads_stay_on() {
    if !require_afxdp("afxdp_completes_partial_checksums_when_peer_offloads_stay_on") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    let open_untouched = |dev: &str| {
        let mut cfg = AfXdpConfig::new(dev);
        cfg.fix_offloads = false;
        Arc::new(AfXdpPort::open(&cfg).expect("AF_XDP port opens"))
    };
    let p1 = open_untouched(t.port1());
    let p2 = open_untouched(t.port2());
    assert!(p1.offload_changes().is_empty());
    let fwd = Forwarder::start(p1.clone(), p2.clone(), Duration::from_secs(60));
    assert!(ping(&t.ns1, IP2, None));
    tcp_transfer(&t, IP2, 20 << 20);
    tcp_transfer(&t, IP6_2, 4 << 20);
    let (got, corrupt) = udp_burst(&t, 2_000, 700);
    assert!(got > 0 && corrupt == 0);
    let fixed = p1.csum_fixed() + p2.csum_fixed();
    eprintln!("afxdp: {fixed} frames had partial checksums completed in software");
    if tx_checksum_on(&t.offloads(&t.ns1, &t.veth1.b)) {
        // With the sender's checksum offload on, nearly every data segment
        // arrives partial: without the completion TCP would not move.
        assert!(fixed > 10_000, "only {fixed} checksums completed");
    }
    drop(fwd);
}

#[test]
fn afxdp_second_attach_after_drop_works() {
    if !require_afxdp("afxdp_second_attach_after_drop_works") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    for round in 0..2 {
        let p1 = open(t.port1());
        let p2 = open(t.port2());
        let fwd = Forwarder::start(p1.clone(), p2.clone(), Duration::from_secs(30));
        assert!(ping(&t.ns1, IP2, None), "ping after attach #{}", round + 1);
        drop(fwd);
    }
    // Generic mode explicitly, on a device whose native program is gone.
    let mut cfg = AfXdpConfig::new(t.port1());
    cfg.mode = AttachMode::Generic;
    let p = AfXdpPort::open(&cfg).expect("generic attach");
    assert_eq!(p.xdp_mode().name(), "generic");
}

#[test]
fn afxdp_port_goes_down_when_its_device_disappears() {
    if !require_afxdp("afxdp_port_goes_down_when_its_device_disappears") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    check_device_disappearing(&t, open(t.port1()), open(t.port2()));
}

#[test]
fn afxdp_missing_device_is_a_clear_error() {
    if !require_afxdp("afxdp_missing_device_is_a_clear_error") {
        return;
    }
    let e = AfXdpPort::open(&AfXdpConfig::new("vsw-nodev0")).unwrap_err();
    assert!(matches!(e, AfXdpError::NoDevice { .. }));
    assert!(e.to_string().contains("vsw-nodev0"), "{e}");
}

#[test]
fn afxdp_tcp_throughput_is_measured() {
    if !require_afxdp("afxdp_tcp_throughput_is_measured") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    let p1 = open(t.port1());
    let p2 = open(t.port2());
    let fwd = Forwarder::start(p1.clone(), p2.clone(), Duration::from_secs(30));
    assert!(ping(&t.ns1, IP2, None));
    if let Some(g) = iperf3(&t, 3) {
        eprintln!("afxdp: iperf3 TCP {g:.2} Gbit/s through the test forwarder");
        if let Some(anchor) = kernel_bridge_anchor(3) {
            eprintln!(
                "afxdp: anchor in the same run: Linux bridge {anchor:.2} Gbit/s; ratio {:.2}",
                g / anchor
            );
        }
    }
    // 64-byte frames (18 B of UDP payload): a rough forwarding rate, limited
    // by the single sending socket in ns1.
    let before = fwd.stats.packets.load(Ordering::Relaxed);
    let start = std::time::Instant::now();
    let (got, _, secs) = udp_burst_timed(&t, 200_000, 18);
    let forwarded = fwd.stats.packets.load(Ordering::Relaxed) - before;
    let wall = start.elapsed().as_secs_f64();
    if secs > 0.0 {
        eprintln!(
            "afxdp: 64 B frames: {got} of 200000 received ({:.1} % lost), {:.0} kpps at the \
             receiver; forwarder moved {forwarded} frames, >= {:.0} kpps over the whole burst",
            (200_000 - got) as f64 / 2000.0,
            got as f64 / secs / 1e3,
            forwarded as f64 / wall / 1e3
        );
    }
    eprintln!(
        "afxdp: losses: {}; ports {:?} / {:?}",
        loss_report(&t),
        p1.stats(),
        p2.stats()
    );
}

#[test]
fn afxdp_jumbo_mtu_uses_multi_buffer_or_names_the_limit() {
    if !require_afxdp("afxdp_jumbo_mtu_uses_multi_buffer_or_names_the_limit") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(9000);
    let p1 = match AfXdpPort::open(&AfXdpConfig::new(t.port1())) {
        Ok(p) => Arc::new(p),
        Err(e @ AfXdpError::MtuTooLarge { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("9000") && msg.contains("3506"), "{msg}");
            eprintln!("afxdp: no multi-buffer AF_XDP here: {msg}");
            return;
        }
        Err(e) => panic!("unexpected error: {e}"),
    };
    let p2 = open(t.port2());
    assert_eq!(p1.mtu(), 9000);
    let _fwd = Forwarder::start(p1.clone(), p2.clone(), Duration::from_secs(60));
    assert!(
        ping(&t.ns1, IP2, Some(8972)),
        "9000-byte IPv4 packets, DF set"
    );
    assert!(ping(&t.ns2, IP1, Some(8972)), "and back");
    let gbps = tcp_transfer(&t, IP2, 20 << 20);
    eprintln!(
        "afxdp mtu 9000 (multi-buffer, {:?}): 20 MiB TCP checked, {gbps:.2} Gbit/s",
        p1.xdp_mode()
    );
}

#[test]
fn afxdp_attach_after_the_holder_was_killed_works() {
    if !require_afxdp("afxdp_attach_after_the_holder_was_killed_works") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_porthold"))
        .args(["afxdp", t.port1()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn porthold");
    let mut holder = tests::ChildGuard::new(child);
    let mut line = String::new();
    let out = holder.child_mut().stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
    assert_eq!(line.trim(), "READY", "holder: {line}");
    // SIGKILL: no destructor runs in the holder.
    drop(holder);
    let p1 = open(t.port1());
    let p2 = open(t.port2());
    let _fwd = Forwarder::start(p1.clone(), p2.clone(), Duration::from_secs(30));
    assert!(
        ping(&t.ns1, IP2, None),
        "forwarding after the killed holder"
    );
}

#[test]
fn afxdp_multiqueue_port_has_a_socket_per_queue() {
    if !require_afxdp("afxdp_multiqueue_port_has_a_socket_per_queue") {
        return;
    }
    let _serial = serial();
    let t = Topology::multiqueue(1500, 2);
    let open_mq = |dev: &str| {
        let mut cfg = AfXdpConfig::new(dev);
        cfg.queues = 2;
        Arc::new(AfXdpPort::open(&cfg).expect("2-queue AF_XDP port opens"))
    };
    let p1 = open_mq(t.port1());
    let p2 = open_mq(t.port2());
    assert_eq!((p1.rx_queues(), p1.tx_queues()), (2, 2));
    assert_ne!(p1.rx_fd(0), p1.rx_fd(1));
    let _fwd = Forwarder::start(p1.clone(), p2.clone(), Duration::from_secs(60));
    assert!(ping(&t.ns1, IP2, None));
    assert!(ping(&t.ns2, IP6_1, None));
    tcp_transfer(&t, IP2, 16 << 20);
}

#[test]
fn afxdp_carries_vlan_tagged_traffic() {
    if !require_afxdp("afxdp_carries_vlan_tagged_traffic") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    if !t.add_vlan(10) {
        return;
    }
    let p1 = open(t.port1());
    let p2 = open(t.port2());
    let _fwd = Forwarder::start(p1.clone(), p2.clone(), Duration::from_secs(60));
    assert!(ping(&t.ns1, VLAN_IP2, None), "ping over VLAN 10");
    tcp_transfer(&t, VLAN_IP2, 16 << 20);
}

#[test]
fn afxdp_keeps_the_vlan_tag_of_a_received_frame() {
    if !require_afxdp("afxdp_keeps_the_vlan_tag_of_a_received_frame") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    let p = open(t.port1());
    // Broadcast ARP request in VLAN 10, sent with the tag in the frame; the
    // receiving kernel moves such tags into skb metadata before packet taps.
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[
        0x02, 0, 0, 0, 0x77, 0x01, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x06,
    ]);
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0x77, 1, 10, 78, 0, 1]);
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 78, 0, 2]);
    frame.resize(64, 0);
    raw_send(&t.ns1, &t.veth1.b, &frame);
    let got = receive_matching(p.as_ref(), |f| f.len() >= 12 && f[6..12] == frame[6..12])
        .expect("tagged frame received");
    assert_eq!(
        &got[12..16],
        &[0x81, 0x00, 0x00, 0x0a],
        "802.1Q tag in place"
    );
    assert_eq!(
        &got[..frame.len().min(got.len())],
        &frame[..got.len().min(frame.len())]
    );
}

#[test]
fn afxdp_counts_kernel_drops_when_not_polled() {
    if !require_afxdp("afxdp_counts_kernel_drops_when_not_polled") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    let p = open(t.port1());
    // No forwarder: frames pile up in the port's rings until the kernel
    // drops them, and the port's counters must show it.
    t.ns1.exec_ok(
        "ip",
        &[
            "neigh",
            "replace",
            IP2,
            "lladdr",
            "02:00:00:00:77:02",
            "dev",
            &t.veth1.b,
        ],
    );
    let out = t.ns1.exec_ok(
        env!("CARGO_BIN_EXE_nettraffic"),
        &["udp-send", &format!("{IP2}:9"), "10000", "18"],
    );
    assert!(out.starts_with("SENT"));
    let s = p.stats();
    eprintln!("afxdp: unpolled port after 10000 frames: {s:?}");
    assert!(s.rx_dropped > 0, "kernel drops counted: {s:?}");
    assert_eq!(s.rx_packets, 0);
}

#[test]
fn afxdp_native_mode_tries_zero_copy_then_binds_in_copy_mode_on_veth() {
    if !require_afxdp("afxdp_native_mode_tries_zero_copy_then_binds_in_copy_mode_on_veth") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    let native = |dev: &str| {
        let mut cfg = AfXdpConfig::new(dev);
        cfg.mode = AttachMode::Native;
        Arc::new(AfXdpPort::open(&cfg).expect("native attach on veth"))
    };
    let p1 = native(t.port1());
    let p2 = native(t.port2());
    assert_eq!(p1.xdp_mode().name(), "native");
    // veth has no zero-copy: the EOPNOTSUPP of XDP_ZEROCOPY falls back.
    assert_eq!(p1.bind_mode(), datapath::port::afxdp::BindMode::Copy);
    let _fwd = Forwarder::start(p1.clone(), p2.clone(), Duration::from_secs(30));
    assert!(ping(&t.ns1, IP2, None));
    assert!(ping(&t.ns2, IP6_1, None));
}

#[test]
fn afxdp_ports_forward_through_the_switch() {
    if !require_afxdp("afxdp_ports_forward_through_the_switch") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    check_through_switch(&t, open(t.port1()), open(t.port2()), 32 << 20);
}

#[test]
fn afxdp_health_check_takes_a_vanished_device_down_at_once() {
    if !require_afxdp("afxdp_health_check_takes_a_vanished_device_down_at_once") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    check_health_check_marks_gone(&t, open(t.port1()));
}

#[test]
fn afxdp_second_port_on_a_busy_device_is_a_clear_error() {
    if !require_afxdp("afxdp_second_port_on_a_busy_device_is_a_clear_error") {
        return;
    }
    let _serial = serial();
    let t = Topology::new(1500);
    let _first = open(t.port1());
    let mut cfg = AfXdpConfig::new(t.port1());
    cfg.name = "second".into();
    let e = AfXdpPort::open(&cfg).expect_err("queue 0 is taken");
    let msg = e.to_string();
    eprintln!(
        "afxdp: busy device: {msg}: {:?}",
        std::error::Error::source(&e)
    );
    assert!(
        msg.contains("\"second\"") && msg.contains(t.port1()),
        "{msg}"
    );
    assert!(matches!(
        e,
        AfXdpError::Socket { .. } | AfXdpError::Bpf { .. }
    ));
}
