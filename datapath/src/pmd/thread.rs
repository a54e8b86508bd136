//! PMD threads: pinned, busy-polling while traffic flows, and in adaptive
//! mode sleeping on the rx queues' file descriptors (epoll) after an idle
//! stretch, so an idle switch costs ~0 % CPU. Snapshot changes and stop
//! requests wake a sleeping PMD through an eventfd.

use super::Pmd;
use crate::switch::Snapshot;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a PMD does when its queues are empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IdleMode {
    /// Keep polling (lowest latency, one core at 100 %).
    Poll,
    /// Poll while traffic flows; after an idle stretch sleep on the ports'
    /// fds (wake-up well under a millisecond).
    #[default]
    Adaptive,
}

/// Empty iterations before an adaptive PMD goes to sleep.
const IDLE_ITERATIONS_BEFORE_SLEEP: u32 = 2000;
/// Longest sleep; bounds how stale housekeeping can get.
const MAX_SLEEP_MS: i32 = 100;
/// Interval of per-PMD housekeeping (subtable ordering).
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Everything a PMD thread needs.
pub struct PmdThreadConfig {
    /// PMD index (rx queue assignment and tx queue number).
    pub index: usize,
    /// Core to pin to.
    pub core: usize,
    /// Idle behaviour.
    pub idle: IdleMode,
    /// The processing context (locked per iteration; the control side
    /// locks it only to read counters).
    pub pmd: Arc<Mutex<Pmd>>,
    /// The datapath snapshot.
    pub snap: Arc<ArcSwap<Snapshot>>,
    /// Datapath clock origin.
    pub epoch: Instant,
}

/// A running PMD thread.
pub struct PmdHandle {
    stop: Arc<AtomicBool>,
    wake: Arc<OwnedFd>,
    join: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PmdHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PmdHandle").finish()
    }
}

/// Pins the calling thread to one core.
pub fn pin_to_core(core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `core` < CPU_SETSIZE was checked above, so the bit is inside `set`.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd; failure (counter
    // full) only means a wake-up is already pending.
    let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

fn drain(fd: RawFd) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64 from a non-blocking eventfd.
    let _ = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

/// An epoll set over a PMD's rx fds plus its wake eventfd.
struct Sleeper {
    epfd: OwnedFd,
    /// False when some queue has no fd (e.g. memory ports): then the PMD
    /// naps briefly instead of sleeping until traffic.
    complete: bool,
}

impl Sleeper {
    fn new(snap: &Snapshot, index: usize, wake: RawFd) -> io::Result<Sleeper> {
        // SAFETY: plain syscall; the fd is owned below.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ep` was just created and is owned by nobody else.
        let epfd = unsafe { OwnedFd::from_raw_fd(ep) };
        let mut complete = true;
        let mut fds = vec![wake];
        for &(no, q) in snap.rxqs.get(index).map(Vec::as_slice).unwrap_or(&[]) {
            // A port that is down is not polled, so its fd (which may poll
            // as an error for ever once the device is gone) is not watched.
            let up = snap
                .port(no)
                .is_some_and(|e| e.port.link() == crate::port::LinkState::Up);
            if !up {
                continue;
            }
            match snap.port(no).and_then(|e| e.port.rx_fd(q)) {
                Some(fd) => fds.push(fd),
                None => complete = false,
            }
        }
        for fd in fds {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: fd as u64,
            };
            // SAFETY: `ep` is a live epoll fd, `fd` a live fd owned by a port
            // held in the snapshot, `ev` a valid event struct.
            let rc = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
            if rc != 0 {
                complete = false;
            }
        }
        Ok(Sleeper { epfd, complete })
    }

    /// Sleeps until traffic, a wake-up or the timeout. Returns false when
    /// an fd reported an error or hang-up: the set must be rebuilt (the
    /// port behind it is likely down now).
    fn sleep(&self, wake: RawFd) -> bool {
        if !self.complete {
            std::thread::sleep(Duration::from_micros(200));
            return true;
        }
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
        // SAFETY: `evs` is a live array of 16 events; the epoll fd is live.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                evs.as_mut_ptr(),
                evs.len() as i32,
                MAX_SLEEP_MS,
            )
        };
        drain(wake);
        let bad = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
        !evs[..n.max(0) as usize].iter().any(|e| e.events & bad != 0)
    }
}

impl PmdHandle {
    /// Starts a PMD thread; fails when it cannot be pinned.
    pub fn spawn(cfg: PmdThreadConfig) -> io::Result<PmdHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(eventfd()?);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let stop2 = stop.clone();
        let wake2 = wake.clone();
        let join = std::thread::Builder::new()
            .name(format!("pmd{}", cfg.index))
            .spawn(move || {
                if let Err(e) = pin_to_core(cfg.core) {
                    let _ = tx.send(Err(e));
                    return;
                }
                let _ = tx.send(Ok(()));
                run(cfg, &stop2, wake2.as_raw_fd());
            })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(PmdHandle {
                stop,
                wake,
                join: Some(join),
            }),
            Ok(Err(e)) => {
                let _ = join.join();
                Err(e)
            }
            Err(_) => Err(io::Error::other("PMD thread exited during start")),
        }
    }

    /// Wakes the thread if it sleeps (a new snapshot is out).
    pub fn wake(&self) {
        signal(self.wake.as_raw_fd());
    }

    /// Stops and joins the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for PmdHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        signal(self.wake.as_raw_fd());
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

fn run(cfg: PmdThreadConfig, stop: &AtomicBool, wake: RawFd) {
    let mut idle_iters: u32 = 0;
    let mut sleeper: Option<(u64, Sleeper)> = None;
    let mut last_housekeeping = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let snap = cfg.snap.load_full();
        let queues = snap.rxqs.get(cfg.index).map(Vec::as_slice).unwrap_or(&[]);
        // Two clock reads per iteration: the datapath clock, busy/idle
        // time and the housekeeping timer all derive from them.
        let t0 = Instant::now();
        let now_ms = t0.saturating_duration_since(cfg.epoch).as_millis() as u64;
        let mut pmd = cfg.pmd.lock();
        let n = pmd.poll(&snap, queues, now_ms);
        let t1 = Instant::now();
        let dt = t1.saturating_duration_since(t0).as_nanos() as u64;
        if n > 0 {
            pmd.add_busy_ns(dt);
            idle_iters = 0;
        } else {
            pmd.add_idle_ns(dt);
            idle_iters = idle_iters.saturating_add(1);
        }
        if t1.saturating_duration_since(last_housekeeping) >= HOUSEKEEPING {
            pmd.housekeeping();
            last_housekeeping = t1;
        }
        drop(pmd);
        if n > 0 {
            continue;
        }
        match cfg.idle {
            IdleMode::Poll => idle_pause(),
            IdleMode::Adaptive if idle_iters >= IDLE_ITERATIONS_BEFORE_SLEEP => {
                if sleeper.as_ref().is_none_or(|(g, _)| *g != snap.generation) {
                    sleeper = Sleeper::new(&snap, cfg.index, wake)
                        .ok()
                        .map(|s| (snap.generation, s));
                }
                drop(snap);
                let t = Instant::now();
                let healthy = match &sleeper {
                    Some((_, s)) => s.sleep(wake),
                    None => {
                        std::thread::sleep(Duration::from_micros(200));
                        true
                    }
                };
                if !healthy {
                    sleeper = None;
                }
                cfg.pmd.lock().add_idle_ns(t.elapsed().as_nanos() as u64);
            }
            IdleMode::Adaptive => idle_pause(),
        }
    }
}

/// An empty poll gives the core away for a moment. The kernel work our
/// ports trigger (a container's NAPI thread, softirqs deferred to
/// ksoftirqd) often runs on the PMD's own core; a PMD that only spun
/// would get an equal share of it and spend it polling empty rings while
/// that work, which produces the next packets or consumes the last ones,
/// waited. `sched_yield` returns at once when nothing else is runnable,
/// so an empty core still polls at full speed.
fn idle_pause() {
    std::thread::yield_now();
}
