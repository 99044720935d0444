//! Logs: `tracing` output as text or JSON, and the sink that carries a
//! worker's `console.*` calls into it with the worker name and request id.

use std::sync::Arc;

use js_api::{LogSink, WorkerLogContext};

use edge_core::bucket::Verdict;
pub use edge_core::request_id::RequestId;

use super::observer::{ConsoleLevel, ConsoleOutput};
use crate::config::ConsoleLimits;
use crate::obs::stats::Stats;

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
  // Colours only for a terminal: not in a file or a pipe.
  let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
  let builder = tracing_subscriber::fmt()
    .with_env_filter(filter)
    .with_writer(writer)
    .with_ansi(ansi);
  let _ = match format {
    LogFormat::Text => builder.try_init(),
    LogFormat::Json => builder.json().try_init(),
  };
  guard
}

/// `console.log` and friends from workers, as `worker` target events,
/// at most `per_s` lines a second per worker.
/// At most `per_s` lines a second per worker; to `output` if an embedder
/// gave one, else to the server's log.
pub struct ConsoleSink {
  stats: Arc<Stats>,
  limits: ConsoleLimits,
  output: Option<Arc<dyn ConsoleOutput>>,
}

impl ConsoleSink {
  pub fn new(stats: Arc<Stats>, limits: ConsoleLimits, output: Option<Arc<dyn ConsoleOutput>>) -> Self {
    Self { stats, limits, output }
  }
}

/// `message` cut to at most `max` bytes (on a character boundary) and
/// marked, if it is longer.
fn cut_line(message: &str, max: usize) -> std::borrow::Cow<'_, str> {
  if message.len() <= max {
    return message.into();
  }
  let mut end = max;
  while !message.is_char_boundary(end) {
    end -= 1;
  }
  format!("{} [line cut at {max} bytes]", &message[..end]).into()
}

impl LogSink for ConsoleSink {
  fn log(&self, ctx: &WorkerLogContext, level: u32, message: &str) {
    let worker = &*ctx.worker;
    let request_id = RequestId(ctx.request_id);
    let message = cut_line(message, self.limits.line_bytes);
    let stats = self.stats.worker(worker);
    match stats.console_line(&self.limits, message.len()) {
      Verdict::Drop => return,
      Verdict::PassAfterDropping(n) => tracing::warn!(
        target: "worker",
        worker,
        "{n} console lines dropped (over {} lines or {} bytes a second)",
        self.limits.lines_per_s,
        self.limits.bytes_per_s
      ),
      Verdict::Pass => {}
    }
    stats.tail.publish(|| {
      let level_name = ["debug", "log", "warn", "error"][level.min(3) as usize];
      serde_json::json!({
        "type": "console",
        "time": super::tail::now_ms(),
        "request_id": request_id.to_string(),
        "level": level_name,
        "message": &*message,
      })
    });
    if let Some(out) = &self.output {
      let level = match level {
        0 => ConsoleLevel::Debug,
        1 => ConsoleLevel::Info,
        2 => ConsoleLevel::Warn,
        _ => ConsoleLevel::Error,
      };
      out.line(worker, request_id, level, &message);
      return;
    }
    match level {
      0 => tracing::debug!(target: "worker", worker, %request_id, "{message}"),
      1 => tracing::info!(target: "worker", worker, %request_id, "{message}"),
      2 => tracing::warn!(target: "worker", worker, %request_id, "{message}"),
      _ => tracing::error!(target: "worker", worker, %request_id, "{message}"),
    }
  }
}

/// The id as a response header value (32 hex digits).
pub fn request_id_header(id: RequestId) -> http::HeaderValue {
  http::HeaderValue::from_bytes(&id.hex()).expect("hex digits are a valid header value")
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
      wall_ms = millis(self.wall),
      cpu_ms = millis(self.cpu),
      // A request no worker took started nothing.
      start = match (&self.worker, self.cold) {
        (None, _) => "-",
        (Some(_), true) => "cold",
        (Some(_), false) => "warm",
      },
    );
  }
}

/// Milliseconds to the microsecond (`12.643`, not `12.643288000000001`).
fn millis(d: std::time::Duration) -> f64 {
  (d.as_secs_f64() * 1e6).round() / 1e3
}
