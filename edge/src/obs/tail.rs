//! Live tails of a worker (`GET /workers/{name}/tail`, `edge tail`): each
//! of its requests' outcomes and `console.*` lines as a JSON line, to
//! whoever is listening. Nothing is made or sent while nobody listens; a
//! listener that falls behind misses lines (and is told how many) rather
//! than holding anything up.

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// Lines a slow listener may fall behind by before it misses some.
const BACKLOG: usize = 1024;

/// One worker's tail: a channel made when the first listener comes.
#[derive(Default, Debug)]
pub struct Tail(Mutex<Option<broadcast::Sender<Arc<str>>>>);

impl Tail {
  /// Sends the line `make` builds, if anyone listens.
  pub fn publish(&self, make: impl FnOnce() -> serde_json::Value) {
    let tx = self.0.lock().expect("tail");
    if let Some(tx) = tx.as_ref().filter(|tx| tx.receiver_count() > 0) {
      let _ = tx.send(Arc::from(make().to_string()));
    }
  }

  /// Whether anyone listens (then a request's method and URL are kept
  /// for its line).
  pub fn listening(&self) -> bool {
    self
      .0
      .lock()
      .expect("tail")
      .as_ref()
      .is_some_and(|tx| tx.receiver_count() > 0)
  }

  /// A new listener.
  pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
    let mut tx = self.0.lock().expect("tail");
    tx.get_or_insert_with(|| broadcast::channel(BACKLOG).0).subscribe()
  }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0, |d| d.as_millis() as u64)
}
