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
