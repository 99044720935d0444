//! Queue producer bindings: the op behind `env.QUEUE.send/sendBatch` over
//! the [`MessageQueue`]s the isolate's worker names (and no others). A
//! batch is checked whole first (Cloudflare's limits and messages,
//! `edge_storage::queues`), then stored in one write on the blocking pool
//! through the gate KV, D1 and R2 share ([`super::kv::gated`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use deno_core::{op2, OpState};
use deno_error::JsErrorBox;
use edge_storage::queues::{self, MessageQueue, NewMessage};
use serde::Deserialize;

use super::kv::{gated, Charged};

/// The queues of the isolate's worker, in the order its bindings are given
/// to JS.
pub struct QueueBindings(pub Vec<Arc<dyn MessageQueue>>);

/// One message of a send: its body is the next `length` bytes of the
/// buffer the op is given.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outgoing {
  content_type: String,
  delay_seconds: f64,
  length: usize,
}

fn now_ms() -> i64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0, |d| d.as_millis() as i64)
}

#[op2]
pub async fn op_edge_queue_send(
  state: Rc<RefCell<OpState>>,
  #[smi] index: u32,
  #[serde] messages: Vec<Outgoing>,
  #[buffer(copy)] bodies: Vec<u8>,
) -> Result<(), JsErrorBox> {
  let _held = Charged::new(&state, bodies.len());
  let queue = {
    let state = state.borrow();
    state
      .try_borrow::<QueueBindings>()
      .and_then(|b| b.0.get(index as usize).cloned())
      .ok_or_else(|| JsErrorBox::type_error("Queue send failed: no such queue binding"))?
  };
  let mut batch = Vec::with_capacity(messages.len());
  let mut at = 0usize;
  for m in messages {
    let end = at
      .checked_add(m.length)
      .filter(|&e| e <= bodies.len())
      .ok_or_else(|| JsErrorBox::type_error("Queue send failed: bodies shorter than their lengths"))?;
    let delay_s = queues::check_delay(m.delay_seconds).map_err(|e| JsErrorBox::type_error(e.to_string()))?;
    batch.push(NewMessage {
      body: bodies[at..end].to_vec(),
      content_type: m.content_type,
      delay_s,
    });
    at = end;
  }
  queues::check_batch(&batch).map_err(|e| JsErrorBox::type_error(e.to_string()))?;
  gated(&state, move || queue.send(&batch, now_ms()))
    .await
    .map_err(|e| JsErrorBox::generic(format!("Queue send failed: {e}")))?
    .map_err(|e| JsErrorBox::generic(e.to_string()))
}
