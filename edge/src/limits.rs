//! Step 5's accounting: CPU time a request spends in its isolate, read from
//! the thread's CPU clock around every entry into JavaScript.

use std::time::Duration;

/// CPU time this thread has used so far.
pub fn thread_cpu_time() -> Duration {
  let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
  // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
  // supported on every Linux the server runs on.
  let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
  if rc != 0 {
    return Duration::ZERO;
  }
  Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time one request has used in JavaScript and Wasm so far, summed
/// over every turn of its isolate's event loop.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuMeter {
  used: Duration,
}

impl CpuMeter {
  /// Runs `f` (an entry into the isolate) and adds its CPU time.
  #[inline]
  pub fn measure<R>(&mut self, f: impl FnOnce() -> R) -> R {
    let start = thread_cpu_time();
    let r = f();
    self.used += thread_cpu_time().saturating_sub(start);
    r
  }

  pub fn used(&self) -> Duration {
    self.used
  }
}
