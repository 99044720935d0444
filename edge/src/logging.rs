//! Logs: `tracing` output as text or JSON, and the sink that carries a
//! worker's `console.*` calls into it with the worker name and request id.

use js_api::{LogSink, WorkerLogContext};

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
  #[default]
  Text,
  Json,
}

/// Installs the global subscriber (`RUST_LOG` filters, default `info`).
pub fn init(format: LogFormat) {
  use tracing_subscriber::EnvFilter;
  let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
  let builder = tracing_subscriber::fmt()
    .with_env_filter(filter)
    .with_writer(std::io::stderr);
  let _ = match format {
    LogFormat::Text => builder.try_init(),
    LogFormat::Json => builder.json().try_init(),
  };
}

/// `console.log` and friends from workers, as `worker` target events.
pub struct ConsoleSink;

impl LogSink for ConsoleSink {
  fn log(&self, ctx: &WorkerLogContext, level: u32, message: &str) {
    let worker = &*ctx.worker;
    let request_id = RequestId(ctx.request_id);
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

impl std::fmt::Display for RequestId {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "{:016x}", self.0)
  }
}
