//! The integration tests: one binary (every test binary links V8), real
//! sockets, real TLS clients, real isolates.

mod support;

mod builtins;
mod client_info;
mod codec;
mod concurrency;
mod config;
mod conformance;
mod cron;
mod deploy_cli;
mod entrypoints;
mod fetch;
mod front_door;
mod head;
mod html;
mod isolates;
mod library;
mod limits;
mod node_compat;
mod objects;
mod operations;
mod pool;
mod process;
mod queues;
mod routing;
mod services;
mod storage;
mod store;
mod streaming;
mod tls;
mod typescript;
mod webcrypto;
mod workers_api;
