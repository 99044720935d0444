//! The extensions of a worker isolate, in the one order the snapshot and the
//! runtime must share (deno_core checks names and order at startup).

use std::sync::Arc;

use deno_core::Extension;

/// Per-isolate settings that reach the deno ext crates at creation time.
pub struct ExtOptions {
  pub fetch: deno_fetch::Options,
  pub crypto_seed: Option<u64>,
  pub blob_store: Arc<deno_web::BlobStore>,
  pub broadcast: deno_web::InMemoryBroadcastChannel,
}

impl Default for ExtOptions {
  fn default() -> Self {
    Self {
      fetch: deno_fetch::Options::default(),
      crypto_seed: None,
      blob_store: Arc::new(deno_web::BlobStore::default()),
      broadcast: deno_web::InMemoryBroadcastChannel::default(),
    }
  }
}

pub fn extensions(opts: ExtOptions) -> Vec<Extension> {
  vec![
    deno_webidl::deno_webidl::init(),
    deno_web::deno_web::init(opts.blob_store, None, false, opts.broadcast),
    deno_crypto::deno_crypto::init(opts.crypto_seed),
    deno_fetch::deno_fetch::init(opts.fetch),
    super::deno_net::init(),
    super::edge_runtime::init(),
  ]
}
