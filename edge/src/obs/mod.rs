//! What the engine tells about itself: counters and histograms
//! ([`stats`]), their Prometheus text ([`metrics`]), access lines and
//! workers' console output ([`logging`]), and what an embedder may be told
//! of each request ([`observer`]), and live tails of a worker ([`tail`]).

pub mod logging;
pub mod metrics;
pub mod observer;
pub mod stats;
pub mod tail;
