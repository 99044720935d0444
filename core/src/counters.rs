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

/// A histogram of durations with fixed buckets on a round grid (ten a
/// decade, 10 µs to 80 s, about ×1.25 apart), with the sum and count
/// Prometheus wants.
#[derive(Debug)]
pub struct Histogram {
  buckets: Vec<AtomicU64>,
  sum_ns: AtomicU64,
}

/// Bounds a decade, times its power of ten: about ×1.25 apart, and 1, 2.5
/// and 5 among them (the exported ones).
const MANTISSAS: [f64; 10] = [1.0, 1.25, 1.6, 2.0, 2.5, 3.2, 4.0, 5.0, 6.4, 8.0];
/// Ten bounds a decade for seven decades, then the bucket of everything
/// larger.
pub const BUCKETS: usize = 71;

const BOUNDS_US: [f64; BUCKETS] = {
  let mut a = [0.0; BUCKETS];
  let (mut i, mut decade) = (0, 10.0);
  while i < BUCKETS {
    a[i] = MANTISSAS[i % 10] * decade;
    i += 1;
    if i % 10 == 0 {
      decade *= 10.0;
    }
  }
  a
};

/// The upper bound of bucket `i`, in microseconds (the last bucket's is
/// 100 s, though it holds anything larger).
pub fn bucket_bound_us(i: usize) -> f64 {
  BOUNDS_US[i]
}

/// The bucket a duration of `us` microseconds falls in: the first whose
/// bound is at least `us` (the last for anything larger).
pub fn bucket_of(us: f64) -> usize {
  BOUNDS_US.partition_point(|&b| b < us).min(BUCKETS - 1)
}

/// The bound of bucket `i` in seconds, written exactly (`0.000025`), for
/// the buckets that are exported: 1, 2.5 and 5 of each decade.
pub fn exported_bound_s(i: usize) -> Option<String> {
  if i + 1 >= BUCKETS {
    return None;
  }
  // MANTISSAS[0], [4] and [7] (1, 2.5, 5) in tens of µs.
  let tens: u64 = match i % 10 {
    0 => 10,
    4 => 25,
    7 => 50,
    _ => return None,
  };
  let us = tens * 10u64.pow((i / 10) as u32);
  let (whole, frac) = (us / 1_000_000, us % 1_000_000);
  Some(if frac == 0 {
    whole.to_string()
  } else {
    format!("{whole}.{}", format!("{frac:06}").trim_end_matches('0'))
  })
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
  fn exported_bounds_are_round_seconds_and_match_the_buckets() {
    let got: Vec<String> = (0..BUCKETS).filter_map(exported_bound_s).collect();
    assert_eq!(got.len(), 21);
    assert_eq!(&got[..4], ["0.00001", "0.000025", "0.00005", "0.0001"]);
    assert_eq!(&got[got.len() - 3..], ["10", "25", "50"]);
    for i in 0..BUCKETS {
      if let Some(s) = exported_bound_s(i) {
        let secs: f64 = s.parse().unwrap();
        assert!(
          (secs * 1e6 - bucket_bound_us(i)).abs() < 1e-6,
          "{s} vs {}",
          bucket_bound_us(i)
        );
      }
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
