//! Limits of one request, and how they are enforced.
//!
//! - CPU: every entry into the isolate is timed ([`CpuMeter::measure`])
//!   and summed over the request. While JS runs, the executor's
//!   [`CpuDeadline`] holds the remaining budget; the [`Watchdog`] thread
//!   reads that thread's CPU clock and terminates the isolate when it is
//!   spent.
//! - Memory: V8's heap limit and our ArrayBuffer allocator
//!   (`js_api::memory`) stop the script when the isolate's budget is spent.
//! - Off-thread work (`crypto.subtle` on the blocking pool) is measured by
//!   the pool threads' CPU clocks ([`offthread`]) and charged to the
//!   requests that had such work in flight.
//! - Wall clock, body size and subrequests are checked on the request path.
//!
//! Binding a worker runs through [`metered::run`], whose outcome is typed:
//! done, or a [`LimitHit`] (the isolate then condemned). Requests' calls
//! and turns are metered by their isolate's driver (`pool::host`), exactly
//! ([`CpuMeter::measure`]) or, for turns several requests share, by
//! sampling ([`CpuDeadline::run_shared`], `js_api::shares`).

pub mod metered;
pub mod offthread;
pub mod watchdog;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use edge_core::limits::{Amount, LimitHit, LimitKind, Limits, LimitsConfig, Phase};
use js_api::IsolateStopper;
pub use metered::Metered;
pub use watchdog::{CpuDeadline, Watchdog};

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
  pub fn measure<R>(&mut self, watch: &CpuDeadline, stopper: &Arc<IsolateStopper>, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    watch.arm(stopper, self.limit.saturating_sub(self.used), start, None);
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

  /// What is left of the budget.
  pub fn left(&self) -> Duration {
    self.limit.saturating_sub(self.used)
  }

  /// Adds time measured elsewhere (a sampled share of a shared turn).
  pub fn charge(&mut self, d: Duration) {
    self.used += d;
    if self.used >= self.limit {
      self.exceeded = true;
    }
  }

  /// Whether the request went over its CPU limit (the isolate was, or
  /// would have been, terminated).
  pub fn exceeded(&self) -> bool {
    self.exceeded
  }

  pub fn hit(&self, phase: Phase) -> LimitHit {
    LimitHit::cpu(self.limit, self.used, phase)
  }
}
