//! Steps 5 and 6 on an executor thread: the per-thread context
//! ([`context`]), running a request under its limits ([`invoke`]), the
//! response bodies ([`body`]), and work sent from other threads ([`jobs`]).

pub mod body;
pub mod context;
pub mod invoke;
pub mod jobs;
