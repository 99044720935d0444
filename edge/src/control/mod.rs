//! The control plane of one node: changing the running workers
//! ([`deploy`]), keeping uploads across restarts ([`store`]), and the admin
//! API that drives both ([`admin`]). Nothing here is on the request path:
//! it publishes into the front door's view and talks to the executors
//! through their job channels.

pub mod admin;
pub mod deploy;
pub mod store;
