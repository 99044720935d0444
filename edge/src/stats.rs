//! Counters of the whole engine and of each worker, shared by the executor
//! threads (read with [`crate::Engine::stats`], exported by
//! [`crate::metrics`]).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::limits::LimitKind;

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
    let us = d.as_secs_f64() * 1e6;
    let i = if us <= 10.0 {
      0
    } else {
      // The first bucket whose bound is at least `us`.
      let mut i = ((us / 10.0).ln() / 1.25f64.ln()).ceil() as usize;
      while i > 0 && bucket_bound_us(i - 1) >= us {
        i -= 1;
      }
      i.min(BUCKETS - 1)
    };
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

/// Why TLS handshakes failed (a label of the metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
  /// No certificate for the ClientHello's server name, or no SNI and no
  /// default certificate.
  UnknownName,
  /// The peer broke off or sent something that is not TLS.
  Protocol,
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
  /// Blank isolates ready for cold starts.
  pub blank_isolates: Gauge,
  /// Client connections open now (after TLS, if any).
  pub open_connections: Gauge,
  /// Requests holding an isolate now (their response or waitUntil work is
  /// not finished).
  pub in_flight: Gauge,
  pub tls_handshakes: Counter,
  pub tls_unknown_name: Counter,
  pub tls_protocol_errors: Counter,
  /// Server-side time from taking the request to its response head, for
  /// requests that started cold and warm.
  pub cold_latency: Histogram,
  pub warm_latency: Histogram,
  /// Per worker, by name (kept across versions of a worker).
  pub workers: DashMap<Arc<str>, Arc<WorkerStats>>,
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

  /// The counters of the worker named `name` (made on first use).
  pub fn worker(&self, name: &str) -> Arc<WorkerStats> {
    if let Some(w) = self.workers.get(name) {
      return w.clone();
    }
    self.workers.entry(Arc::from(name)).or_default().clone()
  }

  pub fn handshake_failed(&self, why: HandshakeFailure) {
    match why {
      HandshakeFailure::UnknownName => self.tls_unknown_name.inc(),
      HandshakeFailure::Protocol => self.tls_protocol_errors.inc(),
    }
  }
}

/// One worker's counters.
#[derive(Default, Debug)]
pub struct WorkerStats {
  /// Responses by status class: 1xx .. 5xx.
  pub responses: [Counter; 5],
  /// Server-side time to the response head.
  pub latency: Histogram,
  /// CPU time of each request's JavaScript and Wasm.
  pub cpu: Histogram,
  /// Limit hits by [`LimitKind`] (in `LimitKind::ALL` order).
  pub limit_hits: [Counter; 5],
  pub cold_starts: Counter,
  /// Isolates bound to this worker, busy or idle.
  pub isolates: Gauge,
  /// Isolates of this worker waiting for a request.
  pub idle_isolates: Gauge,
  /// Heap of this worker's isolates, as last sampled.
  pub heap_bytes: Gauge,
  /// `console.*` lines dropped by the rate limit.
  pub console_dropped: Counter,
  /// Module code caches read from `runtime.code_cache_dir` and written to it.
  pub code_cache_read: Counter,
  pub code_cache_written: Counter,
  console: Mutex<Option<ConsoleBudget>>,
}

#[derive(Debug)]
struct ConsoleBudget {
  tokens: f64,
  at: Instant,
  dropped_since_note: u64,
}

/// What to do with one `console.*` line.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsoleVerdict {
  Log,
  /// Log it, and say first how many were dropped before it.
  LogAfterDropping(u64),
  Drop,
}

impl WorkerStats {
  /// Counts one answered request: its status, the limit that ended it (if
  /// one did), its latency and CPU time.
  pub fn finished(&self, status: http::StatusCode, limit: Option<LimitKind>, latency: Duration, cpu: Duration) {
    let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
    self.responses[class].inc();
    if let Some(kind) = limit {
      self.limit_hit(kind);
    }
    self.latency.record(latency);
    self.cpu.record(cpu);
  }

  pub fn limit_hit(&self, kind: LimitKind) {
    self.limit_hits[kind as usize].inc();
  }

  /// A token bucket of `per_s` lines a second (burst of the same size)
  /// shared by all the worker's isolates.
  pub fn console_line(&self, per_s: u32) -> ConsoleVerdict {
    if per_s == 0 {
      return ConsoleVerdict::Log;
    }
    let now = Instant::now();
    let mut guard = self.console.lock().expect("console budget");
    let b = guard.get_or_insert(ConsoleBudget {
      tokens: per_s as f64,
      at: now,
      dropped_since_note: 0,
    });
    b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_s as f64).min(per_s as f64);
    b.at = now;
    if b.tokens < 1.0 {
      b.dropped_since_note += 1;
      drop(guard);
      self.console_dropped.inc();
      return ConsoleVerdict::Drop;
    }
    b.tokens -= 1.0;
    match std::mem::take(&mut b.dropped_since_note) {
      0 => ConsoleVerdict::Log,
      n => ConsoleVerdict::LogAfterDropping(n),
    }
  }
}
