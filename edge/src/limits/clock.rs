//! Reading a thread's CPU clock (its own or another's).

use std::time::Duration;

/// The time of `clock` (a thread's CPU clock); zero if it cannot be read.
pub(super) fn clock_time(clock: libc::clockid_t) -> Duration {
  let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
  // SAFETY: `ts` is a valid, writable timespec.
  let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
  if rc != 0 {
    return Duration::ZERO;
  }
  Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
