//! The Cache API's ops over the process's [`HttpCache`]: every entry is
//! keyed by the worker the isolate is bound to and the zone (host) of the
//! request the call belongs to, so no worker reads what another put. A
//! body matched waits in Rust, charged to the isolate's budget, until JS
//! copies it into its own buffer (as a KV value does).

use std::sync::Arc;

use deno_core::{op2, OpState};
use deno_error::JsErrorBox;
use edge_storage::cache::{CachedResponse, HttpCache};
use serde::{Deserialize, Serialize};

use super::kv::{hold, now};
use super::ops::WorkerLogContext;

/// The zone of an entry: the bound worker and the request's host.
fn zone(state: &OpState, host: &str) -> Result<String, JsErrorBox> {
  let worker = state
    .try_borrow::<WorkerLogContext>()
    .map(|c| c.worker.clone())
    .ok_or_else(|| JsErrorBox::type_error("the Cache API needs a bound worker"))?;
  Ok(format!("{worker}\u{1}{}", host.to_ascii_lowercase()))
}

/// Which entry a call is about.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
  host: String,
  cache: String,
  method: String,
  url: String,
  headers: Vec<(String, String)>,
  #[serde(default)]
  ignore_method: bool,
}

#[derive(Deserialize)]
pub struct Stored {
  status: u16,
  headers: Vec<(String, String)>,
}

/// Stores a response; false when it is not to be stored.
#[op2]
pub fn op_edge_cache_put(
  state: &mut OpState,
  #[serde] target: Target,
  #[serde] resp: Stored,
  #[buffer] body: &[u8],
) -> Result<bool, JsErrorBox> {
  let zone = zone(state, &target.host)?;
  if body.len() > HttpCache::node().max_entry() {
    return Ok(false);
  }
  let resp = CachedResponse {
    status: resp.status,
    headers: resp
      .headers
      .into_iter()
      .map(|(k, v)| (k.to_ascii_lowercase(), v))
      .collect(),
    body: Arc::from(body),
  };
  HttpCache::node()
    .put(
      &zone,
      &target.cache,
      &target.method,
      &target.url,
      &target.headers,
      resp,
      now(),
    )
    .map_err(|e| JsErrorBox::type_error(e.to_string()))
}

#[derive(Serialize)]
pub struct Matched {
  status: u16,
  headers: Vec<(String, String)>,
  handle: u32,
  length: usize,
}

#[op2]
#[serde]
pub fn op_edge_cache_match(state: &mut OpState, #[serde] target: Target) -> Result<Option<Matched>, JsErrorBox> {
  let zone = zone(state, &target.host)?;
  let Some(found) = HttpCache::node().lookup(
    &zone,
    &target.cache,
    &target.method,
    &target.url,
    &target.headers,
    target.ignore_method,
    now(),
  ) else {
    return Ok(None);
  };
  let length = found.body.len();
  let handle = hold(state, found.body.to_vec());
  Ok(Some(Matched {
    status: found.status,
    headers: found.headers,
    handle,
    length,
  }))
}

#[op2]
pub fn op_edge_cache_delete(state: &mut OpState, #[serde] target: Target) -> Result<bool, JsErrorBox> {
  let zone = zone(state, &target.host)?;
  Ok(HttpCache::node().delete(&zone, &target.cache, &target.method, &target.url, target.ignore_method))
}
