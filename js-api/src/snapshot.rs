//! The V8 startup snapshot made by `build.rs`, and the sources of the lazy
//! extension scripts it did not already contain.

/// Heap image with every Web API script evaluated and the globals defined.
pub static SNAPSHOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/SNAPSHOT.bin"));

include!(concat!(env!("OUT_DIR"), "/residual.rs"));
