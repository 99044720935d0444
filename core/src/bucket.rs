//! A token bucket: `per_s` tokens a second, a burst of the same size. It
//! limits a worker's `console.*` lines (shared by all its isolates) and
//! says, on the first line let through after some were dropped, how many.

use std::time::Instant;

/// What to do with one event (one `console.*` line).
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
  Pass,
  /// Let it through, and say first how many were dropped before it.
  PassAfterDropping(u64),
  Drop,
}

#[derive(Debug)]
pub struct TokenBucket {
  per_s: u32,
  tokens: f64,
  at: Instant,
  dropped_since_note: u64,
}

impl TokenBucket {
  /// A full bucket at `now`. `per_s == 0` lets everything through.
  pub fn new(per_s: u32, now: Instant) -> Self {
    Self {
      per_s,
      tokens: per_s as f64,
      at: now,
      dropped_since_note: 0,
    }
  }

  /// Takes a token at `now`, if one is left.
  pub fn take(&mut self, now: Instant) -> Verdict {
    if self.per_s == 0 {
      return Verdict::Pass;
    }
    let rate = self.per_s as f64;
    let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate;
    self.tokens = (self.tokens + refill).min(rate);
    self.at = self.at.max(now);
    if self.tokens < 1.0 {
      self.dropped_since_note += 1;
      return Verdict::Drop;
    }
    self.tokens -= 1.0;
    match std::mem::take(&mut self.dropped_since_note) {
      0 => Verdict::Pass,
      n => Verdict::PassAfterDropping(n),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::time::Duration;

  #[test]
  fn a_burst_then_the_rate() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(10, t0);
    for _ in 0..10 {
      assert_eq!(b.take(t0), Verdict::Pass);
    }
    assert_eq!(b.take(t0), Verdict::Drop);
    assert_eq!(b.take(t0), Verdict::Drop);
    // 100 ms later one token is back, and the drops are told.
    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(b.take(t1), Verdict::PassAfterDropping(2));
    assert_eq!(b.take(t1), Verdict::Drop);
    // The bucket never holds more than one second's worth.
    let t2 = t1 + Duration::from_secs(60);
    let passed = (0..100).filter(|_| b.take(t2) != Verdict::Drop).count();
    assert_eq!(passed, 10);
  }

  #[test]
  fn zero_means_no_limit() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(0, t0);
    assert!((0..10_000).all(|_| b.take(t0) == Verdict::Pass));
  }

  #[test]
  fn a_clock_read_out_of_order_takes_nothing_back() {
    let t0 = Instant::now() + Duration::from_secs(1);
    let mut b = TokenBucket::new(1, t0);
    assert_eq!(b.take(t0), Verdict::Pass);
    assert_eq!(b.take(t0 - Duration::from_millis(500)), Verdict::Drop);
    assert_eq!(b.take(t0 + Duration::from_secs(1)), Verdict::PassAfterDropping(1));
  }
}
