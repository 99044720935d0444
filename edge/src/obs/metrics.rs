//! `GET /metrics` on the admin listener: the engine's and each worker's
//! counters in the Prometheus text format (version 0.0.4).

use std::fmt::Write;

use crate::obs::stats::{exported_bound_s, Histogram, Stats};
use edge_core::limits::LimitKind;

/// Reads one value of a worker's counters.
type WorkerValue = fn(&crate::obs::stats::WorkerStats) -> f64;

/// The whole exposition.
pub fn render(stats: &Stats) -> String {
  let mut out = String::with_capacity(4096 + stats.workers.len() * 4096);
  let o = &mut out;
  let node: [(&str, &str, &str, f64); 21] = [
    (
      "edge_bare_lf_refused_total",
      "counter",
      "HTTP/1.1 requests refused with 400: a line of their head or trailers ended in a bare LF.",
      stats.bare_lf.get() as f64,
    ),
    (
      "edge_send_timeouts_total",
      "counter",
      "Connections closed: the client read nothing of what it was sent for server.send_timeout_s.",
      stats.send_timeouts.get() as f64,
    ),
    (
      "edge_slow_bodies_total",
      "counter",
      "Requests answered 408: their body arrived slower than server.min_body_bytes_per_s.",
      stats.slow_bodies.get() as f64,
    ),
    (
      "edge_loops_refused_total",
      "counter",
      "Requests refused with 508: they had come through 16 workers' fetch() already (edge-via).",
      stats.loops_refused.get() as f64,
    ),
    (
      "edge_handshake_timeouts_total",
      "counter",
      "Connections closed: the TLS handshake did not finish within server.handshake_timeout_s.",
      stats.handshake_timeouts.get() as f64,
    ),
    (
      "edge_idle_timeouts_total",
      "counter",
      "Connections closed: nothing sent or received for server.idle_timeout_s with no request in flight.",
      stats.idle_timeouts.get() as f64,
    ),
    (
      "edge_wedged_threads",
      "gauge",
      "Executor threads not back a second after their isolate's termination (wedged in one builtin).",
      stats.wedged_threads.get() as f64,
    ),
    (
      "edge_open_connections",
      "gauge",
      "Client connections open now.",
      stats.open_connections.get() as f64,
    ),
    (
      "edge_in_flight_requests",
      "gauge",
      "Requests holding an isolate now.",
      stats.in_flight.get() as f64,
    ),
    (
      "edge_tls_handshakes_total",
      "counter",
      "TLS handshakes completed.",
      stats.tls_handshakes.get() as f64,
    ),
    (
      "edge_blank_isolates",
      "gauge",
      "Blank isolates ready for cold starts (the supply).",
      stats.blank_isolates.get() as f64,
    ),
    (
      "edge_live_isolates",
      "gauge",
      "Isolates bound to a worker, busy or idle.",
      stats.live_isolates.get() as f64,
    ),
    (
      "edge_cold_starts_total",
      "counter",
      "Requests that bound a new isolate to their worker.",
      stats.cold_starts.get() as f64,
    ),
    (
      "edge_warm_starts_total",
      "counter",
      "Requests served by an idle isolate of their worker.",
      stats.warm_starts.get() as f64,
    ),
    (
      "edge_blank_misses_total",
      "counter",
      "Cold starts that found no blank isolate ready.",
      stats.blank_misses.get() as f64,
    ),
    (
      "edge_sni_warmups_total",
      "counter",
      "Isolates bound while a TLS handshake named their host.",
      stats.sni_warmups.get() as f64,
    ),
    (
      "edge_evictions_total",
      "counter",
      "Idle isolates dropped for capacity, idleness or a new version.",
      stats.evictions.get() as f64,
    ),
    (
      "edge_queue_timeouts_total",
      "counter",
      "Requests that waited runtime.max_queue_ms for an isolate and got 503.",
      stats.queue_timeouts.get() as f64,
    ),
    (
      "process_resident_memory_bytes",
      "gauge",
      "Resident memory of the process.",
      resident_bytes() as f64,
    ),
    (
      "edge_workers",
      "gauge",
      "Workers with counters.",
      stats.workers.len() as f64,
    ),
    ("edge_up", "gauge", "1 while the server runs.", 1.0),
  ];
  for (name, kind, help, v) in node {
    header(o, name, kind, help);
    let _ = writeln!(o, "{name} {v}");
  }
  header(
    o,
    "edge_tls_handshake_failures_total",
    "counter",
    "TLS handshakes that failed, by reason.",
  );
  let _ = writeln!(
    o,
    "edge_tls_handshake_failures_total{{reason=\"unknown_name\"}} {}",
    stats.tls_unknown_name.get()
  );
  let _ = writeln!(
    o,
    "edge_tls_handshake_failures_total{{reason=\"protocol\"}} {}",
    stats.tls_protocol_errors.get()
  );
  header(
    o,
    "edge_connections_refused_total",
    "counter",
    "Connections closed at accept, by the cap that was full (server.max_connections, server.max_connections_per_ip).",
  );
  let _ = writeln!(
    o,
    "edge_connections_refused_total{{reason=\"total\"}} {}",
    stats.connections_refused_total.get()
  );
  let _ = writeln!(
    o,
    "edge_connections_refused_total{{reason=\"per_ip\"}} {}",
    stats.connections_refused_per_ip.get()
  );

  let mut workers: Vec<_> = stats
    .workers
    .iter()
    .map(|e| (e.key().clone(), e.value().clone()))
    .collect();
  workers.sort_by(|a, b| a.0.cmp(&b.0));

  header(o, "edge_worker_requests_total", "counter", "Responses by status class.");
  for (name, w) in &workers {
    for (i, c) in w.responses.iter().enumerate() {
      let _ = writeln!(
        o,
        "edge_worker_requests_total{{worker=\"{name}\",class=\"{}xx\"}} {}",
        i + 1,
        c.get()
      );
    }
  }
  header(
    o,
    "edge_worker_limit_hits_total",
    "counter",
    "Requests ended by a limit, by kind.",
  );
  for (name, w) in &workers {
    for kind in LimitKind::ALL {
      let _ = writeln!(
        o,
        "edge_worker_limit_hits_total{{worker=\"{name}\",kind=\"{}\"}} {}",
        kind.as_str(),
        w.limit_hits[kind as usize].get()
      );
    }
  }
  let per_worker: [(&str, &str, &str, WorkerValue); 13] = [
    (
      "edge_worker_cold_starts_total",
      "counter",
      "Requests that started a new isolate.",
      |w| w.cold_starts.get() as f64,
    ),
    (
      "edge_worker_code_cache_read_total",
      "counter",
      "Module code caches read from runtime.code_cache_dir.",
      |w| w.code_cache_read.get() as f64,
    ),
    (
      "edge_worker_code_cache_written_total",
      "counter",
      "Module code caches written to runtime.code_cache_dir.",
      |w| w.code_cache_written.get() as f64,
    ),
    (
      "edge_worker_isolates",
      "gauge",
      "Isolates bound to the worker, busy or idle.",
      |w| w.isolates.get() as f64,
    ),
    (
      "edge_worker_warm_isolates",
      "gauge",
      "Idle isolates of the worker, ready for a request.",
      |w| w.idle_isolates.get() as f64,
    ),
    (
      "edge_worker_heap_bytes",
      "gauge",
      "Heap of the worker's isolates, as last sampled.",
      |w| w.heap_bytes.get() as f64,
    ),
    (
      "edge_worker_console_dropped_total",
      "counter",
      "console.* lines dropped by the rate limit.",
      |w| w.console_dropped.get() as f64,
    ),
    (
      "edge_worker_scheduled_total",
      "counter",
      "Cron triggers' runs of the worker's scheduled().",
      |w| w.scheduled.get() as f64,
    ),
    (
      "edge_worker_scheduled_failed_total",
      "counter",
      "Cron triggers' runs that threw or hit a limit.",
      |w| w.scheduled_failed.get() as f64,
    ),
    (
      "edge_worker_queue_messages_total",
      "counter",
      "Queue messages handed to the worker's queue().",
      |w| w.queue_delivered.get() as f64,
    ),
    (
      "edge_worker_queue_retries_total",
      "counter",
      "Queue messages the worker's queue() retried (or failed on).",
      |w| w.queue_retried.get() as f64,
    ),
    (
      "edge_worker_queue_dead_total",
      "counter",
      "Queue messages past their retries: moved to the dead-letter queue, or dropped.",
      |w| w.queue_dead.get() as f64,
    ),
    (
      "edge_worker_queue_failed_total",
      "counter",
      "Queue batches whose queue() threw, hit a limit or timed out.",
      |w| w.queue_failed.get() as f64,
    ),
  ];
  for (metric, kind, help, get) in per_worker {
    header(o, metric, kind, help);
    for (name, w) in &workers {
      let _ = writeln!(o, "{metric}{{worker=\"{name}\"}} {}", get(w));
    }
  }
  header(
    o,
    "edge_worker_request_duration_seconds",
    "histogram",
    "Server-side time to the response head.",
  );
  for (name, w) in &workers {
    histogram(o, "edge_worker_request_duration_seconds", name, &w.latency);
  }
  header(
    o,
    "edge_worker_cpu_seconds",
    "histogram",
    "CPU time of each request's JavaScript and Wasm.",
  );
  for (name, w) in &workers {
    histogram(o, "edge_worker_cpu_seconds", name, &w.cpu);
  }
  out
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
  let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(o: &mut String, name: &str, worker: &str, h: &Histogram) {
  let counts = h.counts();
  let mut cumulative = 0;
  for (i, c) in counts.iter().enumerate() {
    cumulative += c;
    // 1, 2.5 and 5 of each decade, 10 µs to 50 s.
    if let Some(le) = exported_bound_s(i) {
      let _ = writeln!(o, "{name}_bucket{{worker=\"{worker}\",le=\"{le}\"}} {cumulative}");
    }
  }
  let _ = writeln!(o, "{name}_bucket{{worker=\"{worker}\",le=\"+Inf\"}} {cumulative}");
  let _ = writeln!(o, "{name}_sum{{worker=\"{worker}\"}} {}", h.sum().as_secs_f64());
  let _ = writeln!(o, "{name}_count{{worker=\"{worker}\"}} {cumulative}");
}

/// Resident memory of this process (Linux), 0 where unknown.
pub fn resident_bytes() -> u64 {
  let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
    return 0;
  };
  let pages: u64 = statm
    .split_whitespace()
    .nth(1)
    .and_then(|v| v.parse().ok())
    .unwrap_or(0);
  // SAFETY: sysconf has no preconditions.
  let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
  pages * page.max(0) as u64
}
