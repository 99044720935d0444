//! Ops: the only way a worker's JavaScript reaches Rust. Request headers and
//! body are handed over lazily, when the worker reads them.

use std::rc::Rc;

use deno_core::convert::ByteString;
use deno_core::op2;
use deno_core::v8;
use deno_core::OpState;
use deno_core::ResourceId;
use deno_error::JsErrorBox;

use super::body::{RequestBody, RequestBodyResource};

/// The longest `console.*` line passed to a [`LogSink`], in UTF-16 units
/// (JS cuts longer ones before the op copies them; bootstrap.js).
pub const MAX_LOG_LINE: usize = 65536;

/// Where `console.*` output of an isolate goes. The embedder decides (the
/// server logs it with the worker name and request id).
pub trait LogSink {
  fn log(&self, ctx: &WorkerLogContext, level: u32, message: &str);
}

/// Who is logging: put in the isolate's `OpState` when it is bound to a
/// worker; the request comes from the slot of the request the logging code
/// belongs to.
#[derive(Clone, Debug, Default)]
pub struct WorkerLogContext {
  pub worker: Rc<str>,
  pub request_id: u128,
}

/// One request an isolate is serving: its headers and body wait here until
/// the worker's JavaScript asks for them.
#[derive(Default)]
pub struct RequestSlot {
  /// The server's id of the request (for logs).
  pub request_id: u128,
  pub headers: Option<http::HeaderMap>,
  pub body: Option<RequestBody>,
  /// The body's resource once JS took it: closed when the request ends,
  /// so that the connection's body goes with it (a warm isolate may keep
  /// the stream object alive for long; hyper then never reads to the
  /// client's end and the connection would stay open).
  pub body_rid: Option<ResourceId>,
  /// A `fetch()` was refused for the subrequest limit.
  pub subrequest_limit_hit: bool,
  /// Its crypto.subtle operations running on the blocking pool now.
  pub offthread: u32,
  /// How many workers' `fetch()` it has come through ([`HOP_HEADER`]).
  pub hops: u32,
  /// `request.cf`, as JSON.
  pub cf: Option<std::sync::Arc<str>>,
  /// The service-binding calls its chain may still make (made at the
  /// chain's first call; a callee's request is given its caller's).
  pub chain: Option<super::service::ServiceChain>,
}

/// Set on every subrequest a worker makes: one more than the request that
/// made it says it has come through (bootstrap.js). The front door ends a
/// loop with it.
pub const HOP_HEADER: &str = "edge-via";

/// The hop count a request's headers carry (0 if none or not a number).
pub fn hops_of(headers: &http::HeaderMap) -> u32 {
  // A ready-made name: looking it up hashes, nothing is parsed.
  const NAME: http::HeaderName = http::HeaderName::from_static(HOP_HEADER);
  headers
    .get(&NAME)
    .and_then(|v| v.to_str().ok())
    .and_then(|v| v.trim().parse().ok())
    .unwrap_or(0)
}

/// The requests an isolate is serving now, by the isolate's number for
/// them (what JS passes to the ops, and what its continuations carry as
/// their async context). Several at once: they interleave at awaits.
#[derive(Default)]
pub struct RequestSlots {
  pub live: rustc_hash::FxHashMap<u32, RequestSlot>,
  /// Requests whose handler's promise settled since the driver last looked
  /// (told by JS, so the driver need not look at every pending promise).
  pub settled: Vec<u32>,
  /// Off-thread operations in flight, of all live requests.
  pub offthread: u32,
}

impl RequestSlots {
  /// The requests with off-thread work in flight, appended to `out`.
  pub fn with_offthread(&self, out: &mut Vec<u32>) {
    if self.offthread > 0 {
      out.extend(self.live.iter().filter(|(_, s)| s.offthread > 0).map(|(id, _)| *id));
    }
  }
}

#[op2(fast)]
pub fn op_edge_log(state: &mut OpState, #[smi] level: u32, #[string] message: &str, #[smi] id: u32) {
  let sink = state.try_borrow::<Rc<dyn LogSink>>().cloned();
  let mut ctx = state.try_borrow::<WorkerLogContext>().cloned().unwrap_or_default();
  if let Some(slot) = state.try_borrow::<RequestSlots>().and_then(|s| s.live.get(&id)) {
    ctx.request_id = slot.request_id;
  }
  match sink {
    Some(sink) => sink.log(&ctx, level, message),
    None => eprintln!("[{}] {}", ctx.worker, message),
  }
}

/// JS reports Wasm memory it is about to create or grow, in 64 KiB pages;
/// false (and the script stopped) when that would pass the isolate's budget.
/// (Not a fast op: the check may collect garbage first.)
#[op2(nofast)]
pub fn op_edge_wasm_pages(scope: &mut v8::PinScope, state: &mut OpState, pages: u32) -> bool {
  match state.try_borrow::<std::sync::Arc<dyn WasmMemoryAccount>>() {
    Some(budget) => budget.wasm_fits(scope, pages as usize * 65536),
    None => true,
  }
}

/// Where Wasm memory is counted (the isolate's memory budget).
pub trait WasmMemoryAccount {
  /// False when `bytes` more would pass the budget (the script is stopped).
  fn wasm_fits(&self, isolate: &mut v8::Isolate, bytes: usize) -> bool;
}

/// JS reports that the request used up its subrequests.
#[op2(fast)]
pub fn op_edge_limit_hit(state: &mut OpState, #[smi] id: u32) {
  if let Some(slot) = state.try_borrow_mut::<RequestSlots>().and_then(|s| s.live.get_mut(&id)) {
    slot.subrequest_limit_hit = true;
  }
}

/// JS tells that request `id` started (+1) or ended (-1) an operation on
/// the blocking pool.
#[op2(fast)]
pub fn op_edge_offthread(state: &mut OpState, #[smi] id: u32, #[smi] delta: i32) {
  if let Some(slots) = state.try_borrow_mut::<RequestSlots>() {
    if let Some(slot) = slots.live.get_mut(&id) {
      let before = slot.offthread;
      slot.offthread = slot.offthread.saturating_add_signed(delta);
      slots.offthread = (slots.offthread + slot.offthread).saturating_sub(before);
    }
  }
}

/// JS tells that the handler's promise of request `id` settled.
#[op2(fast)]
pub fn op_edge_settled(state: &mut OpState, #[smi] id: u32) {
  if let Some(slots) = state.try_borrow_mut::<RequestSlots>() {
    slots.settled.push(id);
  }
}

fn slot_for(state: &mut OpState, id: u32) -> Result<&mut RequestSlot, JsErrorBox> {
  state
    .try_borrow_mut::<RequestSlots>()
    .and_then(|s| s.live.get_mut(&id))
    .ok_or_else(|| JsErrorBox::type_error("The request is no longer available"))
}

/// `request.cf` of request `id` (JSON), read when the worker first looks.
#[op2]
#[string]
pub fn op_edge_req_cf(state: &mut OpState, #[smi] id: u32) -> Option<String> {
  state
    .try_borrow::<RequestSlots>()
    .and_then(|s| s.live.get(&id))
    .and_then(|s| s.cf.as_deref().map(str::to_string))
}

/// The hop count of request `id`, read by `fetch()` for its subrequest.
#[op2(fast)]
pub fn op_edge_hops(state: &mut OpState, #[smi] id: u32) -> u32 {
  state
    .try_borrow::<RequestSlots>()
    .and_then(|s| s.live.get(&id))
    .map_or(0, |s| s.hops)
}

#[op2]
pub fn op_edge_req_headers(state: &mut OpState, #[smi] id: u32) -> Result<Vec<(ByteString, ByteString)>, JsErrorBox> {
  let slot = slot_for(state, id)?;
  let headers = slot.headers.take().unwrap_or_default();
  let mut out = Vec::with_capacity(headers.len());
  for (name, value) in headers.iter() {
    out.push((ByteString::from(name.as_str()), ByteString::from(value.as_bytes())));
  }
  Ok(out)
}

#[op2(fast)]
#[smi]
pub fn op_edge_req_body(state: &mut OpState, #[smi] id: u32) -> Result<ResourceId, JsErrorBox> {
  let body = slot_for(state, id)?
    .body
    .take()
    .ok_or_else(|| JsErrorBox::type_error("The request body was already taken"))?;
  let rid = state.resource_table.add(RequestBodyResource::new(body));
  slot_for(state, id)?.body_rid = Some(rid);
  Ok(rid)
}
