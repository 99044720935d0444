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
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use js_api::{Isolate, IsolateConfig, LogSink};
use tokio::sync::Notify;

use crate::error::RequestError;
use crate::limits::{CpuMeter, LimitHit, Watch};
use crate::stats::Stats;
use crate::worker::Worker;

/// CPU time a worker's modules may take to evaluate when it starts, if its
/// request limit is lower (Cloudflare allows 400 ms for startup too).
pub const STARTUP_CPU: Duration = Duration::from_millis(400);

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
  /// This thread's CPU deadline (module evaluation runs under the worker's
  /// CPU limit too).
  watch: Arc<Watch>,
  blank: RefCell<Vec<Isolate>>,
  refilling: Cell<bool>,
  /// Isolates taken or given back on this thread so far (a change between
  /// two looks means the thread was not quiet).
  activity: Cell<u64>,
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
  /// Garbage collected since it went idle (see `compact_idle`).
  compacted: bool,
}

/// How long an isolate stays idle before its garbage is collected and
/// V8's spare pages given back (~5% of an idle hello-world isolate's
/// memory; ~2 ms of the thread each), which is done only when the thread
/// has served nothing for a quarter of this.
const COMPACT_AFTER: Duration = Duration::from_secs(1);

/// An isolate lent to one request; back to the pool when dropped.
pub struct Lease {
  pool: Rc<Pool>,
  worker: Arc<Worker>,
  isolate: Option<Isolate>,
  /// Heap the isolate had when lent (its worker's gauge holds this).
  heap: usize,
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
    self.pool.stats.in_flight.add(-1);
    if let Some(iso) = self.isolate.take() {
      let pool = self.pool.clone();
      pool.release(&self.worker, iso, self.heap);
    }
  }
}

impl Pool {
  pub fn new(
    config: IsolateConfig,
    log: Rc<dyn LogSink>,
    limits: PoolLimits,
    stats: Arc<Stats>,
    watch: Arc<Watch>,
  ) -> Rc<Self> {
    let pool = Rc::new(Self {
      config,
      log,
      limits,
      stats,
      watch,
      blank: RefCell::new(Vec::new()),
      refilling: Cell::new(false),
      activity: Cell::new(0),
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
    self.activity.set(self.activity.get() + 1);
    loop {
      if let Some((iso, heap)) = self.take_idle(worker) {
        self.stats.warm_starts.inc();
        self.stats.in_flight.add(1);
        return Ok(Lease {
          pool: self.clone(),
          worker: worker.clone(),
          isolate: Some(iso),
          heap,
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
    worker.stats.cold_starts.inc();
    let iso = self.bind_new(worker).await?;
    self.stats.in_flight.add(1);
    Ok(Lease {
      pool: self.clone(),
      worker: worker.clone(),
      isolate: Some(iso),
      heap: 0,
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
        pool.release(&worker, iso, 0);
      }
    });
    true
  }

  fn take_idle(&self, worker: &Arc<Worker>) -> Option<(Isolate, usize)> {
    let mut slots = self.slots.borrow_mut();
    let slot = slots.get_mut(&Arc::as_ptr(worker))?;
    let idle = slot.idle.pop()?;
    self.lru.borrow_mut().remove(&idle.seq);
    self.idle_heap.set(self.idle_heap.get() - idle.heap);
    worker.stats.idle_isolates.add(-1);
    Some((idle.iso, idle.heap))
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
    worker.stats.isolates.add(1);
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
    // Evaluating the worker's modules runs its top-level code: under a CPU
    // limit (the request's, but at least STARTUP_CPU: compiling is work a
    // request does not do) and the wall limit.
    let stopper = iso.stopper().clone();
    let mut cpu = CpuMeter::new(worker.limits.cpu.max(STARTUP_CPU));
    let outcome = {
      let mut bind = std::pin::pin!(iso.bind(
        worker.code.clone(),
        &worker.net,
        worker.limits.subrequests,
        self.log.clone(),
      ));
      let watch = &self.watch;
      let drive = std::future::poll_fn(|cx| cpu.measure(watch, &stopper, || bind.as_mut().poll(cx)));
      tokio::time::timeout(worker.limits.wall, drive).await
    };
    let hit = if cpu.exceeded() {
      Some(cpu.hit())
    } else if stopper.memory.exceeded() {
      Some(LimitHit::memory(
        worker.limits.memory_bytes,
        "while evaluating the worker's modules",
      ))
    } else {
      None
    };
    let failed = match (hit, outcome) {
      (None, Ok(Ok(()))) => return Ok(iso),
      (Some(hit), _) => RequestError::Limit {
        worker: worker.name.to_string(),
        hit,
      },
      (None, Err(_)) => RequestError::Limit {
        worker: worker.name.to_string(),
        hit: LimitHit::wall(worker.limits.wall, "the worker's modules did not finish evaluating"),
      },
      (None, Ok(Err(error))) => RequestError::Startup {
        worker: worker.name.to_string(),
        error,
      },
    };
    // Not reusable: it may hold half of the worker's state.
    drop(iso);
    self.unreserve(worker);
    Err(failed)
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
      Some(iso) => {
        self.stats.blank_isolates.add(-1);
        Ok(iso)
      }
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
          Ok(iso) => {
            pool.blank.borrow_mut().push(iso);
            pool.stats.blank_isolates.add(1);
          }
          Err(e) => {
            tracing::error!("cannot create a blank isolate: {e}");
            break;
          }
        }
      }
      drop(done);
    });
  }

  fn release(self: &Rc<Self>, worker: &Arc<Worker>, mut iso: Isolate, lent_heap: usize) {
    self.activity.set(self.activity.get() + 1);
    self.schedule_refill();
    let key = Arc::as_ptr(worker);
    // The look at its memory may find the isolate over its budget (Wasm
    // memory grown in a request too short for the watchdog to look).
    let heap = if worker.is_retired() {
      None
    } else {
      iso.memory_if_reusable()
    };
    let reusable = heap.is_some();
    let heap = heap.unwrap_or(0);
    worker.stats.heap_bytes.add(heap as i64 - lent_heap as i64);
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
          compacted: false,
        });
        self.lru.borrow_mut().insert(seq, key);
        self.idle_heap.set(self.idle_heap.get() + heap);
        worker.stats.idle_isolates.add(1);
      } else {
        drop(iso);
        slot.live -= 1;
        self.live.set(self.live.get() - 1);
        self.stats.live_isolates.add(-1);
        worker.stats.isolates.add(-1);
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
    worker.stats.isolates.add(-1);
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
      let ws = &slot.worker.stats;
      ws.isolates.add(-1);
      ws.idle_isolates.add(-1);
      let idle = slot.idle.swap_remove(pos);
      ws.heap_bytes.add(-(idle.heap as i64));
      idle
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
    let pool = Rc::downgrade(self);
    tokio::task::spawn_local(async move {
      let mut seen = u64::MAX;
      loop {
        tokio::time::sleep(COMPACT_AFTER / 4).await;
        let Some(pool) = pool.upgrade() else { return };
        // One isolate per scheduler turn, while the thread is quiet: a
        // request meanwhile waits for one collection at most.
        let quiet = |p: &Pool| p.activity.get() == seen;
        while quiet(&pool) && pool.compact_one_idle() {
          tokio::task::yield_now().await;
        }
        seen = pool.activity.get();
      }
    });
  }

  /// Collects the garbage of the oldest idle isolate idle for longer than
  /// [`COMPACT_AFTER`] and not collected since; false if there is none.
  /// One found over its budget even so is dropped.
  fn compact_one_idle(&self) -> bool {
    let mut compacted = None;
    {
      let lru = self.lru.borrow();
      let mut slots = self.slots.borrow_mut();
      for (&seq, &key) in lru.iter() {
        let Some(slot) = slots.get_mut(&key) else { continue };
        let Some(idle) = slot.idle.iter_mut().find(|i| i.seq == seq) else {
          continue;
        };
        if idle.since.elapsed() < COMPACT_AFTER {
          break;
        }
        if idle.compacted {
          continue;
        }
        let heap = idle.iso.compact();
        idle.compacted = true;
        slot.worker.stats.heap_bytes.add(heap as i64 - idle.heap as i64);
        self.idle_heap.set(self.idle_heap.get() - idle.heap + heap);
        idle.heap = heap;
        compacted = Some((seq, key, !idle.iso.is_reusable()));
        break;
      }
    }
    let Some(over_budget) = compacted else { return false };
    if let (seq, key, true) = over_budget {
      self.evict(seq, key);
    }
    true
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

  /// Drops the idle isolates of a retired worker version (busy ones go
  /// when their requests finish).
  pub fn retire(&self, worker: &Arc<Worker>) {
    let seqs: Vec<u64> = self
      .slots
      .borrow()
      .get(&Arc::as_ptr(worker))
      .map(|s| s.idle.iter().map(|i| i.seq).collect())
      .unwrap_or_default();
    for seq in seqs {
      self.evict(seq, Arc::as_ptr(worker));
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
