//! Hostile input for every parser of the control plane (issue 8, part 2):
//! the TOML configuration (TOML v1.0 via `toml`), `state.json`, API
//! messages and their JSON-lines framing (RFC 8259 JSON, one message per
//! line), flow and group syntax (`ovs-ofctl(8)` forms).
//!
//! Two kinds of test:
//! - a regression corpus, `tests/corpus/<target>/`, of hand-made nasty
//!   inputs (duplicate keys, overflowing and NaN numbers, invalid UTF-8,
//!   lone surrogates, deep nesting, wrong types, semantic nonsense); each
//!   must give a clean error naming what was wrong, never a panic. Inputs
//!   too big to commit (10 MB strings, 100k-deep nesting) are built here.
//! - proptest properties: random bytes and random mutations of valid
//!   documents never panic, and whatever is accepted survives a round trip.
//!   Failures proptest finds are kept in `input_props.proptest-regressions`
//!   next to this file, to be committed with the fix.

use control::api::{
    ApiError, ErrorKind, Hello, HelloReply, Reply, Request, Response, ShowReply, API_VERSION,
};
use control::config::{Config, DEFAULT_CONFIG};
use control::flowsyntax::{parse_group, parse_rule, PortNames};
use control::ipc::{read_line_limited, serve_connection, Handler, LineError, Peer};
use control::state::{parse_state, BridgeConfig, DesiredState, Loaded, StateStore};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "corpus {target} is missing");
    v
}

/// Lines of the corpus files of `target` whose name starts with `prefix`.
fn lines(target: &str, prefix: &str) -> Vec<String> {
    let v: Vec<String> = corpus(target)
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .flat_map(|(_, b)| {
            String::from_utf8(b)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(!v.is_empty(), "corpus {target}/{prefix}* is missing");
    v
}

struct Tmp(PathBuf);
impl Tmp {
    fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("vsw-in-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- config

#[test]
fn config_corpus_is_refused_with_the_file_named() {
    let d = Tmp::new("cfg");
    for (name, bytes) in corpus("config") {
        let p = d.0.join(&name);
        std::fs::write(&p, &bytes).unwrap();
        let e = match Config::load(Some(&p)) {
            Ok(c) => panic!("config corpus {name} accepted: {c:?}"),
            Err(e) => control::controld::error_chain(&e),
        };
        assert!(
            e.contains(&name),
            "{name}: error does not name the file: {e}"
        );
        // toml quotes the offending line: bounded by the input, not more.
        assert!(
            e.len() < 2 * bytes.len() + 4096,
            "{name}: error of {} bytes",
            e.len()
        );
    }
}

#[test]
fn config_giants_are_refused() {
    let d = Tmp::new("cfgbig");
    // 10 MB string value: refused by size before parsing.
    let p = d.0.join("big.toml");
    let mut text = DEFAULT_CONFIG.replace("\"adaptive\"", "\"");
    text.push_str(&"a".repeat(10 << 20));
    text.push_str("\"\n");
    std::fs::write(&p, text).unwrap();
    let e = Config::load(Some(&p)).unwrap_err().to_string();
    assert!(e.contains("more than the limit"), "{e}");
    // Deepest nesting that fits the size limit: an error, not a stack
    // overflow.
    let deep = DEFAULT_CONFIG.replace(
        "cores = [0]",
        &format!("cores = {}{}", "[".repeat(400_000), "]".repeat(400_000)),
    );
    assert!(Config::parse(&deep, "deep").is_err());
    let deep = format!(
        "{DEFAULT_CONFIG}x = {}1{}\n",
        "{a=".repeat(200_000),
        "}".repeat(200_000)
    );
    assert!(Config::parse(&deep, "deep").is_err());
}

// ----------------------------------------------------------------- state

#[test]
fn state_corpus_is_refused_and_moved_aside_on_load() {
    let d = Tmp::new("state");
    for (name, bytes) in corpus("state") {
        let reason = match parse_state(&bytes) {
            Ok(s) => panic!("state corpus {name} accepted: {s:?}"),
            Err(r) => r,
        };
        assert!(
            !reason.is_empty() && reason.len() < 4096,
            "{name}: {reason}"
        );
        // Through the store: moved aside byte for byte, never rewritten.
        let path = d.0.join("state.json");
        std::fs::write(&path, &bytes).unwrap();
        match StateStore::new(&path).load() {
            Ok(Loaded::Corrupt { aside, reason: r }) => {
                assert_eq!(r, reason, "{name}");
                assert_eq!(std::fs::read(&aside).unwrap(), bytes, "{name}");
                assert!(!path.exists(), "{name}");
                std::fs::remove_file(aside).unwrap();
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn state_giants_are_refused() {
    let deep = format!(
        "{{\"format\":1,\"bridges\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(parse_state(deep.as_bytes()).is_err());
    // Nesting where any JSON value is accepted up to serde_json's limit.
    let deep = format!(
        "{{\"format\":1,\"pmd\":{}1{}}}",
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    assert!(parse_state(deep.as_bytes()).is_err());
    let long_name = format!(
        "{{\"format\":1,\"bridges\":[{{\"name\":\"{}\"}}]}}",
        "b".repeat(10 << 20)
    );
    let e = parse_state(long_name.as_bytes()).unwrap_err();
    assert!(e.contains("longer than 15"), "{}", &e[..e.len().min(200)]);
}

#[test]
fn a_valid_state_still_loads() {
    let mut s = DesiredState::default();
    s.bridges.push(BridgeConfig::new("br0"));
    let bytes = serde_json::to_vec(&s).unwrap();
    assert_eq!(parse_state(&bytes).unwrap(), s);
}

// ------------------------------------------------------------------- api

struct Answer;
impl Handler for Answer {
    fn hello(&self) -> HelloReply {
        HelloReply {
            api_version: API_VERSION,
            server: "corpus".into(),
            pid: 1,
            boot_id: 1,
        }
    }
    fn handle(&self, req: Request, _peer: Peer) -> Result<Reply, ApiError> {
        match req {
            Request::Show => Ok(Reply::Show(ShowReply::default())),
            _ => Ok(Reply::Done),
        }
    }
}

#[test]
fn api_corpus_gets_malformed_answers_and_the_connection_survives() {
    let (client, server) = UnixStream::pair().unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| serve_connection(server, &Answer, &stop));
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut w = client.try_clone().unwrap();
        let mut r = BufReader::new(client.try_clone().unwrap());
        let hello = Hello {
            api_version: API_VERSION,
            client: "corpus".into(),
        };
        w.write_all(&serde_json::to_vec(&hello).unwrap()).unwrap();
        w.write_all(b"\n").unwrap();
        read_line_limited(&mut r, 1 << 20).unwrap().unwrap();
        let mut call = |line: &[u8]| -> Response {
            w.write_all(line).unwrap();
            w.write_all(b"\n").unwrap();
            let l = read_line_limited(&mut r, 1 << 20).unwrap().unwrap();
            serde_json::from_slice(&l).unwrap()
        };
        for (name, bytes) in corpus("api") {
            assert!(!bytes.contains(&b'\n'), "{name}: one line per file");
            match call(&bytes) {
                Response::Error(e) => {
                    assert_eq!(e.kind, ErrorKind::Malformed, "{name}: {}", e.message);
                    assert!(e.message.len() < 4096, "{name}");
                }
                other => panic!("api corpus {name} accepted: {other:?}"),
            }
            assert_eq!(
                call(br#"{"call":"show"}"#),
                Response::Ok(Reply::Show(ShowReply::default())),
                "after {name}"
            );
        }
        drop(w);
        let _ = client.shutdown(std::net::Shutdown::Both);
    });
}

/// A reader handing out `data` in chunks of the given sizes, cycling.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [usize],
    i: usize,
}
impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.sizes[self.i % self.sizes.len()]
            .min(buf.len())
            .min(self.data.len());
        self.i += 1;
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// An endless stream without a newline: what a huge length would be in a
/// length-prefixed protocol.
struct Endless;
impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        buf.fill(b'x');
        Ok(buf.len())
    }
}

#[test]
fn a_line_without_end_stops_at_the_cap() {
    let mut r = BufReader::with_capacity(8192, Endless);
    assert!(matches!(
        read_line_limited(&mut r, 1 << 20),
        Err(LineError::TooLarge)
    ));
}

// ------------------------------------------------------------ flow, group

fn ports() -> BTreeMap<String, u32> {
    [("p1", 1), ("p2", 2)]
        .into_iter()
        .map(|(n, p)| (n.to_owned(), p))
        .collect()
}

#[test]
fn flow_corpus_is_refused() {
    let ports = ports();
    let accepted: Vec<String> = lines("flow", "bad_")
        .into_iter()
        .filter(|l| parse_rule(l, &ports as &dyn PortNames).is_ok())
        .collect();
    assert!(accepted.is_empty(), "flow corpus accepted {accepted:?}");
    // Odd but valid in ovs-ofctl(8) terms (empty actions = drop, empty
    // fields, long action lists): parsed without panic, printed back.
    for l in lines("flow", "odd_") {
        let r = parse_rule(&l, &ports as &dyn PortNames).unwrap();
        let text = control::flowsyntax::format_rule(&r, &ports as &dyn PortNames);
        assert_eq!(parse_rule(&text, &ports as &dyn PortNames).unwrap(), r);
    }
}

#[test]
fn group_corpus_is_refused() {
    let ports = ports();
    let accepted: Vec<String> = lines("group", "bad_")
        .into_iter()
        .filter(|l| parse_group(l, &ports as &dyn PortNames).is_ok())
        .collect();
    assert!(accepted.is_empty(), "group corpus accepted {accepted:?}");
    // Odd but valid (an empty bucket, a bucket chaining to a group: the
    // datapath bounds chaining depth at run time): parsed and printed back.
    for l in lines("group", "odd_") {
        let g = parse_group(&l, &ports as &dyn PortNames).unwrap();
        let text = control::flowsyntax::format_group(&g, &ports as &dyn PortNames);
        assert_eq!(parse_group(&text, &ports as &dyn PortNames).unwrap(), g);
    }
}

// ------------------------------------------------------------ properties

#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
    /// Copies a range somewhere else (duplicates keys, nests brackets).
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"{}[]\",:=\\\n.-0e9\xff\x00#'".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), interesting.clone()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), interesting).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), 0usize..40, any::<usize>()).prop_map(|(a, n, to)| Edit::Splice(a, n, to)),
    ]
}

fn mutate(doc: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = doc.to_vec();
    for e in edits {
        let len = v.len().max(1);
        match *e {
            Edit::Insert(i, b) => v.insert(i % (v.len() + 1), b),
            Edit::Delete(i) if !v.is_empty() => {
                v.remove(i % len);
            }
            Edit::Replace(i, b) if !v.is_empty() => v[i % len] = b,
            Edit::Splice(a, n, to) if !v.is_empty() => {
                let a = a % len;
                let piece: Vec<u8> = v[a..(a + n).min(v.len())].to_vec();
                let to = to % (v.len() + 1);
                v.splice(to..to, piece);
            }
            _ => {}
        }
    }
    v
}

fn sample_state() -> Vec<u8> {
    let text = r#"{"format":1,"bridges":[{"name":"br0","ports":[{"ofport":1,"spec":{"name":"c1","type":"tap","options":{"ip":"10.0.0.1/24","netns":"c1"}}}],"rules":[],"groups":[],"fdb":[{"mac":"02:00:00:00:00:01","vlan":0,"port":"c1","remote":null}]}],"pmd":{"cores":[0],"idle":"adaptive"}}"#;
    parse_state(text.as_bytes()).expect("sample state is valid");
    text.as_bytes().to_vec()
}

fn sample_requests() -> Vec<Vec<u8>> {
    [
        r#"{"call":"show"}"#,
        r#"{"call":"dump-flows","bridge":"br0","table":3}"#,
        r#"{"call":"add-flows","bridge":"br0","rules":["priority=1,ip,actions=drop"]}"#,
        r#"{"call":"add-port","bridge":"br0","name":"c1","options":{"type":"tap","vlan":"5"}}"#,
        r#"{"call":"fdb-add","bridge":"br0","entry":{"mac":"02:00:00:00:00:01","vlan":0,"port":"c1","remote":null}}"#,
        r#"{"call":"capture-start","port":"c1","count":10}"#,
    ]
    .iter()
    .map(|s| {
        serde_json::from_str::<Request>(s).expect("sample request is valid");
        s.as_bytes().to_vec()
    })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn config_random_text_never_panics(text in "\\PC{0,300}") {
        let _ = Config::parse(&text, "random");
    }

    #[test]
    fn config_mutations_never_panic_and_accepted_ones_are_valid(
        edits in prop::collection::vec(edit(), 1..6)
    ) {
        let bytes = mutate(DEFAULT_CONFIG.as_bytes(), &edits);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(c) = Config::parse(&text, "mutated") {
            prop_assert!(!c.pmd.cores.is_empty());
            prop_assert!(c.fdb.max_entries >= 1 && c.fdb.aging_secs >= 1);
        }
    }

    #[test]
    fn state_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_state(&bytes);
    }

    #[test]
    fn state_mutations_never_panic_and_accepted_ones_round_trip(
        edits in prop::collection::vec(edit(), 1..6)
    ) {
        let bytes = mutate(&sample_state(), &edits);
        if let Ok(s) = parse_state(&bytes) {
            let again = serde_json::to_vec(&s).unwrap();
            prop_assert_eq!(parse_state(&again).unwrap(), s);
        }
    }

    #[test]
    fn request_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(r) = serde_json::from_slice::<Request>(&bytes) {
            let _ = r.call_name();
        }
        let _ = serde_json::from_slice::<Response>(&bytes);
        let _ = serde_json::from_slice::<Hello>(&bytes);
    }

    #[test]
    fn request_mutations_never_panic_and_accepted_ones_round_trip(
        which in 0usize..6,
        edits in prop::collection::vec(edit(), 1..5)
    ) {
        let bytes = mutate(&sample_requests()[which], &edits);
        if let Ok(r) = serde_json::from_slice::<Request>(&bytes) {
            let again = serde_json::to_vec(&r).unwrap();
            prop_assert_eq!(serde_json::from_slice::<Request>(&again).unwrap(), r);
        }
    }

    /// The framing splits exactly on `\n` whatever the read sizes, and a
    /// line over the cap is refused before it is buffered.
    #[test]
    fn framing_splits_lines_and_enforces_the_cap(
        data in prop::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..600),
        sizes in prop::collection::vec(1usize..70, 1..8),
        cap in 1usize..120,
    ) {
        let mut r = BufReader::with_capacity(16, Chunked { data: &data, sizes: &sizes, i: 0 });
        let mut expected = data.split(|&b| b == b'\n').collect::<Vec<_>>();
        if data.last() == Some(&b'\n') || data.is_empty() {
            expected.pop();
        }
        let ends_open = !data.is_empty() && data.last() != Some(&b'\n');
        for (i, want) in expected.iter().enumerate() {
            match read_line_limited(&mut r, cap) {
                Ok(Some(line)) => {
                    prop_assert!(line.len() <= cap);
                    prop_assert_eq!(&line[..], *want);
                }
                Err(LineError::TooLarge) => {
                    prop_assert!(want.len() > cap);
                    return Ok(());
                }
                Err(LineError::Io(_)) => {
                    // Only the last line may lack its newline.
                    prop_assert!(ends_open && i == expected.len() - 1);
                    return Ok(());
                }
                Ok(None) => prop_assert!(false, "stream ended early"),
            }
        }
        prop_assert!(matches!(read_line_limited(&mut r, cap), Ok(None)));
        let _ = r.fill_buf();
    }
}
