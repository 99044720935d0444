//! Step 4 of a request: take an isolate for the worker on this thread.
//!
//! Each executor thread has its own pool. A worker's idle isolates are
//! reused (warm); without one, a blank isolate from the ready supply is
//! bound to the worker (cold: only the worker's own modules are evaluated).
//! An isolate runs one request at a time; a worker has at most
//! `max_per_worker` isolates per thread and further requests wait.
//!
//! Capacity: at most `max_isolates` bound isolates and `max_idle_heap` bytes
//! of idle heap per thread. Past either, the least recently used idle
//! isolate (of any worker) is dropped; idle isolates also go after
//! `idle_timeout`. Dropping one is invisible to clients but for latency:
//! the next request of that worker starts cold.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use js_api::{Isolate, IsolateConfig, LogSink};
use tokio::sync::Notify;

use crate::error::RequestError;
use crate::stats::Stats;
use crate::worker::Worker;

/// The sizes a pool keeps to (per thread).
#[derive(Clone, Debug)]
pub struct PoolLimits {
  pub blank_target: usize,
  pub max_per_worker: usize,
  pub max_isolates: usize,
  pub max_idle_heap: usize,
  pub idle_timeout: Duration,
}

pub struct Pool {
  config: IsolateConfig,
  log: Rc<dyn LogSink>,
  limits: PoolLimits,
  stats: Arc<Stats>,
  blank: RefCell<Vec<Isolate>>,
  refilling: Cell<bool>,
  slots: RefCell<HashMap<*const Worker, Slot>>,
  /// Idle isolates, oldest release first: sequence number -> worker key.
  lru: RefCell<BTreeMap<u64, *const Worker>>,
  next_seq: Cell<u64>,
  /// Bound isolates on this thread, busy or idle.
  live: Cell<usize>,
  idle_heap: Cell<usize>,
  /// Signalled when a bound isolate goes away (room under `max_isolates`).
  capacity_freed: Notify,
}

struct Slot {
  /// Keeps the key's address alive and unique.
  worker: Arc<Worker>,
  idle: Vec<Idle>,
  live: usize,
  freed: Rc<Notify>,
}

struct Idle {
  iso: Isolate,
  seq: u64,
  since: Instant,
  heap: usize,
}

/// An isolate lent to one request; back to the pool when dropped.
pub struct Lease {
  pool: Rc<Pool>,
  worker: Arc<Worker>,
  isolate: Option<Isolate>,
  pub cold: bool,
}

impl Lease {
  pub fn isolate(&mut self) -> &mut Isolate {
    self.isolate.as_mut().expect("lease holds its isolate until dropped")
  }

  pub fn isolate_ref(&self) -> &Isolate {
    self.isolate.as_ref().expect("lease holds its isolate until dropped")
  }

  pub fn worker(&self) -> &Arc<Worker> {
    &self.worker
  }
}

impl Drop for Lease {
  fn drop(&mut self) {
    if let Some(iso) = self.isolate.take() {
      let pool = self.pool.clone();
      pool.release(&self.worker, iso);
    }
  }
}

impl Pool {
  pub fn new(config: IsolateConfig, log: Rc<dyn LogSink>, limits: PoolLimits, stats: Arc<Stats>) -> Rc<Self> {
    let pool = Rc::new(Self {
      config,
      log,
      limits,
      stats,
      blank: RefCell::new(Vec::new()),
      refilling: Cell::new(false),
      slots: RefCell::new(HashMap::new()),
      lru: RefCell::new(BTreeMap::new()),
      next_seq: Cell::new(0),
      live: Cell::new(0),
      idle_heap: Cell::new(0),
      capacity_freed: Notify::new(),
    });
    pool.spawn_idle_sweeper();
    pool
  }

  /// An isolate for `worker`: warm if one is idle, else a blank one bound
  /// now, else wait for one to be released.
  pub async fn acquire(self: &Rc<Self>, worker: &Arc<Worker>) -> Result<Lease, RequestError> {
    loop {
      if let Some(iso) = self.take_idle(worker) {
        self.stats.warm_starts.inc();
        return Ok(Lease {
          pool: self.clone(),
          worker: worker.clone(),
          isolate: Some(iso),
          cold: false,
        });
      }
      match self.reserve(worker) {
        Reserve::Granted => break,
        Reserve::WorkerFull(freed) => freed.notified().await,
        Reserve::ThreadFull => self.capacity_freed.notified().await,
      }
    }
    self.stats.cold_starts.inc();
    let iso = self.bind_new(worker).await?;
    Ok(Lease {
      pool: self.clone(),
      worker: worker.clone(),
      isolate: Some(iso),
      cold: true,
    })
  }

  /// Starts binding an isolate for `worker` in the background if it has
  /// none on this thread (a TLS ClientHello named its host). Returns
  /// whether it did.
  pub fn prewarm(self: &Rc<Self>, worker: &Arc<Worker>) -> bool {
    if self
      .slots
      .borrow()
      .get(&Arc::as_ptr(worker))
      .is_some_and(|s| s.live > 0)
    {
      return false;
    }
    if !matches!(self.reserve(worker), Reserve::Granted) {
      return false;
    }
    self.stats.sni_warmups.inc();
    let (pool, worker) = (self.clone(), worker.clone());
    tokio::task::spawn_local(async move {
      // Ready before the request arrives: it becomes idle, then warm.
      if let Ok(iso) = pool.bind_new(&worker).await {
        pool.release(&worker, iso);
      }
    });
    true
  }

  fn take_idle(&self, worker: &Arc<Worker>) -> Option<Isolate> {
    let mut slots = self.slots.borrow_mut();
    let slot = slots.get_mut(&Arc::as_ptr(worker))?;
    let idle = slot.idle.pop()?;
    self.lru.borrow_mut().remove(&idle.seq);
    self.idle_heap.set(self.idle_heap.get() - idle.heap);
    Some(idle.iso)
  }

  fn reserve(&self, worker: &Arc<Worker>) -> Reserve {
    let key = Arc::as_ptr(worker);
    {
      let slots = self.slots.borrow();
      if let Some(slot) = slots.get(&key) {
        if slot.live >= self.limits.max_per_worker {
          return Reserve::WorkerFull(slot.freed.clone());
        }
      }
    }
    if self.live.get() >= self.limits.max_isolates && !self.evict_lru() {
      return Reserve::ThreadFull;
    }
    let mut slots = self.slots.borrow_mut();
    let slot = slots.entry(key).or_insert_with(|| Slot {
      worker: worker.clone(),
      idle: Vec::new(),
      live: 0,
      freed: Rc::new(Notify::new()),
    });
    slot.live += 1;
    self.live.set(self.live.get() + 1);
    self.stats.live_isolates.add(1);
    Reserve::Granted
  }

  /// Binds a blank isolate to `worker`, whose slot was reserved.
  async fn bind_new(self: &Rc<Self>, worker: &Arc<Worker>) -> Result<Isolate, RequestError> {
    let mut iso = match self.take_blank(worker) {
      Ok(iso) => iso,
      Err(e) => {
        self.unreserve(worker);
        return Err(RequestError::Internal(e.to_string()));
      }
    };
    match iso
      .bind(
        worker.code.clone(),
        &worker.net,
        worker.limits.subrequests,
        self.log.clone(),
      )
      .await
    {
      Ok(()) => Ok(iso),
      Err(error) => {
        // Not reusable: it may hold half of the worker's state.
        drop(iso);
        self.unreserve(worker);
        Err(RequestError::Startup {
          worker: worker.name.to_string(),
          error,
        })
      }
    }
  }

  fn take_blank(self: &Rc<Self>, worker: &Worker) -> Result<Isolate, js_api::JsApiError> {
    if worker.limits.memory_bytes != self.config.memory_limit_bytes {
      // Blank isolates have the default memory budget; V8's heap limit is
      // fixed when an isolate is made.
      let config = IsolateConfig {
        memory_limit_bytes: worker.limits.memory_bytes,
        ..self.config.clone()
      };
      return Isolate::new(&config);
    }
    // The supply is topped up when the request lets go of its isolate
    // (`release`), not now: making an isolate takes milliseconds of this
    // thread, which the cold start would wait for.
    let iso = self.blank.borrow_mut().pop();
    match iso {
      Some(iso) => Ok(iso),
      None => {
        self.stats.blank_misses.inc();
        Isolate::new(&self.config)
      }
    }
  }

  /// Tops the blank supply up in the background, one isolate per turn of
  /// the thread's scheduler so requests are served in between.
  pub fn schedule_refill(self: &Rc<Self>) {
    if self.refilling.get() || self.blank.borrow().len() >= self.limits.blank_target {
      return;
    }
    self.refilling.set(true);
    let pool = self.clone();
    tokio::task::spawn_local(async move {
      // Cleared however the task ends (a panic included).
      struct Done(Rc<Pool>);
      impl Drop for Done {
        fn drop(&mut self) {
          self.0.refilling.set(false);
        }
      }
      let done = Done(pool.clone());
      while pool.blank.borrow().len() < pool.limits.blank_target {
        tokio::task::yield_now().await;
        match Isolate::new(&pool.config) {
          Ok(iso) => pool.blank.borrow_mut().push(iso),
          Err(e) => {
            tracing::error!("cannot create a blank isolate: {e}");
            break;
          }
        }
      }
      drop(done);
    });
  }

  fn release(self: &Rc<Self>, worker: &Arc<Worker>, mut iso: Isolate) {
    self.schedule_refill();
    let key = Arc::as_ptr(worker);
    let reusable = iso.is_reusable();
    let heap = if reusable { iso.heap_used() } else { 0 };
    {
      let mut slots = self.slots.borrow_mut();
      let Some(slot) = slots.get_mut(&key) else {
        return;
      };
      if reusable {
        let seq = self.next_seq.get() + 1;
        self.next_seq.set(seq);
        slot.idle.push(Idle {
          iso,
          seq,
          since: Instant::now(),
          heap,
        });
        self.lru.borrow_mut().insert(seq, key);
        self.idle_heap.set(self.idle_heap.get() + heap);
      } else {
        drop(iso);
        slot.live -= 1;
        self.live.set(self.live.get() - 1);
        self.stats.live_isolates.add(-1);
        self.capacity_freed.notify_one();
      }
      slot.freed.notify_one();
    }
    while self.idle_heap.get() > self.limits.max_idle_heap && self.evict_lru() {}
    self.remove_if_empty(key);
  }

  fn unreserve(&self, worker: &Arc<Worker>) {
    let key = Arc::as_ptr(worker);
    if let Some(slot) = self.slots.borrow_mut().get_mut(&key) {
      slot.live -= 1;
      slot.freed.notify_one();
    }
    self.live.set(self.live.get() - 1);
    self.stats.live_isolates.add(-1);
    self.capacity_freed.notify_one();
    self.remove_if_empty(key);
  }

  /// Drops the least recently used idle isolate; false if none is idle.
  fn evict_lru(&self) -> bool {
    let first = self.lru.borrow().first_key_value().map(|(s, k)| (*s, *k));
    let Some((seq, key)) = first else {
      return false;
    };
    self.evict(seq, key);
    true
  }

  fn evict(&self, seq: u64, key: *const Worker) {
    self.lru.borrow_mut().remove(&seq);
    let idle = {
      let mut slots = self.slots.borrow_mut();
      let Some(slot) = slots.get_mut(&key) else {
        return;
      };
      let Some(pos) = slot.idle.iter().position(|i| i.seq == seq) else {
        return;
      };
      slot.live -= 1;
      slot.idle.swap_remove(pos)
    };
    self.idle_heap.set(self.idle_heap.get() - idle.heap);
    self.live.set(self.live.get() - 1);
    self.stats.live_isolates.add(-1);
    self.stats.evictions.inc();
    drop(idle);
    self.capacity_freed.notify_one();
    self.remove_if_empty(key);
  }

  fn remove_if_empty(&self, key: *const Worker) {
    let mut slots = self.slots.borrow_mut();
    if slots.get(&key).is_some_and(|s| s.live == 0) {
      if let Some(slot) = slots.remove(&key) {
        // Whoever waits for this worker retries and makes a new slot.
        slot.freed.notify_waiters();
        drop(slot.worker);
      }
    }
  }

  fn spawn_idle_sweeper(self: &Rc<Self>) {
    let pool = Rc::downgrade(self);
    let every = (self.limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    tokio::task::spawn_local(async move {
      loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.evict_idle_older_than(pool.limits.idle_timeout);
      }
    });
  }

  fn evict_idle_older_than(&self, age: Duration) {
    loop {
      let first = self.lru.borrow().first_key_value().map(|(s, k)| (*s, *k));
      let Some((seq, key)) = first else { return };
      let old = self
        .slots
        .borrow()
        .get(&key)
        .and_then(|s| s.idle.iter().find(|i| i.seq == seq))
        .is_some_and(|i| i.since.elapsed() >= age);
      if !old {
        return;
      }
      self.evict(seq, key);
    }
  }

  pub fn stats(&self) -> &Stats {
    &self.stats
  }

  /// Whether the blank supply is being topped up now.
  pub fn refilling(&self) -> bool {
    self.refilling.get()
  }

  /// Number of blank isolates ready.
  pub fn blank_ready(&self) -> usize {
    self.blank.borrow().len()
  }

  /// Drops every isolate (at thread exit), newest first.
  pub fn clear(&self) {
    let mut all: Vec<Isolate> = self.blank.borrow_mut().drain(..).collect();
    for (_, slot) in self.slots.borrow_mut().drain() {
      all.extend(slot.idle.into_iter().map(|i| i.iso));
    }
    self.lru.borrow_mut().clear();
    while let Some(iso) = all.pop() {
      drop(iso);
    }
  }
}

enum Reserve {
  Granted,
  WorkerFull(Rc<Notify>),
  ThreadFull,
}
