//! The pure core of the edge runtime: what can be decided without V8,
//! sockets or threads, so it is unit-tested in seconds (`cargo test -p
//! edge-core`) and fuzzed (`fuzz/`).
//!
//! - [`abuse`]: whether a worker's requests mostly end at a limit.
//! - [`host`]: request authorities, host names, ports, route and
//!   certificate patterns.
//! - [`head`]: request head checks (transfer codings).
//! - [`framing`]: strict line endings on an HTTP/1.1 connection.
//! - [`names`]: worker names and module paths.
//! - [`routes`]: the host-to-worker table (exact, wildcard, catch-all).
//! - [`limits`]: a worker's limits and the typed outcome of hitting one.
//! - [`counters`]: counters, gauges and latency histograms.
//! - [`exposition`]: Prometheus texts of several processes merged.
//! - [`frames`]: the frames of a supervisor's link to its processes.
//! - [`bucket`]: token buckets (`console.*` lines and bytes, SNI warm-ups).
//! - [`addr`]: which addresses a worker's `fetch()` may not reach.
//! - [`json`]: the planner and checker of `JSON.parse` in parts.
//! - [`envfile`]: `NAME=value` files (`.dev.vars`, secrets files).
//! - [`request_id`]: request ids unique across threads, restarts and nodes.

pub mod abuse;
pub mod addr;
pub mod bucket;
pub mod client;
pub mod counters;
pub mod cron;
pub mod envfile;
pub mod exposition;
pub mod frames;
pub mod framing;
pub mod head;
pub mod host;
pub mod json;
pub mod limits;
pub mod names;
pub mod request_id;
pub mod routes;
