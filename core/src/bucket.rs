//! Token buckets: `per_s` tokens a second, a burst of the same size. A
//! [`ConsoleBudget`] holds two, lines and bytes, for a worker's `console.*`
//! output (shared by all its isolates), and says, on the first line let
//! through after some were dropped, how many.

use std::time::Instant;

/// What to do with one event (one `console.*` line).
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
  Pass,
  /// Let it through, and say first how many were dropped before it.
  PassAfterDropping(u64),
  Drop,
}

/// `per_s` tokens a second, up to `per_s` held; `per_s == 0` is no limit.
#[derive(Debug)]
pub struct TokenBucket {
  per_s: u64,
  tokens: f64,
  at: Instant,
}

impl TokenBucket {
  /// A full bucket at `now`.
  pub fn new(per_s: u64, now: Instant) -> Self {
    Self {
      per_s,
      tokens: per_s as f64,
      at: now,
    }
  }

  /// Takes `n` tokens at `now` if they are there.
  pub fn try_take(&mut self, now: Instant, n: u64) -> bool {
    self.take_or_wait(now, n).is_none()
  }

  /// Takes `n` tokens at `now` if they are there (`None`), else how long
  /// until they will be (nothing taken).
  pub fn take_or_wait(&mut self, now: Instant, n: u64) -> Option<std::time::Duration> {
    self.refill(now);
    if self.has(n) {
      self.spend(n);
      return None;
    }
    let short = n.min(self.per_s) as f64 - self.tokens;
    Some(std::time::Duration::from_secs_f64(short / self.per_s as f64))
  }

  fn refill(&mut self, now: Instant) {
    let rate = self.per_s as f64;
    let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate;
    self.tokens = (self.tokens + refill).min(rate);
    self.at = self.at.max(now);
  }

  /// Whether `n` tokens are there (never more than a burst is asked for).
  fn has(&self, n: u64) -> bool {
    self.per_s == 0 || self.tokens >= n.min(self.per_s) as f64
  }

  fn spend(&mut self, n: u64) {
    if self.per_s != 0 {
      self.tokens -= n.min(self.per_s) as f64;
    }
  }
}

/// A worker's console allowance: lines a second and bytes a second.
#[derive(Debug)]
pub struct ConsoleBudget {
  lines: TokenBucket,
  bytes: TokenBucket,
  dropped_since_note: u64,
}

impl ConsoleBudget {
  /// Full at `now`; 0 for either rate is no limit on it.
  pub fn new(lines_per_s: u32, bytes_per_s: u64, now: Instant) -> Self {
    Self {
      lines: TokenBucket::new(lines_per_s.into(), now),
      bytes: TokenBucket::new(bytes_per_s, now),
      dropped_since_note: 0,
    }
  }

  /// Takes one line of `bytes` at `now`, if both buckets have room (a
  /// line larger than a second's bytes needs a full bucket).
  pub fn take(&mut self, now: Instant, bytes: u64) -> Verdict {
    self.lines.refill(now);
    self.bytes.refill(now);
    if !self.lines.has(1) || !self.bytes.has(bytes) {
      self.dropped_since_note += 1;
      return Verdict::Drop;
    }
    self.lines.spend(1);
    self.bytes.spend(bytes);
    match std::mem::take(&mut self.dropped_since_note) {
      0 => Verdict::Pass,
      n => Verdict::PassAfterDropping(n),
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn take_or_wait_says_how_long() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(1000, t0);
    assert_eq!(b.take_or_wait(t0, 1000), None);
    let wait = b.take_or_wait(t0, 500).unwrap();
    assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
    assert_eq!(b.take_or_wait(t0 + wait, 500), None);
    // More than a burst waits for a burst.
    let wait = b.take_or_wait(t0 + wait, 5000).unwrap();
    assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
    assert_eq!(TokenBucket::new(0, t0).take_or_wait(t0, u64::MAX), None);
  }
  use std::time::Duration;

  #[test]
  fn a_burst_then_the_rate() {
    let t0 = Instant::now();
    let mut b = ConsoleBudget::new(10, 0, t0);
    for _ in 0..10 {
      assert_eq!(b.take(t0, 1), Verdict::Pass);
    }
    assert_eq!(b.take(t0, 1), Verdict::Drop);
    assert_eq!(b.take(t0, 1), Verdict::Drop);
    // 100 ms later one token is back, and the drops are told.
    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(b.take(t1, 1), Verdict::PassAfterDropping(2));
    assert_eq!(b.take(t1, 1), Verdict::Drop);
    // The bucket never holds more than one second's worth.
    let t2 = t1 + Duration::from_secs(60);
    let passed = (0..100).filter(|_| b.take(t2, 1) != Verdict::Drop).count();
    assert_eq!(passed, 10);
  }

  #[test]
  fn bytes_are_a_budget_of_their_own() {
    let t0 = Instant::now();
    let mut b = ConsoleBudget::new(1000, 1000, t0);
    assert_eq!(b.take(t0, 600), Verdict::Pass);
    // 400 bytes left: a line of 500 waits, one of 400 passes.
    assert_eq!(b.take(t0, 500), Verdict::Drop);
    assert_eq!(b.take(t0, 400), Verdict::PassAfterDropping(1));
    assert_eq!(b.take(t0, 1), Verdict::Drop);
    // A dropped line takes no line token: a second later both are full.
    let t1 = t0 + Duration::from_secs(1);
    let passed = (0..2000).filter(|_| b.take(t1, 0) != Verdict::Drop).count();
    assert_eq!(passed, 1000);
    // A line over a second's bytes passes on a full bucket, and empties it.
    let t2 = t1 + Duration::from_secs(1);
    assert_eq!(b.take(t2, 5000), Verdict::PassAfterDropping(1000));
    assert_eq!(b.take(t2, 1), Verdict::Drop);
  }

  #[test]
  fn a_bucket_alone() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(2, t0);
    assert!(b.try_take(t0, 1) && b.try_take(t0, 1));
    assert!(!b.try_take(t0, 1));
    assert!(b.try_take(t0 + Duration::from_millis(500), 1));
  }

  #[test]
  fn zero_means_no_limit() {
    let t0 = Instant::now();
    let mut b = ConsoleBudget::new(0, 0, t0);
    assert!((0..10_000).all(|_| b.take(t0, 1 << 20) == Verdict::Pass));
  }

  #[test]
  fn a_clock_read_out_of_order_takes_nothing_back() {
    let t0 = Instant::now() + Duration::from_secs(1);
    let mut b = ConsoleBudget::new(1, 0, t0);
    assert_eq!(b.take(t0, 1), Verdict::Pass);
    assert_eq!(b.take(t0 - Duration::from_millis(500), 1), Verdict::Drop);
    assert_eq!(b.take(t0 + Duration::from_secs(1), 1), Verdict::PassAfterDropping(1));
  }
}
