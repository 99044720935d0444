//! The watchdog: one thread that stops JS running past its CPU deadline on
//! every executor thread. Each executor thread has a [`CpuDeadline`], armed
//! around each entry into an isolate with what is left of the request's
//! CPU budget; the watchdog reads that thread's CPU clock every tick and
//! terminates the isolate when the budget is spent, again on every tick
//! until the thread comes back. A thread that has not come back
//! [`WEDGED_AFTER`] after its termination (inside one builtin V8 runs to
//! the end) is counted in `Stats::wedged_threads` and logged, for the
//! operator or the embedder to act on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use js_api::IsolateStopper;

use js_api::shares::cpu_clock;

/// The JS running now on one executor thread, and its CPU budget.
pub struct CpuDeadline {
  clock: libc::clockid_t,
  /// The CPU time of this thread's blocking pool.
  pub blocking: Arc<super::offthread::BlockingCpu>,
  slot: Mutex<Slice>,
  dog: Arc<DogState>,
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
  /// estimated it (its clock now, less the wall time since arming, at most
  /// [`FIRST_LOOK_AT_MOST`]).
  start_cpu: Option<Duration>,
  fired: bool,
  /// When the watchdog terminated the slice.
  fired_at: Option<Instant>,
  /// The slice was found wedged (and counted).
  wedged: bool,
  /// Watchdog ticks this slice has run for.
  ticks: u32,
  /// A turn shared by several requests: each tick asks the isolate which
  /// one runs (js_api::shares), the budget is only a backstop.
  sample: Option<u64>,
}

impl CpuDeadline {
  /// Runs `f`, one turn of an isolate's event loop shared by several
  /// requests, sampled as turn `turn` and stopped at `backstop` of CPU
  /// whoever runs; returns what `f` returned and whether the backstop
  /// fired.
  pub fn run_shared<R>(
    &self,
    stopper: &Arc<IsolateStopper>,
    backstop: Duration,
    turn: u64,
    now: Instant,
    f: impl FnOnce() -> R,
  ) -> (R, bool) {
    self.arm(stopper, backstop, now, Some(turn));
    let r = f();
    let (fired, _) = self.disarm();
    (r, fired)
  }

  pub(super) fn arm(&self, stopper: &Arc<IsolateStopper>, budget: Duration, now: Instant, sample: Option<u64>) {
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
      slot.fired_at = None;
      slot.ticks = 0;
      slot.sample = sample;
    }
    if self.dog.quiet.load(Ordering::SeqCst) {
      let _g = self.dog.lock.lock().expect("watchdog");
      self.dog.wake.notify_one();
    }
  }

  /// Clears the slice: whether the watchdog terminated it, and its CPU
  /// time if the watchdog saw it run.
  pub(super) fn disarm(&self) -> (bool, Option<Duration>) {
    let mut s = self.slot.lock().expect("watch");
    if !s.active {
      return (false, None);
    }
    s.active = false;
    if std::mem::take(&mut s.wedged) {
      self.dog.stats.wedged_threads.add(-1);
      let after = s.fired_at.map(|t| t.elapsed()).unwrap_or_default();
      tracing::warn!(
        "an executor thread came back {:.1} s after its isolate's termination",
        after.as_secs_f64()
      );
    }
    (
      s.fired,
      s.start_cpu.map(|start| cpu_clock(self.clock).saturating_sub(start)),
    )
  }
}

struct DogState {
  watches: Mutex<Vec<Arc<CpuDeadline>>>,
  stats: Arc<crate::obs::stats::Stats>,
  quiet: AtomicBool,
  lock: Mutex<()>,
  wake: Condvar,
  stop: AtomicBool,
}

/// One thread that stops JS running past its CPU deadline, for all
/// executor threads. It ticks every millisecond while JS runs somewhere
/// and sleeps when none has run for a while.
pub struct Watchdog {
  shared: Arc<DogState>,
  thread: Option<std::thread::JoinHandle<()>>,
}

const TICK: Duration = Duration::from_millis(2);
const QUIET_AFTER: Duration = Duration::from_millis(100);
const MEMORY_CHECK_TICKS: u32 = 3;
/// The most CPU a slice is taken to have used before the watchdog's first
/// look at it.
const FIRST_LOOK_AT_MOST: Duration = Duration::from_millis(4);
/// How long after its termination a thread that has not come back is
/// taken to be wedged.
pub const WEDGED_AFTER: Duration = Duration::from_secs(1);

impl Watchdog {
  /// Starts the watchdog; wedged threads are counted in `stats`.
  pub fn start(stats: Arc<crate::obs::stats::Stats>) -> std::io::Result<Self> {
    let shared = Arc::new(DogState {
      watches: Mutex::new(Vec::new()),
      stats,
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

  /// What makes the deadline of an executor thread, on that thread.
  pub fn deadline_maker(&self) -> DeadlineMaker {
    DeadlineMaker(self.shared.clone())
  }
}

/// Sent to an executor thread to make its [`CpuDeadline`] there.
pub struct DeadlineMaker(Arc<DogState>);

impl DeadlineMaker {
  /// The calling thread's deadline, watched by the watchdog; `blocking`
  /// meters the thread's blocking pool.
  pub fn for_this_thread(self, blocking: Arc<super::offthread::BlockingCpu>) -> Arc<CpuDeadline> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: pthread_self() is the calling thread; `clock` is writable.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    if rc != 0 {
      clock = libc::CLOCK_THREAD_CPUTIME_ID;
    }
    let w = Arc::new(CpuDeadline {
      clock,
      blocking,
      slot: Mutex::new(Slice::default()),
      dog: self.0.clone(),
    });
    self.0.watches.lock().expect("watchdog").push(w.clone());
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

fn run(s: Arc<DogState>) {
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
fn check(s: &DogState) -> bool {
  let watches = s.watches.lock().expect("watchdog");
  let mut any = false;
  for w in watches.iter() {
    let mut slot = w.slot.lock().expect("watch");
    let slice = &mut *slot;
    let (true, Some(stopper), Some(armed_at)) = (slice.active, &slice.stopper, slice.armed_at) else {
      continue;
    };
    any = true;
    let now = cpu_clock(w.clock);
    // The slice's CPU before the first tick is taken as the wall time
    // since it was armed, but at most two ticks: a watchdog that looks
    // late was itself kept off the CPU, and so may the executor have been
    // (a stall charged as CPU gave innocent requests 503s under load).
    let start = *slice
      .start_cpu
      .get_or_insert_with(|| now.saturating_sub(armed_at.elapsed().min(FIRST_LOOK_AT_MOST)));
    if slice.fired {
      // Re-requested until it lands: a termination can be lost (cancelled
      // by the embedder, or swallowed by a builtin that was not checking).
      stopper.terminate();
      let since = slice.fired_at.map(|t| t.elapsed()).unwrap_or_default();
      if !slice.wedged && since >= WEDGED_AFTER {
        slice.wedged = true;
        s.stats.wedged_threads.add(1);
        tracing::error!(
          "an executor thread has not come back {:.1} s after its isolate's termination: it is wedged in a builtin no limit stops; its requests wait",
          since.as_secs_f64()
        );
      }
    } else if now.saturating_sub(start) >= slice.budget {
      slice.fired = true;
      slice.fired_at = Some(Instant::now());
      stopper.terminate();
    } else if let Some(turn) = slice.sample {
      stopper.request_sample(turn);
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
