//! CPU time of a turn of an isolate's event loop shared by several requests,
//! split among them by sampling which request's code runs.
//!
//! A turn runs whatever is ready: timers, settled I/O and the microtasks
//! they queue, of any request in the isolate. Every continuation carries
//! its request's number as V8's continuation-preserved embedder data (set
//! by the bootstrap's `handle`). While a turn runs, the watchdog asks the
//! isolate for a sample on each tick ([`request_sample`]); the sample,
//! taken on the isolate's thread inside the running JS, charges the turn
//! time since the previous sample to the request running at that moment,
//! and terminates the JS if that request is out of CPU. Time of turns left
//! after the last sample carries over to the next one.
//!
//! Time is the thread's CPU clock (a thread the OS preempts mid-turn is not
//! charged for it). Each sample charges at most the shared time since the
//! previous one, and never more than [`MAX_SAMPLE`]; in expectation a
//! request is charged the time its code ran.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::rc::Rc;
use std::time::Duration;

use deno_core::v8;

/// Requests that have ended whose budget is still known (code they left
/// behind is charged, and stopped, against it).
const ENDED_KEPT: usize = 64;

/// The most one sample charges (three watchdog ticks): what a request can
/// be charged for others' code at one sample, at worst.
pub const MAX_SAMPLE: Duration = Duration::from_millis(6);

/// This thread's CPU clock.
pub fn thread_cpu() -> Duration {
  cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The time of `clock` (a thread's CPU clock, this one's or another's,
/// from `pthread_getcpuclockid`); zero if it cannot be read.
pub fn cpu_clock(clock: libc::clockid_t) -> Duration {
  let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
  // SAFETY: `ts` is a valid, writable timespec.
  if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
    return Duration::ZERO;
  }
  Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The CPU budgets of the requests in one isolate and the samples of its
/// shared turns. Lives in the isolate (a V8 slot) and is touched only on
/// its thread: by the server between entries, by samples during them.
pub struct CpuShares {
  inner: RefCell<State>,
  /// The isolate's context, where the embedder data is read.
  context: v8::Global<v8::Context>,
}

#[derive(Default)]
struct State {
  /// The turn being sampled, if one runs now.
  turn: Option<u64>,
  /// The thread's CPU clock from which the next sample charges.
  since: Option<Duration>,
  /// Shared time of earlier turns not yet charged to anyone.
  carried: Duration,
  /// What each request may still use, by request number.
  left: rustc_hash::FxHashMap<u32, Duration>,
  ended: VecDeque<u32>,
  /// Charged by samples since the server last looked.
  charges: Vec<(u32, Duration)>,
  /// The request whose code was running out of CPU when a sample stopped it.
  stopped: Option<u32>,
  /// Budget of code that belongs to no request (module scope timers),
  /// per turn.
  unowned_budget: Duration,
  unowned: Duration,
}

impl CpuShares {
  /// A request joins with `budget` of CPU.
  pub fn join(&self, id: u32, budget: Duration) {
    let mut s = self.inner.borrow_mut();
    s.unowned_budget = s.unowned_budget.max(budget);
    s.left.insert(id, budget);
  }

  /// What `id` has left changed (after an entry timed for it alone).
  pub fn set_left(&self, id: u32, left: Duration) {
    if let Some(l) = self.inner.borrow_mut().left.get_mut(&id) {
      *l = left;
    }
  }

  /// The request has ended; code it left behind is still charged to it.
  pub fn end(&self, id: u32) {
    let mut s = self.inner.borrow_mut();
    if !s.left.contains_key(&id) {
      return;
    }
    s.ended.push_back(id);
    while s.ended.len() > ENDED_KEPT {
      if let Some(old) = s.ended.pop_front() {
        s.left.remove(&old);
      }
    }
  }

  /// A shared turn `turn` starts at `now` (the thread's CPU clock):
  /// samples taken for it count.
  pub fn begin_turn(&self, turn: u64, now: Duration) {
    let mut s = self.inner.borrow_mut();
    s.turn = Some(turn);
    s.since = Some(now);
    s.unowned = Duration::ZERO;
  }

  /// The turn ended at `now`: its time since the last sample carries over.
  pub fn end_turn(&self, now: Duration) {
    let mut s = self.inner.borrow_mut();
    s.turn = None;
    if let Some(since) = s.since.take() {
      s.carried += now.saturating_sub(since);
    }
  }

  /// What samples charged since the last look, by request number.
  pub fn drain_charges(&self, mut f: impl FnMut(u32, Duration)) {
    let charges = std::mem::take(&mut self.inner.borrow_mut().charges);
    for (id, d) in &charges {
      f(*id, *d);
    }
    let mut s = self.inner.borrow_mut();
    if s.charges.is_empty() {
      s.charges = charges;
      s.charges.clear();
    }
  }

  /// The request a sample stopped for its CPU, if any (taken).
  pub fn take_stopped(&self) -> Option<u32> {
    self.inner.borrow_mut().stopped.take()
  }

  /// A sample of turn `turn` finds request `id` running (0: code of no
  /// request). Returns whether to terminate it.
  fn sample(&self, turn: u64, id: u32, now: Duration) -> bool {
    let mut s = self.inner.borrow_mut();
    if s.turn != Some(turn) {
      return false;
    }
    let Some(since) = s.since.replace(now) else {
      return false;
    };
    let d = (std::mem::take(&mut s.carried) + now.saturating_sub(since)).min(MAX_SAMPLE);
    let over = match s.left.get_mut(&id) {
      Some(left) => {
        *left = left.saturating_sub(d);
        left.is_zero()
      }
      None => {
        s.unowned += d;
        s.unowned >= s.unowned_budget
      }
    };
    s.charges.push((id, d));
    if over {
      s.stopped = Some(id);
    }
    over
  }
}

/// Asks `handle`'s isolate for a sample of shared turn `turn` (from any
/// thread); a no-op if the turn is over by the time the isolate looks.
pub fn request_sample(handle: &v8::IsolateHandle, turn: u64) -> bool {
  handle.request_interrupt(on_sample, turn as usize as *mut c_void)
}

/// Installs the shares of an isolate in it, where samples find them.
pub(crate) fn install(isolate: &mut v8::Isolate, context: v8::Global<v8::Context>) -> Rc<CpuShares> {
  let shares = Rc::new(CpuShares {
    inner: RefCell::default(),
    context,
  });
  isolate.set_slot(shares.clone());
  shares
}

/// The request number an async context names: the number itself, or the
/// first element of the frozen `[number, stores]` pair the bootstrap makes
/// once an AsyncLocalStorage holds a store (js/node_async_hooks.js); 0 for
/// none.
fn request_of(scope: &mut v8::PinScope, v: v8::Local<v8::Value>) -> u32 {
  if let Ok(n) = v8::Local::<v8::Uint32>::try_from(v) {
    return n.value();
  }
  v8::Local::<v8::Array>::try_from(v)
    .ok()
    .and_then(|a| a.get_index(scope, 0))
    .and_then(|n| v8::Local::<v8::Uint32>::try_from(n).ok())
    .map_or(0, |n| n.value())
}

unsafe extern "C" fn on_sample(ptr: v8::UnsafeRawIsolatePtr, data: *mut c_void) {
  // SAFETY: V8 calls this on the isolate's thread, inside its running JS,
  // with the isolate's own pointer; `Isolate` is a plain pointer wrapper
  // (dropping it disposes nothing).
  let mut isolate = unsafe { v8::Isolate::from_raw_isolate_ptr(ptr) };
  let Some(shares) = isolate.get_slot::<Rc<CpuShares>>().cloned() else {
    return;
  };
  let id = {
    v8::scope_with_context!(let scope, &mut isolate, &shares.context);
    let v = scope.get_continuation_preserved_embedder_data();
    request_of(scope, v)
  };
  if shares.sample(data as usize as u64, id, thread_cpu()) {
    isolate.terminate_execution();
  }
}
