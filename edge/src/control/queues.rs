//! Queue consumers: a thread that, every [`POLL`], hands each consumed
//! queue's waiting messages to its worker's `queue()` through [`Dispatch`]
//! like any other request of the worker (its limits and counters; like
//! every request from inside the node, an access line). A batch goes once
//! `max_batch_size` messages wait or the oldest
//! has waited `max_batch_timeout`; one batch per consumer is in flight.
//! Messages are leased, not taken (`edge_storage::queues`): the worker's
//! answer acks or retries each; a delivery that fails (threw, hit a
//! limit, the node died) retries them all. A message delivered more than
//! `1 + max_retries` times goes to the dead-letter queue, or is dropped.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edge_storage::queues::{backoff, Message, NewMessage, MAX_DELAY_S};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::background::Background;
use crate::dispatch::{Dispatch, RequestContext};
use crate::front::view::ServingView;
use crate::obs::stats::WorkerStats;
use crate::worker::Consumer;

/// How often waiting messages are looked for.
const POLL: Duration = Duration::from_millis(100);
/// How much longer than the worker's wall limit a batch stays leased (its
/// answer is read and applied in this time).
const LEASE_MARGIN: Duration = Duration::from_secs(60);
/// Room left in a delivery's body for its header line (a few hundred
/// bytes a message).
const HEAD_ROOM: usize = 64 << 10;
/// The most of the worker's answer read (a decision per message).
const MAX_ANSWER: usize = 64 << 10;

/// The running consumer thread; stopped when dropped.
pub struct QueueRunner {
  _thread: Background,
}

impl QueueRunner {
  /// Starts the thread: the consumers of the workers `view` routes, their
  /// batches run through `dispatch`.
  pub fn start(view: Arc<ServingView>, dispatch: Arc<Dispatch>) -> std::io::Result<Self> {
    Background::start("edge-queues", "queue consumers", move |stop| run(view, dispatch, stop))
      .map(|t| Self { _thread: t })
  }
}

fn now_ms() -> i64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0, |d| d.as_millis() as i64)
}

/// Consumers with a batch in flight: (worker, queue).
type Busy = Arc<Mutex<HashSet<(String, String)>>>;

async fn run(view: Arc<ServingView>, dispatch: Arc<Dispatch>, mut stop: tokio::sync::watch::Receiver<bool>) {
  let busy: Busy = Arc::default();
  while !*stop.borrow() {
    let router = view.router();
    for w in router.workers() {
      for c in &w.consumers {
        let key = (w.name.to_string(), c.settings.queue.clone());
        if busy.lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
          continue;
        }
        let lease = w.limits.wall + LEASE_MARGIN;
        // The batch is the request's body: within the worker's limit.
        let max_bytes = usize::try_from(w.limits.request_body_bytes)
          .unwrap_or(usize::MAX)
          .saturating_sub(HEAD_ROOM);
        let batch = match take_batch(c, max_bytes, lease) {
          Ok(b) => b,
          Err(e) => {
            tracing::warn!(worker = %w.name, queue = c.settings.queue, "queue read failed: {e}");
            continue;
          }
        };
        let (late, batch): (Vec<_>, Vec<_>) = batch.into_iter().partition(|m| m.attempts > c.settings.retries() + 1);
        // Leased again after deliveries that never answered (the node
        // died with them in hand): past their retries already.
        for m in late {
          dead_letter(&w.name, c, &w.stats, m);
        }
        if batch.is_empty() {
          continue;
        }
        busy.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone());
        let delivery = Delivery {
          worker: w.name.to_string(),
          consumer: c.clone(),
          stats: w.stats.clone(),
          timeout: lease - LEASE_MARGIN / 2,
        };
        let (dispatch, busy) = (dispatch.clone(), busy.clone());
        tokio::spawn(async move {
          delivery.run(&dispatch, batch).await;
          busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        });
      }
    }
    tokio::select! {
      _ = tokio::time::sleep(POLL) => {}
      _ = stop.changed() => {}
    }
  }
}

/// The batch due now, leased; empty if none is.
fn take_batch(c: &Consumer, max_bytes: usize, lease: Duration) -> Result<Vec<Message>, edge_storage::QueueError> {
  let now = now_ms();
  let size = c.settings.batch_size();
  let waiting = c.queue.backlog(size, now)?;
  let Some(oldest) = waiting.oldest_ms else {
    return Ok(Vec::new());
  };
  if waiting.ready < size && now - oldest < c.settings.batch_timeout_ms() {
    return Ok(Vec::new());
  }
  c.queue.lease(size, max_bytes, now, lease.as_millis() as i64)
}

/// A message past its retries: into the dead-letter queue if there is one,
/// then out of its queue.
fn dead_letter(worker: &str, c: &Consumer, stats: &WorkerStats, m: Message) {
  let settings = &c.settings;
  stats.queue_dead.inc();
  if let Some(dlq) = &c.dead_letter {
    let moved = NewMessage {
      body: m.body,
      content_type: m.content_type,
      delay_s: 0,
    };
    if let Err(e) = dlq.send(&[moved], now_ms()) {
      // Kept in its queue: delivered again when the lease runs out.
      tracing::warn!(worker, queue = settings.queue, "dead-letter queue write failed: {e}");
      return;
    }
  } else {
    tracing::warn!(
      worker,
      queue = settings.queue,
      id = m.id,
      attempts = m.attempts,
      "message dropped after its retries (no dead_letter_queue)"
    );
  }
  if let Err(e) = c.queue.ack(&[m.id]) {
    tracing::warn!(worker, queue = settings.queue, "queue write failed: {e}");
  }
}

/// One batch's trip to its consumer.
struct Delivery {
  worker: String,
  consumer: Consumer,
  stats: Arc<WorkerStats>,
  timeout: Duration,
}

/// The worker's answer (js/queue.js): per message "ack" or a retry's delay
/// in seconds (-1: the consumer's retry_delay).
#[derive(Deserialize)]
struct Answer {
  decisions: Vec<serde_json::Value>,
  error: Option<String>,
}

enum Decision {
  Ack,
  /// Seconds; `None`: the consumer's backoff.
  Retry(Option<u32>),
}

impl Delivery {
  async fn run(self, dispatch: &Dispatch, batch: Vec<Message>) {
    let (c, settings) = (&self.consumer, &self.consumer.settings);
    self.stats.queue_delivered.add(batch.len() as u64);
    let answered = tokio::time::timeout(self.timeout, self.call(dispatch, &batch))
      .await
      .unwrap_or_else(|_| Err("timed out".into()));
    let decisions = answered.unwrap_or_else(|e| {
      self.stats.queue_failed.inc();
      tracing::warn!(
        worker = self.worker,
        queue = settings.queue,
        "queue() failed: {e}; batch retried"
      );
      batch.iter().map(|_| Decision::Retry(None)).collect()
    });
    let mut acks = Vec::new();
    for (m, d) in batch.into_iter().zip(decisions) {
      match d {
        Decision::Ack => acks.push(m.id),
        Decision::Retry(_) if m.attempts > settings.retries() => dead_letter(&self.worker, c, &self.stats, m),
        Decision::Retry(delay) => {
          self.stats.queue_retried.inc();
          let delay = delay.unwrap_or_else(|| backoff(settings.retry_delay_s(), m.attempts));
          if let Err(e) = c.queue.retry(&m.id, now_ms() + i64::from(delay) * 1000) {
            tracing::warn!(worker = self.worker, queue = settings.queue, "queue write failed: {e}");
          }
        }
      }
    }
    if let Err(e) = c.queue.ack(&acks) {
      tracing::warn!(worker = self.worker, queue = settings.queue, "queue write failed: {e}");
    }
  }

  /// Runs `queue()` on `batch`: each message's decision, or why there are
  /// none.
  async fn call(&self, dispatch: &Dispatch, batch: &[Message]) -> Result<Vec<Decision>, String> {
    let body = encode_batch(&self.consumer.settings.queue, batch);
    let query: String = url::form_urlencoded::Serializer::new(String::new())
      .append_pair("queue", &self.consumer.settings.queue)
      .finish();
    let req = http::Request::post(format!("http://{}/__queue?{query}", self.worker))
      .extension(js_api::QueueDelivery {
        queue: self.consumer.settings.queue.clone(),
      })
      .body(http_body_util::Full::new(Bytes::from(body)))
      .map_err(|e| e.to_string())?;
    let handled = dispatch
      .handle_with(&self.worker, req, RequestContext::default())
      .await
      .map_err(|f| f.error.to_string())?;
    let status = handled.response.status();
    let answer = http_body_util::Limited::new(handled.response.into_body(), MAX_ANSWER)
      .collect()
      .await
      .map_err(|e| format!("its answer: {e}"))?
      .to_bytes();
    let answer: Answer =
      serde_json::from_slice(&answer).map_err(|_| format!("answered {status}, not a decision list"))?;
    if let Some(error) = answer.error {
      // Its decisions stand (explicit ack() calls before it threw).
      self.stats.queue_failed.inc();
      tracing::warn!(
        worker = self.worker,
        queue = self.consumer.settings.queue,
        "queue() threw: {error}"
      );
    }
    if answer.decisions.len() != batch.len() {
      return Err(format!(
        "{} decisions for {} messages",
        answer.decisions.len(),
        batch.len()
      ));
    }
    Ok(answer.decisions.iter().map(decision_of).collect())
  }
}

fn decision_of(v: &serde_json::Value) -> Decision {
  match v {
    serde_json::Value::String(s) if s == "ack" => Decision::Ack,
    serde_json::Value::Number(n) => Decision::Retry(n.as_u64().map(|s| s.min(MAX_DELAY_S as u64) as u32)),
    _ => Decision::Retry(None),
  }
}

/// The body of a delivery: a JSON line naming the queue and each message's
/// id, time, attempts, type and length, then the bodies one after another.
fn encode_batch(queue: &str, batch: &[Message]) -> Vec<u8> {
  let messages: Vec<_> = batch
    .iter()
    .map(|m| {
      serde_json::json!({
        "id": m.id,
        "timestamp": m.sent_ms,
        "attempts": m.attempts,
        "contentType": m.content_type,
        "length": m.body.len(),
      })
    })
    .collect();
  let mut out = serde_json::to_vec(&serde_json::json!({ "queue": queue, "messages": messages })).unwrap_or_default();
  out.push(b'\n');
  for m in batch {
    out.extend_from_slice(&m.body);
  }
  out
}
