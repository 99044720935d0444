//! The control plane of one node: changing the running workers
//! ([`deploy`]), keeping uploads across restarts ([`store`]), and the admin
//! API that drives both ([`api`], served by [`admin`]); with several server
//! processes, the supervisor's admin API ([`relay`]) reaches each over its
//! [`link`]; cron triggers fire from [`cron`], queue consumers are fed from
//! [`queues`]. Nothing here is on the request path: it publishes into the
//! front door's view and talks to the executors through their job
//! channels.

pub mod admin;
pub mod api;
pub mod background;
pub mod cron;
pub mod deploy;
pub mod link;
pub mod queues;
pub mod relay;
pub mod store;
