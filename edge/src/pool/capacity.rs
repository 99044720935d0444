//! How many isolates a thread's pool holds: bound isolates per worker and
//! in all, against their caps, and the gauges that report them. Every
//! change of these counts goes through [`Capacity`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::obs::stats::Stats;
use crate::worker::{Worker, WorkerId};

/// The answer to a request for room for one more isolate of a worker.
pub enum Reserve {
  Granted,
  /// The worker has its most isolates on this thread: wait on this.
  WorkerFull(Rc<Notify>),
  /// The thread has its most isolates and none is idle to drop.
  ThreadFull,
}

struct PerWorker {
  live: usize,
  /// Signalled when one of the worker's isolates is released or dropped.
  freed: Rc<Notify>,
}

pub struct Capacity {
  max_isolates: usize,
  max_per_worker: usize,
  live: Cell<usize>,
  workers: RefCell<HashMap<WorkerId, PerWorker>>,
  stats: Arc<Stats>,
  /// Signalled when a bound isolate goes away (room under `max_isolates`).
  freed: Notify,
}

impl Capacity {
  pub fn new(max_isolates: usize, max_per_worker: usize, stats: Arc<Stats>) -> Self {
    Self {
      max_isolates,
      max_per_worker,
      live: Cell::new(0),
      workers: RefCell::new(HashMap::new()),
      stats,
      freed: Notify::new(),
    }
  }

  /// Bound isolates of `worker` on this thread, busy or idle.
  pub fn live_of(&self, worker: &Worker) -> usize {
    self.workers.borrow().get(&worker.id).map_or(0, |w| w.live)
  }

  /// Whether the thread is at its cap.
  fn thread_full(&self) -> bool {
    self.live.get() >= self.max_isolates
  }

  /// Room for one more isolate of `worker`: granted (and counted) unless a
  /// cap says no. `make_room` may drop an idle isolate to get under the
  /// thread's cap; it returns whether it did.
  pub fn reserve(&self, worker: &Worker, make_room: impl FnOnce() -> bool) -> Reserve {
    if let Some(w) = self.workers.borrow().get(&worker.id) {
      if w.live >= self.max_per_worker {
        return Reserve::WorkerFull(w.freed.clone());
      }
    }
    if self.thread_full() && !make_room() {
      return Reserve::ThreadFull;
    }
    self
      .workers
      .borrow_mut()
      .entry(worker.id)
      .or_insert_with(|| PerWorker {
        live: 0,
        freed: Rc::new(Notify::new()),
      })
      .live += 1;
    self.live.set(self.live.get() + 1);
    self.stats.live_isolates.add(1);
    worker.stats.isolates.add(1);
    Reserve::Granted
  }

  /// One isolate of `worker` went away (dropped, or never bound).
  pub fn release(&self, worker: &Worker) {
    let mut workers = self.workers.borrow_mut();
    if let Some(w) = workers.get_mut(&worker.id) {
      w.live -= 1;
      w.freed.notify_one();
      if w.live == 0 {
        // Whoever waits for this worker retries and counts anew.
        w.freed.notify_waiters();
        workers.remove(&worker.id);
      }
    }
    self.live.set(self.live.get() - 1);
    self.stats.live_isolates.add(-1);
    worker.stats.isolates.add(-1);
    self.freed.notify_one();
  }

  /// One isolate of `worker` became idle: a waiter for it may take it.
  pub fn idled(&self, worker: &Worker) {
    if let Some(w) = self.workers.borrow().get(&worker.id) {
      w.freed.notify_one();
    }
  }

  /// Resolves when a bound isolate goes away.
  pub async fn wait_for_room(&self) {
    self.freed.notified().await;
  }
}
