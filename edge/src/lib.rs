//! The edge server: a TLS front door that routes each request by host name
//! to a worker and runs it in a pooled V8 isolate on the thread that
//! accepted the connection. Also a library: build an [`Engine`] from a
//! [`Config`] value and hand it requests for a named worker.
//!
//! The request path, in order (see ARCHITECTURE.md):
//! 1. accept — [`executor`] (listeners shared by executor threads)
//! 2. TLS and SNI — [`tls`]
//! 3. HTTP and route by host — [`server`], [`routing`]
//! 4. take an isolate — [`pool`]
//! 5. run the handler, counting CPU — [`invoke`], [`limits`]
//! 6. stream the response — [`invoke`], [`body`]
//!
//! Errors become HTTP responses in one place: [`error::RequestError::to_response`].

pub mod admin;
pub mod body;
pub mod code_cache;
pub mod config;
pub mod deploy;
pub mod engine;
pub mod error;
pub mod executor;
pub mod invoke;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod pool;
pub mod routing;
pub mod server;
pub mod stats;
pub mod tls;
pub mod worker;

pub use body::{EdgeBody, SendBody};
pub use config::Config;
pub use engine::Engine;
pub use error::{ConfigError, DeployError, RequestError, StartError};
