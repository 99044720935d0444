//! The edge server: a TLS front door that routes each request by host name
//! to a worker and runs it in a pooled V8 isolate on the thread that
//! accepted the connection. Also a library a CDN node embeds: build an
//! [`Engine`] with [`Engine::builder`], deploy workers from any module
//! source, hand it requests for a named worker and read back what each
//! cost (see `examples/embed.rs`).
//!
//! The layers, each a folder, each using only those below it:
//!
//! | folder | what | a request's step (ARCHITECTURE.md) |
//! |---|---|---|
//! | `control/` | deploys, the data directory, the admin API | |
//! | `threads.rs` | executor threads and their job channels | |
//! | `front/` | accept, TLS, HTTP, routing, the serving view | 1-3 |
//! | `exec/` | per-thread context, running a request, bodies, jobs | 5-6 |
//! | `pool/` | leases, capacity, idle isolates, the blank supply | 4 |
//! | `worker/` | a worker version: code, sources, uploads, code cache | |
//! | `limits/` | CPU meter, watchdog, the one metered run | 5 |
//! | `obs/` | counters, Prometheus text, logs | |
//! | `config.rs`, `error.rs` | the config schema; errors and the one map to HTTP | |
//!
//! `engine.rs` ties them together. Pure logic (routing tables, name and
//! host checks, limits' types, counters, the JSON planner) is in the
//! `edge-core` crate, tested without V8.

mod control;
mod dispatch;
mod engine;
mod exec;
mod front;
mod limits;
mod obs;
mod pool;
mod threads;
mod worker;

pub mod config;
pub mod error;

pub use config::{Config, D1Binding, KvBinding, R2Binding, ServiceBinding, Triggers};
pub use control::cron::CronClock;
pub use control::deploy::{Deployed, LimitsInfo, Reloaded, WorkerInfo};
pub use edge_core::limits::{Amount, LimitHit, LimitKind, LimitsConfig, Phase};
pub use edge_core::request_id::RequestId;
pub use engine::{Engine, EngineBuilder, RequestContext};
pub use error::{ConfigError, DeployError, RequestError, StartError};
pub use exec::body::SendBody;
pub use exec::jobs::{Failed, Handled};
pub use js_api::ModuleSource;
pub use obs::logging::LogFormat;
pub use obs::observer::{ConsoleLevel, ConsoleOutput, Outcome, RequestObserver};
pub use obs::stats::{Stats, StatsSnapshot, WorkerStats};
pub use worker::{MemorySource, Origin, Upload, UploadMeta, WorkerSpec};

/// Internals for the `edge` binary and the benches; not a stable API.
#[doc(hidden)]
pub mod internals {
  pub mod logging {
    pub use crate::obs::logging::*;
  }
  pub mod pool {
    pub use crate::pool::*;
  }
  pub mod limits {
    pub use crate::limits::*;
  }
  pub mod worker {
    pub use crate::worker::*;
  }
  pub mod admin {
    pub use crate::control::admin::AdminServer;
    pub use crate::control::relay::Relay;
    pub use crate::control::store::{load_stored, Tidy};
  }
}
