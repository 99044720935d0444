//! KV namespace bindings: the ops behind `env.NAME.get/put/delete/list`
//! over the [`KvStore`]s the isolate's worker names (and no others: the
//! table is the worker's, indexed from JS). Each call is checked first
//! (Cloudflare's limits and messages, `edge_storage::kv`), then runs on the
//! blocking pool, at most [`MAX_IN_FLIGHT`] at a time per isolate; a value
//! read waits in Rust, charged to the isolate's memory budget, until JS
//! copies it into a buffer of its own (counted like any other).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use deno_core::{op2, OpState};
use deno_error::JsErrorBox;
use edge_storage::kv::{self, KvError, KvStore, PutOptions};
use serde::{Deserialize, Serialize};

use super::codec::NativeMemory;

/// The KV namespaces of the isolate's worker, in the order its bindings
/// are given to JS.
pub struct KvBindings(pub Vec<Arc<dyn KvStore>>);

/// KV calls of one isolate running at once on the blocking pool (what
/// Rust holds for them outside the budget is bounded by this many values).
pub const MAX_IN_FLIGHT: usize = 6;

/// Values read and not yet copied into JS, and the gate of calls in flight.
pub struct KvState {
  next: u32,
  held: HashMap<u32, Vec<u8>>,
  gate: Rc<tokio::sync::Semaphore>,
}

impl Default for KvState {
  fn default() -> Self {
    Self {
      next: 0,
      held: HashMap::new(),
      gate: Rc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
    }
  }
}

/// Seconds since the epoch (KV expirations, cache freshness).
pub(super) fn now() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map(|d| d.as_secs())
    .unwrap_or(0)
}

fn failed(op: &str, e: KvError) -> JsErrorBox {
  JsErrorBox::generic(format!("KV {op} failed: {e}"))
}

fn namespace(state: &Rc<RefCell<OpState>>, ns: u32, op: &str) -> Result<Arc<dyn KvStore>, JsErrorBox> {
  let state = state.borrow();
  state
    .try_borrow::<KvBindings>()
    .and_then(|b| b.0.get(ns as usize).cloned())
    .ok_or_else(|| JsErrorBox::type_error(format!("KV {op} failed: no such namespace binding")))
}

/// Runs `f` on the blocking pool once the isolate's gate lets it (shared
/// by every storage binding: KV and D1 calls together are at most
/// [`MAX_IN_FLIGHT`]); `Err` is a message of why it could not run.
pub(super) async fn gated<T: Send + 'static>(
  state: &Rc<RefCell<OpState>>,
  f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
  let gate = state.borrow_mut().borrow_mut::<KvState>().gate.clone();
  let _permit = gate.acquire().await.map_err(|_| "closed".to_string())?;
  deno_core::unsync::spawn_blocking(f).await.map_err(|e| e.to_string())
}

async fn blocking<T: Send + 'static>(
  state: &Rc<RefCell<OpState>>,
  op: &str,
  f: impl FnOnce() -> Result<T, KvError> + Send + 'static,
) -> Result<T, JsErrorBox> {
  gated(state, f)
    .await
    .map_err(|e| JsErrorBox::generic(format!("KV {op} failed: {e}")))?
    .map_err(|e| failed(op, e))
}

/// A value read: its bytes wait under `handle` for [`op_edge_kv_take`].
#[derive(Serialize)]
pub struct Got {
  handle: u32,
  length: usize,
  metadata: Option<String>,
  expiration: Option<u64>,
}

#[op2]
#[serde]
pub async fn op_edge_kv_get(
  state: Rc<RefCell<OpState>>,
  #[smi] ns: u32,
  #[string] key: String,
  has_cache_ttl: bool,
  cache_ttl: f64,
) -> Result<Option<Got>, JsErrorBox> {
  let cache_ttl = has_cache_ttl.then_some(cache_ttl);
  let store = namespace(&state, ns, "GET")?;
  kv::check_key(&key).map_err(|e| failed("GET", e))?;
  kv::check_cache_ttl(cache_ttl).map_err(|e| failed("GET", e))?;
  let Some(entry) = blocking(&state, "GET", move || store.get(&key, now())).await? else {
    return Ok(None);
  };
  let length = entry.value.len();
  let handle = hold(&mut state.borrow_mut(), entry.value);
  Ok(Some(Got {
    handle,
    length,
    metadata: entry.metadata,
    expiration: entry.expiration,
  }))
}

/// Bytes Rust holds for a call in flight (a value to write, bound
/// parameters), charged to the isolate's budget until the call ends: a
/// worker starting many calls without awaiting them is stopped by its
/// memory limit, not by the node's.
pub(super) struct Charged {
  budget: Option<Arc<dyn NativeMemory>>,
  bytes: usize,
}

impl Charged {
  pub(super) fn new(state: &Rc<RefCell<OpState>>, bytes: usize) -> Self {
    let budget = state.borrow().try_borrow::<Arc<dyn NativeMemory>>().cloned();
    if let Some(b) = &budget {
      b.charge(bytes);
    }
    Self { budget, bytes }
  }
}

impl Drop for Charged {
  fn drop(&mut self) {
    if let Some(b) = &self.budget {
      b.uncharge(self.bytes);
    }
  }
}

/// Keeps `bytes` for [`op_edge_kv_take`] (charged to the isolate's budget
/// until taken); gives their handle.
pub(super) fn hold(state: &mut OpState, bytes: Vec<u8>) -> u32 {
  if let Some(b) = state.try_borrow::<Arc<dyn NativeMemory>>() {
    b.charge(bytes.len());
  }
  let kv = state.borrow_mut::<KvState>();
  let handle = kv.next;
  kv.next = kv.next.wrapping_add(1);
  kv.held.insert(handle, bytes);
  handle
}

/// Copies a value read into `out` (its length) and lets it go; with no
/// `out`, only lets it go.
#[op2(fast)]
pub fn op_edge_kv_take(state: &mut OpState, #[smi] handle: u32, #[buffer] out: &mut [u8]) -> bool {
  let Some(v) = state.borrow_mut::<KvState>().held.remove(&handle) else {
    return false;
  };
  let ok = v.len() == out.len();
  if ok {
    out.copy_from_slice(&v);
  }
  if let Some(b) = state.try_borrow::<Arc<dyn NativeMemory>>() {
    b.uncharge(v.len());
  }
  ok
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutArgs {
  expiration: Option<f64>,
  expiration_ttl: Option<f64>,
  metadata: Option<String>,
}

#[op2]
pub async fn op_edge_kv_put(
  state: Rc<RefCell<OpState>>,
  #[smi] ns: u32,
  #[string] key: String,
  #[buffer(copy)] value: Vec<u8>,
  #[serde] args: PutArgs,
) -> Result<(), JsErrorBox> {
  let _held = Charged::new(&state, value.len());
  let store = namespace(&state, ns, "PUT")?;
  let now = now();
  let options = PutOptions {
    expiration: args.expiration,
    expiration_ttl: args.expiration_ttl,
    metadata: args.metadata,
  };
  let entry = kv::check_put(&key, value, options, now).map_err(|e| failed("PUT", e))?;
  blocking(&state, "PUT", move || store.put(&key, &entry, now)).await
}

#[op2]
pub async fn op_edge_kv_delete(
  state: Rc<RefCell<OpState>>,
  #[smi] ns: u32,
  #[string] key: String,
) -> Result<(), JsErrorBox> {
  let store = namespace(&state, ns, "DELETE")?;
  kv::check_key(&key).map_err(|e| failed("DELETE", e))?;
  blocking(&state, "DELETE", move || store.delete(&key)).await
}

#[derive(Deserialize)]
pub struct ListArgs {
  prefix: Option<String>,
  limit: Option<f64>,
  cursor: Option<String>,
}

#[derive(Serialize)]
pub struct Listed {
  keys: Vec<ListedKey>,
  cursor: Option<String>,
}

#[derive(Serialize)]
pub struct ListedKey {
  name: String,
  expiration: Option<u64>,
  metadata: Option<String>,
}

#[op2]
#[serde]
pub async fn op_edge_kv_list(
  state: Rc<RefCell<OpState>>,
  #[smi] ns: u32,
  #[serde] args: ListArgs,
) -> Result<Listed, JsErrorBox> {
  let store = namespace(&state, ns, "LIST")?;
  let q = kv::check_list(args.prefix, args.limit, args.cursor.as_deref()).map_err(|e| failed("LIST", e))?;
  let page = blocking(&state, "LIST", move || store.list(&q, now())).await?;
  Ok(Listed {
    keys: page
      .keys
      .into_iter()
      .map(|k| ListedKey {
        name: k.name,
        expiration: k.expiration,
        metadata: k.metadata,
      })
      .collect(),
    cursor: page.cursor,
  })
}
