//! Limits of one request, and how they are enforced.
//!
//! - CPU: every entry into the isolate is timed ([`CpuMeter::measure`])
//!   and summed over the request. While JS runs, the executor's [`Watch`]
//!   holds the remaining budget; the [`Watchdog`] thread reads that
//!   thread's CPU clock and terminates the isolate when it is spent.
//! - Memory: V8's heap limit and our ArrayBuffer allocator
//!   (`js_api::memory`) stop the script when the isolate's budget is spent.
//! - Wall clock, body size and subrequests are checked on the request path.
//!
//! An isolate that hit CPU or memory is discarded. Each hit is a typed
//! [`LimitHit`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use js_api::IsolateStopper;
use serde::Deserialize;

/// The limits of a worker's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
  pub cpu: Duration,
  pub memory_bytes: usize,
  pub wall: Duration,
  pub request_body_bytes: u64,
  pub subrequests: u32,
}

/// `[limits]` and `[worker.limits]`: every field optional; a worker's
/// fields override the server's, which override the defaults.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
  pub cpu_ms: Option<u64>,
  pub memory_mb: Option<u64>,
  pub wall_ms: Option<u64>,
  pub request_body_mb: Option<u64>,
  pub subrequests: Option<u32>,
}

impl Default for Limits {
  fn default() -> Self {
    Self {
      cpu: Duration::from_millis(50),
      memory_bytes: 128 << 20,
      wall: Duration::from_millis(30_000),
      request_body_bytes: 100 << 20,
      subrequests: 50,
    }
  }
}

impl Limits {
  /// These limits with the fields `c` sets replaced.
  pub fn with(self, c: &LimitsConfig) -> Self {
    Self {
      cpu: c.cpu_ms.map_or(self.cpu, Duration::from_millis),
      memory_bytes: c.memory_mb.map_or(self.memory_bytes, |m| (m as usize) << 20),
      wall: c.wall_ms.map_or(self.wall, Duration::from_millis),
      request_body_bytes: c.request_body_mb.map_or(self.request_body_bytes, |m| m << 20),
      subrequests: c.subrequests.unwrap_or(self.subrequests),
    }
  }
}

/// Which limit a request hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
  Cpu,
  Memory,
  Wall,
  Body,
  Subrequests,
}

impl LimitKind {
  pub const ALL: [LimitKind; 5] = [Self::Cpu, Self::Memory, Self::Wall, Self::Body, Self::Subrequests];

  /// The `edge-limit` header value.
  pub fn as_str(self) -> &'static str {
    match self {
      Self::Cpu => "cpu",
      Self::Memory => "memory",
      Self::Wall => "wall",
      Self::Body => "body",
      Self::Subrequests => "subrequests",
    }
  }
}

/// A limit hit: which one, the limit, and the figure reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitHit {
  pub kind: LimitKind,
  pub limit: String,
  pub reached: String,
}

impl LimitHit {
  /// The isolate's heap and buffers passed `limit` bytes.
  pub fn memory(limit: usize, reached: impl Into<String>) -> Self {
    Self {
      kind: LimitKind::Memory,
      limit: format!("{} MB", limit >> 20),
      reached: reached.into(),
    }
  }

  /// The work did not finish within `limit` of wall time.
  pub fn wall(limit: Duration, reached: &str) -> Self {
    Self {
      kind: LimitKind::Wall,
      limit: format!("{} ms", limit.as_millis()),
      reached: reached.into(),
    }
  }

  /// The request body passed `limit` bytes; `how` says how it was seen.
  pub fn body(limit: u64, how: &str) -> Self {
    Self {
      kind: LimitKind::Body,
      limit: format!("{} MB", limit >> 20),
      reached: how.into(),
    }
  }
}

impl std::fmt::Display for LimitHit {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(
      f,
      "{} limit of {} exceeded ({})",
      self.kind.as_str(),
      self.limit,
      self.reached
    )
  }
}

fn clock_time(clock: libc::clockid_t) -> Duration {
  let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
  // SAFETY: `ts` is a valid, writable timespec.
  let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
  if rc != 0 {
    return Duration::ZERO;
  }
  Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time one request has used in JavaScript and Wasm so far, summed
/// over every turn of its isolate's event loop, against its limit.
///
/// Each entry into the isolate is timed with the monotonic clock (a vDSO
/// read, no system call): while JS runs, the thread is on CPU, so the time
/// is the CPU time (an upper bound if the thread is preempted). The
/// watchdog enforces the limit on long entries with the thread's real CPU
/// clock.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
  used: Duration,
  limit: Duration,
  exceeded: bool,
}

impl CpuMeter {
  pub fn new(limit: Duration) -> Self {
    Self {
      used: Duration::ZERO,
      limit,
      exceeded: false,
    }
  }

  /// Runs `f` (an entry into the isolate) with the CPU deadline armed, and
  /// adds its time.
  #[inline]
  pub fn measure<R>(&mut self, watch: &Watch, stopper: &Arc<IsolateStopper>, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    watch.arm(stopper, self.limit.saturating_sub(self.used), start);
    let r = f();
    let (fired, cpu) = watch.disarm();
    // A slice the watchdog watched is measured on the thread's CPU clock;
    // a short one by its duration.
    self.used += cpu.unwrap_or_else(|| start.elapsed());
    if fired || self.used > self.limit {
      self.exceeded = true;
    }
    r
  }

  pub fn used(&self) -> Duration {
    self.used
  }

  /// Whether the request went over its CPU limit (the isolate was, or
  /// would have been, terminated).
  pub fn exceeded(&self) -> bool {
    self.exceeded
  }

  pub fn hit(&self) -> LimitHit {
    LimitHit {
      kind: LimitKind::Cpu,
      limit: format!("{} ms", self.limit.as_millis()),
      reached: format!("{:.1} ms of CPU", self.used.as_secs_f64() * 1e3),
    }
  }
}

/// The JS running now on one executor thread, and its CPU budget.
pub struct Watch {
  clock: libc::clockid_t,
  slot: Mutex<Slice>,
  dog: Arc<DogShared>,
}

/// The slice of JS being watched, if `active`. It keeps the last isolate's
/// stopper between slices: most slices on a thread run the isolate the
/// previous one ran, and then arming clones nothing.
#[derive(Default)]
struct Slice {
  active: bool,
  stopper: Option<Arc<IsolateStopper>>,
  budget: Duration,
  armed_at: Option<Instant>,
  /// The thread's CPU clock when the slice began, as the watchdog first
  /// estimated it (its clock now, less the wall time since arming).
  start_cpu: Option<Duration>,
  fired: bool,
  /// Watchdog ticks this slice has run for.
  ticks: u32,
}

impl Watch {
  fn arm(&self, stopper: &Arc<IsolateStopper>, budget: Duration, now: Instant) {
    {
      let mut slot = self.slot.lock().expect("watch");
      if !slot.stopper.as_ref().is_some_and(|s| Arc::ptr_eq(s, stopper)) {
        slot.stopper = Some(stopper.clone());
      }
      slot.active = true;
      slot.budget = budget;
      slot.armed_at = Some(now);
      slot.start_cpu = None;
      slot.fired = false;
      slot.ticks = 0;
    }
    if self.dog.quiet.load(Ordering::SeqCst) {
      let _g = self.dog.lock.lock().expect("watchdog");
      self.dog.wake.notify_one();
    }
  }

  /// Clears the slice: whether the watchdog terminated it, and its CPU
  /// time if the watchdog saw it run.
  fn disarm(&self) -> (bool, Option<Duration>) {
    let mut s = self.slot.lock().expect("watch");
    if !s.active {
      return (false, None);
    }
    s.active = false;
    (
      s.fired,
      s.start_cpu.map(|start| clock_time(self.clock).saturating_sub(start)),
    )
  }
}

struct DogShared {
  watches: Mutex<Vec<Arc<Watch>>>,
  quiet: AtomicBool,
  lock: Mutex<()>,
  wake: Condvar,
  stop: AtomicBool,
}

/// One thread that stops JS running past its CPU deadline, for all
/// executor threads. It ticks every millisecond while JS runs somewhere
/// and sleeps when none has run for a while.
pub struct Watchdog {
  shared: Arc<DogShared>,
  thread: Option<std::thread::JoinHandle<()>>,
}

const TICK: Duration = Duration::from_millis(2);
const QUIET_AFTER: Duration = Duration::from_millis(100);
const MEMORY_CHECK_TICKS: u32 = 3;

impl Watchdog {
  pub fn start() -> std::io::Result<Self> {
    let shared = Arc::new(DogShared {
      watches: Mutex::new(Vec::new()),
      quiet: AtomicBool::new(false),
      lock: Mutex::new(()),
      wake: Condvar::new(),
      stop: AtomicBool::new(false),
    });
    let s = shared.clone();
    let thread = std::thread::Builder::new()
      .name("edge-watchdog".into())
      .spawn(move || run(s))?;
    Ok(Self {
      shared,
      thread: Some(thread),
    })
  }

  /// A watch for the calling thread (an executor).
  pub fn watch_this_thread(&self) -> Arc<Watch> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: pthread_self() is the calling thread; `clock` is writable.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    if rc != 0 {
      clock = libc::CLOCK_THREAD_CPUTIME_ID;
    }
    let w = Arc::new(Watch {
      clock,
      slot: Mutex::new(Slice::default()),
      dog: self.shared.clone(),
    });
    self.shared.watches.lock().expect("watchdog").push(w.clone());
    w
  }
}

impl Drop for Watchdog {
  fn drop(&mut self) {
    self.shared.stop.store(true, Ordering::SeqCst);
    {
      let _g = self.shared.lock.lock().expect("watchdog");
      self.shared.wake.notify_one();
    }
    if let Some(t) = self.thread.take() {
      let _ = t.join();
    }
  }
}

fn run(s: Arc<DogShared>) {
  let mut last_active = Instant::now();
  while !s.stop.load(Ordering::SeqCst) {
    if check(&s) {
      last_active = Instant::now();
    }
    if last_active.elapsed() < QUIET_AFTER {
      std::thread::sleep(TICK);
      continue;
    }
    let g = s.lock.lock().expect("watchdog");
    s.quiet.store(true, Ordering::SeqCst);
    if check(&s) {
      s.quiet.store(false, Ordering::SeqCst);
      last_active = Instant::now();
      continue;
    }
    let _g = s.wake.wait_timeout(g, Duration::from_secs(1)).expect("watchdog");
    s.quiet.store(false, Ordering::SeqCst);
    last_active = Instant::now();
  }
}

/// Terminates slices past their CPU budget; true if any slice is running.
fn check(s: &DogShared) -> bool {
  let watches = s.watches.lock().expect("watchdog");
  let mut any = false;
  for w in watches.iter() {
    let mut slot = w.slot.lock().expect("watch");
    let slice = &mut *slot;
    let (true, Some(stopper), Some(armed_at)) = (slice.active, &slice.stopper, slice.armed_at) else {
      continue;
    };
    any = true;
    let now = clock_time(w.clock);
    let start = *slice
      .start_cpu
      .get_or_insert_with(|| now.saturating_sub(armed_at.elapsed()));
    if !slice.fired && now.saturating_sub(start) >= slice.budget {
      slice.fired = true;
      stopper.terminate();
    }
    // Wasm memory is outside both the heap and our allocator: a long
    // slice gets its memory looked at every few milliseconds.
    slice.ticks += 1;
    if slice.ticks % MEMORY_CHECK_TICKS == 0 {
      stopper.memory.request_check();
    }
  }
  any
}
