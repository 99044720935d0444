//! Live tails of a worker (`GET /workers/{name}/tail`, `edge tail`): each
//! of its requests' outcomes and `console.*` lines as a JSON line, to
//! whoever is listening. While nobody listens a request pays one atomic
//! load; a listener that falls behind misses lines (and is told how many)
//! rather than holding anything up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// Lines a slow listener may fall behind by before it misses some.
const BACKLOG: usize = 1024;

/// One worker's tail: a channel made when the first listener comes.
#[derive(Default, Debug)]
pub struct Tail {
  listeners: Arc<AtomicUsize>,
  tx: Mutex<Option<broadcast::Sender<Arc<str>>>>,
}

/// A listener; it stops counting as one when dropped.
pub struct Listener {
  pub rx: broadcast::Receiver<Arc<str>>,
  listeners: Arc<AtomicUsize>,
}

impl Drop for Listener {
  fn drop(&mut self) {
    self.listeners.fetch_sub(1, Ordering::Relaxed);
  }
}

impl Tail {
  /// Whether anyone listens (then a request's method and URL are kept
  /// for its line).
  pub fn listening(&self) -> bool {
    self.listeners.load(Ordering::Relaxed) > 0
  }

  /// Sends the line `make` builds, if anyone listens.
  pub fn publish(&self, make: impl FnOnce() -> serde_json::Value) {
    if !self.listening() {
      return;
    }
    if let Some(tx) = self.tx.lock().expect("tail").as_ref() {
      let _ = tx.send(Arc::from(make().to_string()));
    }
  }

  /// A new listener.
  pub fn subscribe(&self) -> Listener {
    let mut tx = self.tx.lock().expect("tail");
    let rx = tx.get_or_insert_with(|| broadcast::channel(BACKLOG).0).subscribe();
    self.listeners.fetch_add(1, Ordering::Relaxed);
    Listener {
      rx,
      listeners: self.listeners.clone(),
    }
  }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0, |d| d.as_millis() as u64)
}
