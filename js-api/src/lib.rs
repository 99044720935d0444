//! What a worker's JavaScript sees: the V8 isolate with the Workers API
//! (Request, Response, fetch, streams, crypto, timers, console, ...), built
//! on deno_core and the deno ext crates, started from a snapshot.
//!
//! Knows nothing of sockets, TLS or hostnames: the server (`edge`) hands it
//! a [`JsRequest`] and gets a [`JsResponse`] back.
//!
//! - [`Isolate`]: create blank, `bind` to a [`WorkerCode`], `call` per request.
//! - [`loader`]: worker modules (JS, JSON, Wasm) and the shared code cache.
//! - [`net`]: which addresses subrequests may reach.

pub mod call;
pub mod error;
pub mod ext;
pub mod loader;
pub mod memory;
pub mod net;
pub mod runtime;
pub mod shares;
pub mod snapshot;

pub use call::{
  CallState, JsBody, JsRequest, JsResponse, PendingCall, QueueDelivery, ResponseStream, Scheduled, StreamError,
  StreamShared, Trigger,
};
pub use deno_core::v8;
pub use error::{JsApiError, JsException};
pub use ext::body::{BodyTooLarge, BoxError, RequestBody};
pub use ext::service::{
  Entrypoint, RpcCall, ServiceCaller, ServiceChain, ServiceRequestBody, ServiceResponseBody, ServiceTarget,
  MAX_SERVICE_CALLS,
};
pub use ext::{hops_of, LogSink, WorkerLogContext, HOP_HEADER, MAX_LOG_LINE};
pub use loader::{
  node_builtins_list, CodeCacheStore, D1Databases, KvNamespaces, ModuleSource, NodeCompat, QueueProducers, R2Buckets,
  ServiceNames, WorkerCode, NODE_BUILTINS,
};
pub use net::NetPolicy;
pub use runtime::{Isolate, IsolateConfig, IsolateStopper, DEFAULT_HEAP_SLACK};
pub use shares::CpuShares;

/// Sets process-wide V8 flags and the TLS crypto provider of subrequests;
/// call once, before the first isolate.
pub fn init_v8(flags: &[&str]) {
  // Several rustls providers are compiled in (ours and deno's); pick one.
  let _ = rustls::crypto::ring::default_provider().install_default();
  let mut args = vec!["edge".to_string()];
  // With Maglev's on-stack replacement, V8 150 can run a hot loop in code
  // where a termination never lands: `for (;;) a.push(new Array(1000)
  // .fill(1))` ran past its CPU and memory limits into 14 GB of RSS
  // (fine with --no-maglev, --no-turbofan, --no-concurrent-osr or this
  // flag). Hot loops are still replaced on the stack, by TurboFan code
  // (tests/limits.rs, benches/limits.sh).
  args.push("--no-maglev-osr".to_string());
  args.extend(flags.iter().map(|s| s.to_string()));
  // Operators may add V8 flags (space separated) for experiments.
  if let Ok(extra) = std::env::var("EDGE_V8_FLAGS") {
    args.extend(extra.split_whitespace().map(str::to_string));
  }
  let _ = deno_core::v8_set_flags(args);
  deno_core::JsRuntime::init_platform(None);
}
