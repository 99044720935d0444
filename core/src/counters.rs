//! Counters, gauges and latency histograms: atomics any thread may bump,
//! read by the metrics renderer.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
  pub fn inc(&self) {
    self.0.fetch_add(1, Ordering::Relaxed);
  }
  pub fn add(&self, n: u64) {
    self.0.fetch_add(n, Ordering::Relaxed);
  }
  pub fn get(&self) -> u64 {
    self.0.load(Ordering::Relaxed)
  }
}

#[derive(Default, Debug)]
pub struct Gauge(AtomicI64);

impl Gauge {
  pub fn add(&self, n: i64) {
    self.0.fetch_add(n, Ordering::Relaxed);
  }
  pub fn get(&self) -> i64 {
    self.0.load(Ordering::Relaxed)
  }
}

/// A histogram of durations with fixed buckets (10 µs, then ×1.25 apart),
/// with the sum and count Prometheus wants.
#[derive(Debug)]
pub struct Histogram {
  buckets: Vec<AtomicU64>,
  sum_ns: AtomicU64,
}

pub const BUCKETS: usize = 64;

/// The upper bound of bucket `i`, in microseconds.
pub fn bucket_bound_us(i: usize) -> f64 {
  10.0 * 1.25f64.powi(i as i32)
}

/// The bucket a duration of `us` microseconds falls in: the first whose
/// bound is at least `us` (the last for anything larger).
pub fn bucket_of(us: f64) -> usize {
  if us <= 10.0 {
    return 0;
  }
  let mut i = ((us / 10.0).ln() / 1.25f64.ln()).ceil() as usize;
  while i > 0 && bucket_bound_us(i - 1) >= us {
    i -= 1;
  }
  while i < BUCKETS - 1 && bucket_bound_us(i) < us {
    i += 1;
  }
  i.min(BUCKETS - 1)
}

impl Default for Histogram {
  fn default() -> Self {
    Self {
      buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
      sum_ns: AtomicU64::new(0),
    }
  }
}

impl Histogram {
  pub fn record(&self, d: Duration) {
    let i = bucket_of(d.as_secs_f64() * 1e6);
    self.buckets[i].fetch_add(1, Ordering::Relaxed);
    self.sum_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
  }

  /// Per-bucket counts (not cumulative).
  pub fn counts(&self) -> Vec<u64> {
    self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
  }

  pub fn sum(&self) -> Duration {
    Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed))
  }

  /// The upper bound of the bucket holding quantile `q` (0..=1), in
  /// microseconds; 0 when empty.
  pub fn quantile_us(&self, q: f64) -> f64 {
    let counts = self.counts();
    let total: u64 = counts.iter().sum();
    if total == 0 {
      return 0.0;
    }
    let target = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
      seen += c;
      if seen >= target {
        return bucket_bound_us(i);
      }
    }
    bucket_bound_us(BUCKETS - 1)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn every_duration_lands_in_the_first_bucket_that_holds_it() {
    for us in [0.0, 1.0, 10.0, 10.000001, 12.5, 12.6, 100.0, 1e3, 1e6, 3.7e6, 1e12] {
      let i = bucket_of(us);
      if i < BUCKETS - 1 {
        assert!(bucket_bound_us(i) >= us, "{us} fits bucket {i}");
      }
      if i > 0 {
        assert!(bucket_bound_us(i - 1) < us, "{us} not in bucket {}", i - 1);
      }
    }
  }

  #[test]
  fn bounds_are_exact_members() {
    for i in 0..BUCKETS - 1 {
      assert_eq!(bucket_of(bucket_bound_us(i)), i);
    }
  }

  #[test]
  fn sum_counts_and_quantiles() {
    let h = Histogram::default();
    assert_eq!(h.quantile_us(0.5), 0.0);
    for _ in 0..99 {
      h.record(Duration::from_micros(5));
    }
    h.record(Duration::from_millis(100));
    assert_eq!(h.counts().iter().sum::<u64>(), 100);
    assert_eq!(h.sum(), Duration::from_micros(99 * 5) + Duration::from_millis(100));
    assert_eq!(h.quantile_us(0.5), 10.0);
    assert_eq!(h.quantile_us(0.99), 10.0);
    assert!(h.quantile_us(1.0) >= 100_000.0);
  }

  #[test]
  fn counters_and_gauges() {
    let (c, g) = (Counter::default(), Gauge::default());
    c.inc();
    c.add(4);
    g.add(3);
    g.add(-5);
    assert_eq!((c.get(), g.get()), (5, -2));
  }
}
