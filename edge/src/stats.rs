//! Counters of the whole engine, shared by its threads (read with
//! [`crate::Engine::stats`]).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
  pub fn inc(&self) {
    self.0.fetch_add(1, Ordering::Relaxed);
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

/// A latency histogram with fixed buckets (microseconds, ×1.25 apart).
#[derive(Debug)]
pub struct Histogram {
  buckets: Vec<AtomicU64>,
}

const BUCKETS: usize = 64;

fn bucket_bound_us(i: usize) -> f64 {
  10.0 * 1.25f64.powi(i as i32)
}

impl Default for Histogram {
  fn default() -> Self {
    Self {
      buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
    }
  }
}

impl Histogram {
  pub fn record(&self, d: std::time::Duration) {
    let us = d.as_secs_f64() * 1e6;
    let i = (0..BUCKETS).find(|&i| us <= bucket_bound_us(i)).unwrap_or(BUCKETS - 1);
    self.buckets[i].fetch_add(1, Ordering::Relaxed);
  }

  /// The upper bound of the bucket holding quantile `q` (0..=1), in
  /// microseconds; 0 when empty.
  pub fn quantile_us(&self, q: f64) -> f64 {
    let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
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

#[derive(Default, Debug)]
pub struct Stats {
  /// Requests that bound a blank isolate to their worker.
  pub cold_starts: Counter,
  /// Requests served by an idle isolate of their worker.
  pub warm_starts: Counter,
  /// Cold starts with no blank isolate ready (one was made on the spot).
  pub blank_misses: Counter,
  /// Isolates bound ahead of the request because a ClientHello named the host.
  pub sni_warmups: Counter,
  /// Idle isolates dropped for capacity or idleness.
  pub evictions: Counter,
  /// Isolates bound to a worker, busy or idle.
  pub live_isolates: Gauge,
  /// Server-side time from taking the request to its response head, for
  /// requests that started cold and warm.
  pub cold_latency: Histogram,
  pub warm_latency: Histogram,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
  pub cold_starts: u64,
  pub warm_starts: u64,
  pub blank_misses: u64,
  pub sni_warmups: u64,
  pub evictions: u64,
  pub live_isolates: i64,
}

impl Stats {
  pub fn snapshot(&self) -> StatsSnapshot {
    StatsSnapshot {
      cold_starts: self.cold_starts.get(),
      warm_starts: self.warm_starts.get(),
      blank_misses: self.blank_misses.get(),
      sni_warmups: self.sni_warmups.get(),
      evictions: self.evictions.get(),
      live_isolates: self.live_isolates.get(),
    }
  }
}
