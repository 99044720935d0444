//! Logs: `tracing` output as text or JSON, and the sink that carries a
//! worker's `console.*` calls into it with the worker name and request id.

use std::sync::Arc;

use js_api::{LogSink, WorkerLogContext};

use crate::stats::{ConsoleVerdict, Stats};

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
  #[default]
  Text,
  Json,
}

/// Installs the global subscriber (`RUST_LOG` filters, default `info`).
/// Lines are written to stderr by a background thread (request threads
/// only format them); keep the returned guard until exit so the last ones
/// are flushed.
pub fn init(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
  use tracing_subscriber::EnvFilter;
  let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
    .lossy(false)
    .finish(std::io::stderr());
  let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
  let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
  let _ = match format {
    LogFormat::Text => builder.try_init(),
    LogFormat::Json => builder.json().try_init(),
  };
  guard
}

/// `console.log` and friends from workers, as `worker` target events,
/// at most `per_s` lines a second per worker.
pub struct ConsoleSink {
  stats: Arc<Stats>,
  per_s: u32,
}

impl ConsoleSink {
  pub fn new(stats: Arc<Stats>, per_s: u32) -> Self {
    Self { stats, per_s }
  }
}

impl LogSink for ConsoleSink {
  fn log(&self, ctx: &WorkerLogContext, level: u32, message: &str) {
    let worker = &*ctx.worker;
    let request_id = RequestId(ctx.request_id);
    match self.stats.worker(worker).console_line(self.per_s) {
      ConsoleVerdict::Drop => return,
      ConsoleVerdict::LogAfterDropping(n) => tracing::warn!(
        target: "worker",
        worker,
        "{n} console lines dropped (over {} a second)",
        self.per_s
      ),
      ConsoleVerdict::Log => {}
    }
    match level {
      0 => tracing::debug!(target: "worker", worker, %request_id, "{message}"),
      1 => tracing::info!(target: "worker", worker, %request_id, "{message}"),
      2 => tracing::warn!(target: "worker", worker, %request_id, "{message}"),
      _ => tracing::error!(target: "worker", worker, %request_id, "{message}"),
    }
  }
}

/// A request id as it appears in logs: 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId(pub u64);

impl RequestId {
  /// The id as a response header value: 16 hex digits, formatted without
  /// the `fmt` machinery (it is on every response).
  pub fn header_value(self) -> http::HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
      *b = HEX[((self.0 >> (60 - 4 * i)) & 0xf) as usize];
    }
    http::HeaderValue::from_bytes(&out).expect("hex digits are a valid header value")
  }
}

impl std::fmt::Display for RequestId {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "{:016x}", self.0)
  }
}

/// One request's access line (target `access`, info level), written when
/// its response body is sent.
pub struct AccessLine {
  pub request_id: RequestId,
  pub peer: Option<std::net::SocketAddr>,
  pub host: String,
  pub worker: Option<std::sync::Arc<str>>,
  pub method: http::Method,
  pub path: String,
  pub status: u16,
  pub wall: std::time::Duration,
  pub cpu: std::time::Duration,
  pub cold: bool,
}

impl AccessLine {
  pub fn emit(&self, bytes: u64) {
    tracing::info!(
      target: "access",
      request_id = %self.request_id,
      peer = self.peer.map(|p| p.to_string()),
      host = %self.host,
      worker = self.worker.as_deref().unwrap_or("-"),
      method = %self.method,
      path = %self.path,
      status = self.status,
      bytes,
      wall_ms = self.wall.as_secs_f64() * 1e3,
      cpu_ms = self.cpu.as_secs_f64() * 1e3,
      start = if self.cold { "cold" } else { "warm" },
    );
  }
}
