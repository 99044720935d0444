//! What an embedder sees of each finished request and of workers'
//! `console.*` lines, if it asks (`EngineBuilder::observer`,
//! `EngineBuilder::console`): for billing, its own logs and metrics.

use std::time::Duration;

use edge_core::limits::LimitKind;
use edge_core::request_id::RequestId;

/// One request's outcome, when its response head is ready.
#[derive(Clone, Debug)]
pub struct Outcome<'a> {
  pub worker: &'a str,
  pub request_id: RequestId,
  pub status: u16,
  /// The limit that ended it, if one did.
  pub limit: Option<LimitKind>,
  /// CPU time of its JS and Wasm until the response head.
  pub cpu: Duration,
  /// Server-side time to the response head.
  pub wall: Duration,
  pub cold: bool,
}

/// Told of every request a worker answered (front door and `handle_with`
/// alike), on the executor thread that ran it: keep it quick.
pub trait RequestObserver: Send + Sync {
  fn finished(&self, outcome: &Outcome<'_>);
}

/// How serious a `console.*` line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleLevel {
  Debug,
  Info,
  Warn,
  Error,
}

/// Where workers' `console.*` lines go instead of the server's log (after
/// the per-worker rate limit).
pub trait ConsoleOutput: Send + Sync {
  fn line(&self, worker: &str, request_id: RequestId, level: ConsoleLevel, message: &str);
}
