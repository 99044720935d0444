//! Counters of the whole engine and of each worker, shared by the executor
//! threads (read with [`crate::Engine::stats`], exported by
//! `obs::metrics`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use edge_core::bucket::{ConsoleBudget, Verdict};

use crate::config::ConsoleLimits;
pub use edge_core::counters::{exported_bound_s, Counter, Gauge, Histogram};
use edge_core::limits::LimitKind;

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
  /// Requests that waited `runtime.max_queue_ms` for an isolate and got 503.
  pub queue_timeouts: Counter,
  /// Isolates bound to a worker, busy or idle.
  pub live_isolates: Gauge,
  /// Blank isolates ready for cold starts.
  pub blank_isolates: Gauge,
  /// Client connections open now (after TLS, if any).
  pub open_connections: Gauge,
  /// Requests holding an isolate now (their response or waitUntil work is
  /// not finished).
  pub in_flight: Gauge,
  /// Executor threads wedged now: not back a second after their isolate's
  /// termination (inside one builtin V8 runs to the end).
  pub wedged_threads: Gauge,
  /// Connections closed at accept: `server.max_connections` or
  /// `server.max_connections_per_ip` were open.
  pub connections_refused_total: Counter,
  pub connections_refused_per_ip: Counter,
  /// Connections closed by the front door's timeouts: a TLS handshake not
  /// finished in time, or nothing sent or received for the idle timeout.
  pub handshake_timeouts: Counter,
  pub idle_timeouts: Counter,
  /// Connections closed: the client read nothing for `send_timeout_s`;
  /// requests answered 408: their body came slower than
  /// `min_body_bytes_per_s`.
  pub send_timeouts: Counter,
  pub slow_bodies: Counter,
  /// HTTP/1.1 requests refused (400) for a line ended by a bare LF.
  pub bare_lf: Counter,
  /// Requests refused at the front door for having come through
  /// `MAX_HOPS` workers already (a loop).
  pub loops_refused: Counter,
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
  pub wedged_threads: i64,
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
      wedged_threads: self.wedged_threads.get(),
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
  /// Its live tail (requests and console lines).
  pub tail: super::tail::Tail,
  /// Module code caches read from `runtime.code_cache_dir` and written to it.
  pub code_cache_read: Counter,
  pub code_cache_written: Counter,
  /// Whether its requests mostly end at a limit (then they run in the
  /// quarantine lane).
  pub abuse: edge_core::abuse::Abuse,
  /// Requests run in the quarantine lane.
  pub quarantined: Counter,
  /// Cron triggers' runs, and those that failed (threw, hit a limit).
  pub scheduled: Counter,
  pub scheduled_failed: Counter,
  /// Queue messages handed to its `queue()`, retried, and moved to the
  /// dead-letter queue or dropped after their retries; batches that failed
  /// (threw, hit a limit, timed out).
  pub queue_delivered: Counter,
  pub queue_retried: Counter,
  pub queue_dead: Counter,
  pub queue_failed: Counter,
  console: Mutex<Option<ConsoleBudget>>,
  /// Bytes a second the server compresses for the worker's responses.
  encode: Mutex<Option<edge_core::bucket::TokenBucket>>,
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

  /// Whether `bytes` more of the worker's responses may be compressed now
  /// (`None`), or how long to wait: `per_s` bytes a second over all its
  /// responses, a second's worth as the burst.
  pub fn encode_wait(&self, per_s: u64, bytes: u64) -> Option<Duration> {
    let now = Instant::now();
    self
      .encode
      .lock()
      .expect("encode budget")
      .get_or_insert_with(|| edge_core::bucket::TokenBucket::new(per_s, now))
      .take_or_wait(now, bytes)
  }

  /// Whether one more `console.*` line of `bytes` may be logged: token
  /// buckets of lines and bytes a second (a second's worth is the burst)
  /// shared by all the worker's isolates.
  pub fn console_line(&self, rates: &ConsoleLimits, bytes: usize) -> Verdict {
    let now = Instant::now();
    let verdict = self
      .console
      .lock()
      .expect("console budget")
      .get_or_insert_with(|| ConsoleBudget::new(rates.lines_per_s, rates.bytes_per_s, now))
      .take(now, bytes as u64);
    if verdict == Verdict::Drop {
      self.console_dropped.inc();
    }
    verdict
  }
}
