//! Steps 5 and 6 on an executor thread: the per-thread context
//! ([`context`]), running a request under its limits ([`invoke`]), the
//! response bodies ([`body`]) and their compression ([`encode`]), and work
//! sent from other threads ([`jobs`]).

pub mod body;
pub mod context;
pub mod encode;
pub mod invoke;
pub mod jobs;
