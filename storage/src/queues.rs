//! Queues: what a producer sends (`env.QUEUE.send/sendBatch`) and what a
//! consumer is handed, with Cloudflare's limits and messages. A
//! [`MessageQueue`] keeps messages until they are acknowledged: a batch is
//! *leased* (hidden for a while, its attempts counted) rather than taken,
//! so a consumer that dies with a batch in hand loses nothing; the batch
//! shows again once the lease runs out (at-least-once delivery).

/// The largest message body, as serialized (Cloudflare's 128 KB).
pub const MAX_MESSAGE_BYTES: usize = 128_000;
/// Messages one `sendBatch` may carry (Cloudflare's).
pub const MAX_BATCH_MESSAGES: usize = 100;
/// Bytes one `sendBatch` may carry in all (Cloudflare's 256 KB).
pub const MAX_BATCH_BYTES: usize = 256_000;
/// The longest a message may be delayed, on sending or on retry (12 hours).
pub const MAX_DELAY_S: u32 = 43_200;
/// How long an unacknowledged message is kept (Cloudflare's default 4 days).
pub const RETENTION_MS: i64 = 4 * 24 * 3600 * 1000;
/// The largest consumer batch (Cloudflare's `max_batch_size` bound).
pub const MAX_CONSUMER_BATCH: usize = 100;
/// Content types a body may be sent as.
pub const CONTENT_TYPES: [&str; 4] = ["v8", "json", "text", "bytes"];

/// A message as a producer sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
  pub body: Vec<u8>,
  /// One of [`CONTENT_TYPES`]: how the consumer decodes `body`.
  pub content_type: String,
  /// Seconds before it may be delivered.
  pub delay_s: u32,
}

/// A message handed to a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
  /// Unique in its queue (32 hex digits).
  pub id: String,
  pub body: Vec<u8>,
  pub content_type: String,
  /// When it was sent, in ms since the epoch.
  pub sent_ms: i64,
  /// Deliveries so far, this one included (1 on the first).
  pub attempts: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
  #[error("Queue send failed: message length of {0} bytes exceeds limit of 128000")]
  TooLarge(usize),
  #[error("Queue sendBatch failed: batch of {0} messages exceeds limit of 100")]
  TooMany(usize),
  #[error("Queue sendBatch failed: batch size of {0} bytes exceeds limit of 256000")]
  BatchTooLarge(usize),
  #[error("Queue send failed: delaySeconds must be an integer from 0 to 43200, got {0}")]
  BadDelay(String),
  #[error("Queue send failed: unknown contentType {0:?} (v8, json, text or bytes)")]
  BadContentType(String),
  #[error("Queue send failed: the queue is full")]
  Full,
  #[error("queue storage: {0}")]
  Backend(String),
}

/// A delay as JS gives it (seconds): whole, 0 to [`MAX_DELAY_S`].
pub fn check_delay(delay: f64) -> Result<u32, QueueError> {
  if delay.is_finite() && delay >= 0.0 && delay <= MAX_DELAY_S as f64 && delay.fract() == 0.0 {
    Ok(delay as u32)
  } else {
    Err(QueueError::BadDelay(delay.to_string()))
  }
}

/// Checks a send or sendBatch before anything is stored: each body, the
/// count, the total, each content type.
pub fn check_batch(messages: &[NewMessage]) -> Result<(), QueueError> {
  if messages.len() > MAX_BATCH_MESSAGES {
    return Err(QueueError::TooMany(messages.len()));
  }
  let mut total = 0;
  for m in messages {
    if m.body.len() > MAX_MESSAGE_BYTES {
      return Err(QueueError::TooLarge(m.body.len()));
    }
    if !CONTENT_TYPES.contains(&m.content_type.as_str()) {
      return Err(QueueError::BadContentType(m.content_type.clone()));
    }
    if m.delay_s > MAX_DELAY_S {
      return Err(QueueError::BadDelay(m.delay_s.to_string()));
    }
    total += m.body.len();
  }
  if total > MAX_BATCH_BYTES {
    return Err(QueueError::BatchTooLarge(total));
  }
  Ok(())
}

/// The delay of a retry that names none: `retry_delay_s`, doubled at each
/// delivery after the first, at most [`MAX_DELAY_S`].
pub fn backoff(retry_delay_s: u32, attempts: u32) -> u32 {
  let doublings = attempts.saturating_sub(1).min(31);
  (u64::from(retry_delay_s) << doublings).min(u64::from(MAX_DELAY_S)) as u32
}

/// What is waiting in a queue now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
  /// Messages that could be delivered now (at most the count asked).
  pub ready: usize,
  /// When the longest-waiting of them became deliverable (ms).
  pub oldest_ms: Option<i64>,
}

/// A queue's store. Calls block (run them off an async executor).
pub trait MessageQueue: Send + Sync {
  /// Stores `messages` (checked already) as one write: all or none.
  fn send(&self, messages: &[NewMessage], now_ms: i64) -> Result<(), QueueError>;
  /// Counts, up to `max`, the messages deliverable at `now_ms`.
  fn backlog(&self, max: usize, now_ms: i64) -> Result<Backlog, QueueError>;
  /// Leases up to `max` deliverable messages, oldest first, of at most
  /// `max_bytes` of bodies in all (one message at least), for `lease_ms`:
  /// hidden until then unless acked or retried, their attempts counted.
  fn lease(&self, max: usize, max_bytes: usize, now_ms: i64, lease_ms: i64) -> Result<Vec<Message>, QueueError>;
  /// Deletes delivered messages.
  fn ack(&self, ids: &[String]) -> Result<(), QueueError>;
  /// Shows the message `id` again at `visible_ms`.
  fn retry(&self, id: &str, visible_ms: i64) -> Result<(), QueueError>;
  /// Messages stored (deliverable or not), for metrics and tests.
  fn depth(&self) -> Result<u64, QueueError>;
}

#[cfg(test)]
mod tests {
  use super::*;

  fn msg(len: usize, ty: &str) -> NewMessage {
    NewMessage {
      body: vec![0; len],
      content_type: ty.into(),
      delay_s: 0,
    }
  }

  #[test]
  fn backoff_doubles_and_caps() {
    assert_eq!(backoff(0, 5), 0);
    assert_eq!(backoff(10, 1), 10);
    assert_eq!(backoff(10, 3), 40);
    assert_eq!(backoff(10, 40), 43_200);
  }

  #[test]
  fn limits_of_a_batch() {
    assert_eq!(check_batch(&[msg(MAX_MESSAGE_BYTES, "v8")]), Ok(()));
    assert_eq!(
      check_batch(&[msg(MAX_MESSAGE_BYTES + 1, "v8")]),
      Err(QueueError::TooLarge(MAX_MESSAGE_BYTES + 1))
    );
    assert_eq!(check_batch(&vec![msg(1, "json"); 101]), Err(QueueError::TooMany(101)));
    assert_eq!(
      check_batch(&vec![msg(100_000, "bytes"); 3]),
      Err(QueueError::BatchTooLarge(300_000))
    );
    assert_eq!(
      check_batch(&[msg(1, "xml")]),
      Err(QueueError::BadContentType("xml".into()))
    );
    assert_eq!(check_delay(0.0), Ok(0));
    assert_eq!(check_delay(43_200.0), Ok(43_200));
    for bad in [-1.0, 0.5, 43_201.0, f64::NAN, f64::INFINITY] {
      assert!(check_delay(bad).is_err(), "{bad}");
    }
  }
}
