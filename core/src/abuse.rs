//! Whether a worker is abusive: most of its recent requests ended at its
//! CPU or memory limit. Such a worker's requests run in the quarantine lane
//! (a low-priority executor thread), so that a tenant spinning to its limit
//! costs the other tenants on the node a share of the CPU, not latency.
//!
//! Counted over the current and the previous second, from every thread
//! (atomics; a lost race miscounts one request).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Requests within the two seconds before a worker can be found abusive.
pub const MIN_REQUESTS: u32 = 8;

#[derive(Default, Debug)]
struct Window {
  second: AtomicU64,
  admitted: AtomicU32,
  hits: AtomicU32,
}

#[derive(Default, Debug)]
pub struct Abuse {
  windows: [Window; 2],
}

impl Abuse {
  /// A request of the worker ended, at a CPU or memory limit if `hit`;
  /// `second` is the clock in whole seconds.
  pub fn record(&self, second: u64, hit: bool) {
    let w = &self.windows[(second % 2) as usize];
    let seen = w.second.load(Ordering::Relaxed);
    if seen != second
      && w
        .second
        .compare_exchange(seen, second, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
      w.admitted.store(0, Ordering::Relaxed);
      w.hits.store(0, Ordering::Relaxed);
    }
    w.admitted.fetch_add(1, Ordering::Relaxed);
    if hit {
      w.hits.fetch_add(1, Ordering::Relaxed);
    }
  }

  /// The second the worker's last request ended in (0: none yet).
  pub fn last_request(&self) -> u64 {
    self
      .windows
      .iter()
      .map(|w| w.second.load(Ordering::Relaxed))
      .max()
      .unwrap_or(0)
  }

  /// More than half of at least [`MIN_REQUESTS`] requests in this second
  /// and the one before ended at a limit.
  pub fn is_abusive(&self, second: u64) -> bool {
    let (mut admitted, mut hits) = (0, 0);
    for w in &self.windows {
      let s = w.second.load(Ordering::Relaxed);
      if s == second || s + 1 == second {
        admitted += w.admitted.load(Ordering::Relaxed);
        hits += w.hits.load(Ordering::Relaxed);
      }
    }
    admitted >= MIN_REQUESTS && hits * 2 > admitted
  }
}

/// The coarse clock of [`Abuse`] at `t` (an instant the caller already
/// read, so that the request path reads the clock no more for it): whole
/// seconds since the process first asked.
pub fn second_at(t: std::time::Instant) -> u64 {
  static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
  t.saturating_duration_since(*START.get_or_init(|| t)).as_secs() + 2
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn mostly_limits_is_abusive_and_it_passes() {
    let a = Abuse::default();
    for _ in 0..7 {
      a.record(100, true);
    }
    assert!(!a.is_abusive(100), "too few requests to tell");
    a.record(100, false);
    a.record(101, true);
    assert!(a.is_abusive(101), "8 of 9 hit a limit");
    for _ in 0..9 {
      a.record(101, false);
    }
    assert!(!a.is_abusive(101), "9 of 18");
    assert!(!a.is_abusive(103), "two quiet seconds later");
  }

  #[test]
  fn an_old_window_is_cleared_when_its_slot_comes_round() {
    let a = Abuse::default();
    for _ in 0..20 {
      a.record(10, true);
    }
    // Second 12 uses second 10's slot.
    for _ in 0..10 {
      a.record(12, false);
    }
    assert!(!a.is_abusive(12));
    assert_eq!(a.last_request(), 12);
    assert_eq!(Abuse::default().last_request(), 0);
  }
}
