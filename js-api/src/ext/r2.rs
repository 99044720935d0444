//! R2 bucket bindings: the ops behind `env.BUCKET.head/get/put/delete/
//! list` and multipart uploads, over the [`ObjectStore`]s the isolate's
//! worker names (and no others). Every call runs on the blocking pool
//! through the gate KV and D1 share ([`super::kv::gated`]). Bodies move in
//! pieces: a put stages what JS hands it a piece at a time (each piece
//! charged to the isolate's budget while Rust holds it), a read returns one
//! range of a version at a time, so no call holds a whole object.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use deno_core::{op2, OpState};
use deno_error::JsErrorBox;
use edge_storage::objects::{
  self, now_ms, Conditions, ObjectError, ObjectMeta, ObjectQuery, ObjectStore, PutMeta, Staged,
};
use serde::{Deserialize, Serialize};

use super::kv::{gated, hold, Charged};

/// The buckets of the isolate's worker, in the order its bindings are
/// given to JS.
pub struct R2Bindings(pub Vec<Arc<dyn ObjectStore>>);

/// The most one read returns (JS asks for pieces of a body in turn).
pub const MAX_READ: usize = 1 << 20;

/// Bodies being staged by this isolate's puts and parts, by handle; those
/// left when the isolate goes are dropped.
#[derive(Default)]
pub struct R2State {
  next: u32,
  staged: HashMap<u32, (Arc<dyn ObjectStore>, Staged)>,
}

impl Drop for R2State {
  fn drop(&mut self) {
    for (_, (store, staged)) in self.staged.drain() {
      discard(store, staged);
    }
  }
}

/// Drops a staged body off this thread (its pieces may be many rows).
fn discard(store: Arc<dyn ObjectStore>, staged: Staged) {
  match tokio::runtime::Handle::try_current() {
    Ok(rt) => drop(rt.spawn_blocking(move || store.discard(staged))),
    Err(_) => store.discard(staged),
  }
}

fn error(op: &str, e: ObjectError) -> JsErrorBox {
  match e {
    ObjectError::Invalid(_) | ObjectError::NoSuchUpload => JsErrorBox::type_error(format!("{op}: {e}")),
    _ => JsErrorBox::generic(format!("{op}: {e}")),
  }
}

fn bucket(state: &Rc<RefCell<OpState>>, b: u32, op: &str) -> Result<Arc<dyn ObjectStore>, JsErrorBox> {
  state
    .borrow()
    .try_borrow::<R2Bindings>()
    .and_then(|r| r.0.get(b as usize).cloned())
    .ok_or_else(|| JsErrorBox::type_error(format!("{op}: no such bucket binding")))
}

async fn blocking<T: Send + 'static>(
  state: &Rc<RefCell<OpState>>,
  op: &'static str,
  f: impl FnOnce() -> Result<T, ObjectError> + Send + 'static,
) -> Result<T, JsErrorBox> {
  gated(state, f)
    .await
    .map_err(|e| JsErrorBox::generic(format!("{op}: {e}")))?
    .map_err(|e| error(op, e))
}

/// An object as JS sees it (the rest is made in r2.js).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
  key: String,
  version: String,
  size: f64,
  etag: String,
  uploaded: f64,
  http_metadata: String,
  custom_metadata: String,
  checksums: String,
}

impl From<ObjectMeta> for Meta {
  fn from(o: ObjectMeta) -> Self {
    Self {
      key: o.key,
      version: o.version,
      size: o.size as f64,
      etag: o.etag,
      uploaded: o.uploaded as f64,
      http_metadata: o.http_metadata,
      custom_metadata: o.custom_metadata,
      checksums: o.checksums,
    }
  }
}

/// `onlyIf`, as r2.js gives it (times in ms since the epoch).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OnlyIf {
  etag_matches: Option<Vec<String>>,
  etag_does_not_match: Option<Vec<String>>,
  uploaded_before: Option<f64>,
  uploaded_after: Option<f64>,
}

impl From<OnlyIf> for Conditions {
  fn from(c: OnlyIf) -> Self {
    Conditions {
      etag_matches: c.etag_matches,
      etag_does_not_match: c.etag_does_not_match,
      uploaded_before: c.uploaded_before.map(|t| t.max(0.0) as u64),
      uploaded_after: c.uploaded_after.map(|t| t.max(0.0) as u64),
    }
  }
}

#[op2]
#[serde]
pub async fn op_edge_r2_head(
  state: Rc<RefCell<OpState>>,
  #[smi] b: u32,
  #[string] key: String,
) -> Result<Option<Meta>, JsErrorBox> {
  let store = bucket(&state, b, "head")?;
  objects::check_key(&key).map_err(|e| error("head", e))?;
  Ok(
    blocking(&state, "head", move || store.head(&key))
      .await?
      .map(Meta::from),
  )
}

#[derive(Serialize)]
pub struct Got {
  meta: Meta,
  /// Whether `onlyIf` held (else the object comes without its body).
  passed: bool,
  /// A whole body of at most [`INLINE`] bytes, read with the head (one
  /// trip to the store, not two): held for `op_edge_kv_take`.
  body: Option<(u32, u32)>,
}

/// Bodies up to this size come back with a whole get's head.
pub const INLINE: u64 = 64 * 1024;

/// The head of `key`, whether `onlyIf` holds, and, for a get of the whole
/// object (`whole`) of at most [`INLINE`] bytes, its body.
#[op2]
#[serde]
pub async fn op_edge_r2_get(
  state: Rc<RefCell<OpState>>,
  #[smi] b: u32,
  #[string] key: String,
  #[serde] only_if: OnlyIf,
  whole: bool,
) -> Result<Option<Got>, JsErrorBox> {
  let store = bucket(&state, b, "get")?;
  objects::check_key(&key).map_err(|e| error("get", e))?;
  let conditions = Conditions::from(only_if);
  let got = blocking(&state, "get", move || {
    let Some(o) = store.head(&key)? else {
      return Ok(None);
    };
    let passed = conditions.hold(Some(&o));
    let body = match whole && passed && o.size <= INLINE {
      // Replaced since the head: the stream reads (and fails) as usual.
      true => store.read(&o.version, 0, o.size as usize).ok(),
      false => None,
    };
    Ok(Some((o, passed, body)))
  })
  .await?;
  Ok(got.map(|(o, passed, body)| Got {
    passed,
    body: body.map(|bytes| {
      let length = bytes.len() as u32;
      (hold(&mut state.borrow_mut(), bytes), length)
    }),
    meta: o.into(),
  }))
}

/// Up to `max` bytes (at most [`MAX_READ`]) of `version` from `offset`:
/// held for `op_edge_kv_take` (charged to the isolate until JS copies them
/// into a buffer of its own, as a KV value); gives the handle and length.
#[op2]
#[serde]
pub async fn op_edge_r2_read(
  state: Rc<RefCell<OpState>>,
  #[smi] b: u32,
  #[string] version: String,
  offset: f64,
  #[smi] max: u32,
) -> Result<(u32, u32), JsErrorBox> {
  let store = bucket(&state, b, "get")?;
  let max = (max as usize).min(MAX_READ);
  let offset = offset.max(0.0) as u64;
  let bytes = blocking(&state, "get", move || store.read(&version, offset, max)).await?;
  let length = bytes.len() as u32;
  Ok((hold(&mut state.borrow_mut(), bytes), length))
}

/// Starts a staged body; gives its handle.
#[op2]
pub async fn op_edge_r2_stage(state: Rc<RefCell<OpState>>, #[smi] b: u32) -> Result<u32, JsErrorBox> {
  let store = bucket(&state, b, "put")?;
  let s = store.clone();
  let staged = blocking(&state, "put", move || s.stage()).await?;
  let mut st = state.borrow_mut();
  let r2 = st.borrow_mut::<R2State>();
  let handle = r2.next;
  r2.next = r2.next.wrapping_add(1);
  r2.staged.insert(handle, (store, staged));
  Ok(handle)
}

fn take_staged(
  state: &Rc<RefCell<OpState>>,
  handle: u32,
  op: &str,
) -> Result<(Arc<dyn ObjectStore>, Staged), JsErrorBox> {
  state
    .borrow_mut()
    .borrow_mut::<R2State>()
    .staged
    .remove(&handle)
    .ok_or_else(|| JsErrorBox::type_error(format!("{op}: the body was already sent or dropped")))
}

#[op2]
pub async fn op_edge_r2_append(
  state: Rc<RefCell<OpState>>,
  #[smi] handle: u32,
  #[buffer(copy)] piece: Vec<u8>,
) -> Result<(), JsErrorBox> {
  let _held = Charged::new(&state, piece.len());
  let (store, mut staged) = take_staged(&state, handle, "put")?;
  let s = store.clone();
  let (staged, res) = gated(&state, move || {
    let r = s.append(&mut staged, &piece);
    (staged, r)
  })
  .await
  .map_err(|e| JsErrorBox::generic(format!("put: {e}")))?;
  match res {
    Ok(()) => {
      state
        .borrow_mut()
        .borrow_mut::<R2State>()
        .staged
        .insert(handle, (store, staged));
      Ok(())
    }
    Err(e) => {
      discard(store, staged);
      Err(error("put", e))
    }
  }
}

#[op2(fast)]
pub fn op_edge_r2_discard(state: &mut OpState, #[smi] handle: u32) {
  if let Some((store, staged)) = state.borrow_mut::<R2State>().staged.remove(&handle) {
    discard(store, staged);
  }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PutArgs {
  http_metadata: String,
  custom_metadata: String,
  checksums: String,
  md5: Option<String>,
}

impl From<PutArgs> for PutMeta {
  fn from(a: PutArgs) -> Self {
    PutMeta {
      http_metadata: a.http_metadata,
      custom_metadata: a.custom_metadata,
      checksums: a.checksums,
      md5: a.md5,
    }
  }
}

/// Makes staged body `handle` the object `key` if `onlyIf` holds (else
/// `null`).
#[op2]
#[serde]
pub async fn op_edge_r2_commit(
  state: Rc<RefCell<OpState>>,
  #[smi] handle: u32,
  #[string] key: String,
  #[serde] args: PutArgs,
  #[serde] only_if: OnlyIf,
) -> Result<Option<Meta>, JsErrorBox> {
  let (store, staged) = take_staged(&state, handle, "put")?;
  let meta = PutMeta::from(args);
  if let Err(e) = objects::check_key(&key).and_then(|_| objects::check_meta(&meta)) {
    discard(store, staged);
    return Err(error("put", e));
  }
  let conditions = Conditions::from(only_if);
  let got = blocking(&state, "put", move || {
    store.commit(staged, &key, &meta, &conditions, now_ms())
  })
  .await?;
  Ok(got.map(Meta::from))
}

#[op2]
pub async fn op_edge_r2_delete(
  state: Rc<RefCell<OpState>>,
  #[smi] b: u32,
  #[serde] keys: Vec<String>,
) -> Result<(), JsErrorBox> {
  let store = bucket(&state, b, "delete")?;
  if keys.len() > objects::MAX_LIST {
    return Err(JsErrorBox::type_error(format!(
      "delete: at most {} keys at once",
      objects::MAX_LIST
    )));
  }
  for k in &keys {
    objects::check_key(k).map_err(|e| error("delete", e))?;
  }
  blocking(&state, "delete", move || store.delete(&keys)).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListArgs {
  prefix: String,
  cursor: Option<String>,
  start_after: Option<String>,
  delimiter: Option<String>,
  limit: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
  objects: Vec<Meta>,
  delimited_prefixes: Vec<String>,
  truncated: bool,
  cursor: Option<String>,
}

fn b64(bytes: &[u8]) -> String {
  use base64::Engine as _;
  base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[op2]
#[serde]
pub async fn op_edge_r2_list(
  state: Rc<RefCell<OpState>>,
  #[smi] b: u32,
  #[serde] args: ListArgs,
) -> Result<Listed, JsErrorBox> {
  use base64::Engine as _;
  let store = bucket(&state, b, "list")?;
  if !(1.0..=objects::MAX_LIST as f64).contains(&args.limit) || args.limit.fract() != 0.0 {
    return Err(JsErrorBox::type_error(format!(
      "list: MaxKeys params must be positive integer <= {}. (10022)",
      objects::MAX_LIST
    )));
  }
  let from = match (&args.cursor, &args.start_after) {
    (Some(c), _) => Some(
      base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| JsErrorBox::type_error("list: the cursor is not valid. (10025)"))?,
    ),
    (None, Some(a)) => {
      let mut f = a.as_bytes().to_vec();
      f.push(0);
      Some(f)
    }
    (None, None) => None,
  };
  let q = ObjectQuery {
    prefix: args.prefix,
    from,
    delimiter: args.delimiter,
    limit: args.limit as usize,
  };
  let page = blocking(&state, "list", move || store.list(&q)).await?;
  Ok(Listed {
    objects: page.objects.into_iter().map(Meta::from).collect(),
    delimited_prefixes: page.delimited_prefixes,
    truncated: page.truncated,
    cursor: page.cursor.as_deref().map(b64),
  })
}

#[op2]
#[string]
pub async fn op_edge_r2_create_multipart(
  state: Rc<RefCell<OpState>>,
  #[smi] b: u32,
  #[string] key: String,
  #[serde] args: PutArgs,
) -> Result<String, JsErrorBox> {
  let store = bucket(&state, b, "createMultipartUpload")?;
  let meta = PutMeta::from(args);
  objects::check_key(&key)
    .and_then(|_| objects::check_meta(&meta))
    .map_err(|e| error("createMultipartUpload", e))?;
  blocking(&state, "createMultipartUpload", move || {
    store.create_multipart(&key, &meta, now_ms())
  })
  .await
}

/// Makes staged body `handle` part `number` of an upload; gives its etag.
#[op2]
#[string]
pub async fn op_edge_r2_commit_part(
  state: Rc<RefCell<OpState>>,
  #[smi] handle: u32,
  #[string] upload: String,
  #[string] key: String,
  #[smi] number: u32,
) -> Result<String, JsErrorBox> {
  let (store, staged) = take_staged(&state, handle, "uploadPart")?;
  blocking(&state, "uploadPart", move || {
    store.commit_part(&upload, &key, number, staged)
  })
  .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
  part_number: u32,
  etag: String,
}

#[op2]
#[serde]
pub async fn op_edge_r2_complete(
  state: Rc<RefCell<OpState>>,
  #[smi] b: u32,
  #[string] upload: String,
  #[string] key: String,
  #[serde] parts: Vec<Part>,
) -> Result<Meta, JsErrorBox> {
  let store = bucket(&state, b, "complete")?;
  if parts.len() > objects::MAX_PARTS as usize {
    return Err(JsErrorBox::type_error("complete: too many parts"));
  }
  let parts: Vec<(u32, String)> = parts.into_iter().map(|p| (p.part_number, p.etag)).collect();
  let o = blocking(&state, "complete", move || {
    store.complete_multipart(&upload, &key, &parts, now_ms())
  })
  .await?;
  Ok(o.into())
}

#[op2]
pub async fn op_edge_r2_abort(
  state: Rc<RefCell<OpState>>,
  #[smi] b: u32,
  #[string] upload: String,
  #[string] key: String,
) -> Result<(), JsErrorBox> {
  let store = bucket(&state, b, "abort")?;
  blocking(&state, "abort", move || store.abort_multipart(&upload, &key)).await
}
