//! "Never allocate unboundedly" (issue 8, part 2), measured: a counting
//! global allocator records the peak of live heap bytes while each parser
//! of the control plane eats hostile inputs of up to 64 KiB (deep nesting,
//! long strings, long lists, random bytes, the regression corpus), and the
//! peak must stay under [`BOUND`]. The framing reader is fed an endless
//! line and must stop at its cap holding no more than the cap.
//!
//! Counters are per thread, so the harness' other threads do not disturb
//! a measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufReader, Read};

use control::api::Request;
use control::config::{Config, DEFAULT_CONFIG};
use control::flowsyntax::{parse_group, parse_rule, PortNames};
use control::ipc::{read_line_limited, LineError, MAX_READER_REQUEST_BYTES};
use control::state::parse_state;

struct PeakAllocator;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grow(n: usize) {
    LIVE.with(|l| {
        let v = l.get() + n;
        l.set(v);
        PEAK.with(|p| p.set(p.get().max(v)));
    });
}

fn shrink(n: usize) {
    // A block freed by another thread than the one that allocated it can
    // make this thread's count go below zero: saturate.
    LIVE.with(|l| l.set(l.get().saturating_sub(n)));
}

// SAFETY: every method forwards to `System` unchanged; the thread-locals
// are const-initialised Cells, so touching them never allocates.
unsafe impl GlobalAlloc for PeakAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grow(new_size - layout.size());
        } else {
            shrink(layout.size() - new_size);
        }
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PeakAllocator = PeakAllocator;

/// Largest input.
const INPUT: usize = 64 << 10;

/// Peak live bytes any parser may reach on an input of at most [`INPUT`].
const BOUND: usize = 8 << 20;

/// Peak live bytes `f` adds above what was live when it started.
fn peak_of(f: impl FnOnce()) -> usize {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    f();
    PEAK.with(Cell::get) - start
}

/// Deterministic pseudo-random bytes (xorshift), biased towards syntax.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let syntax = b"{}[]\",:=\\ \n.-0e9#'a";
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 == 0 {
                (x >> 8) as u8
            } else {
                syntax[(x >> 16) as usize % syntax.len()]
            }
        })
        .collect()
}

/// `head` + `unit` repeated + `tail`, at most [`INPUT`] bytes.
fn fill(head: &str, unit: &str, tail: &str) -> Vec<u8> {
    let n = (INPUT - head.len() - tail.len()) / unit.len();
    format!("{head}{}{tail}", unit.repeat(n)).into_bytes()
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .filter(|b| b.len() <= INPUT)
        .collect()
}

/// Hostile inputs shared by the JSON parsers.
fn json_inputs() -> Vec<Vec<u8>> {
    let mut v = vec![
        fill("", "[", ""),
        fill("{\"format\":1,\"pmd\":", "{\"a\":", ""),
        fill("{\"format\":1,\"bridges\":[", "{\"name\":\"b\"},", "]}"),
        fill(
            "{\"call\":\"add-flows\",\"bridge\":\"b\",\"rules\":[",
            "\"a\",",
            "\"a\"]}",
        ),
        fill("{\"call\":\"add-bridge\",\"bridge\":\"", "\\u0041", "\"}"),
        fill("{\"format\":", "9", "}"),
        fill("{\"format\":1,\"bridges\":[{\"name\":\"", "x", "\"}]}"),
        fill("{\"call\":\"show\",", "\"k\":1,", "\"z\":1}"),
    ];
    v.extend((0..16).map(|s| noise(s, INPUT)));
    v
}

fn check(what: &str, inputs: &[Vec<u8>], parse: impl Fn(&[u8])) -> usize {
    let mut worst = 0;
    for (i, input) in inputs.iter().enumerate() {
        assert!(input.len() <= INPUT);
        let peak = peak_of(|| parse(input));
        assert!(
            peak < BOUND,
            "{what} input {i} ({} bytes) peaked at {peak} live bytes",
            input.len()
        );
        worst = worst.max(peak);
    }
    eprintln!(
        "{what}: worst peak {worst} bytes over {} inputs",
        inputs.len()
    );
    worst
}

#[test]
fn parsers_stay_bounded_on_hostile_64k_inputs() {
    let mut state = json_inputs();
    state.extend(corpus("state"));
    check("state.json", &state, |b| {
        let _ = parse_state(b);
    });

    let mut api = json_inputs();
    api.extend(corpus("api"));
    check("api request", &api, |b| {
        let _ = serde_json::from_slice::<Request>(b);
    });

    let mut toml = vec![
        fill("[pmd]\ncores = ", "[", ""),
        fill("x = ", "{a=", ""),
        fill("[pmd]\nidle = \"", "a", "\"\n"),
        fill("", "[[bridge]]\nname = \"b\"\n", ""),
        fill("", "[[bridge.port]]\n", ""),
        fill(DEFAULT_CONFIG, "# comment\n", ""),
    ];
    toml.extend((0..16).map(|s| noise(100 + s, INPUT)));
    toml.extend(corpus("config"));
    check("config", &toml, |b| {
        let _ = Config::parse(&String::from_utf8_lossy(b), "alloc");
    });

    let ports: std::collections::BTreeMap<String, u32> =
        [("p1".to_owned(), 1u32)].into_iter().collect();
    let names: &dyn PortNames = &ports;
    let mut flows = vec![
        fill("actions=", "output:1,", "drop"),
        fill("priority=1,", "ip,", "actions=drop"),
        fill("actions=", "(", ""),
        fill("in_port=", "p", ",actions=drop"),
    ];
    flows.extend((0..16).map(|s| noise(200 + s, INPUT)));
    check("flow syntax", &flows, |b| {
        let _ = parse_rule(&String::from_utf8_lossy(b), names);
    });
    let mut groups = vec![
        fill(
            "group_id=1,type=all,",
            "bucket=actions=output:1,",
            "bucket=actions=drop",
        ),
        fill(
            "group_id=1,type=select,bucket=",
            "weight:1,",
            "actions=drop",
        ),
    ];
    groups.extend((0..16).map(|s| noise(300 + s, INPUT)));
    check("group syntax", &groups, |b| {
        let _ = parse_group(&String::from_utf8_lossy(b), names);
    });
}

/// An endless stream without a newline.
struct Endless;
impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        buf.fill(b'x');
        Ok(buf.len())
    }
}

#[test]
fn an_endless_line_is_cut_at_the_cap_without_buffering_more() {
    let mut r = BufReader::with_capacity(8192, Endless);
    let peak = peak_of(|| {
        assert!(matches!(
            read_line_limited(&mut r, MAX_READER_REQUEST_BYTES),
            Err(LineError::TooLarge)
        ));
    });
    // The line buffer grows by doubling up to the cap: at most twice it.
    assert!(
        peak <= 2 * MAX_READER_REQUEST_BYTES,
        "peak {peak} bytes for a cap of {MAX_READER_REQUEST_BYTES}"
    );
}
