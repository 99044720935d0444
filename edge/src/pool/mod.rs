//! Step 4 of a request: take an isolate for the worker on this thread.
//!
//! Each executor thread has its own pool. A request joins an isolate of
//! its worker that is already busy if that one has room
//! (`max_per_isolate` requests, interleaved at awaits: [`host`]); else an
//! idle one (warm); else a blank isolate from the ready supply is bound to
//! the worker (cold: only the worker's own modules are evaluated). A worker
//! has at most `max_per_worker` isolates per thread; past all that, a
//! request waits, at most `max_queue`, then gets 503.
//!
//! Capacity ([`capacity`]): at most `max_isolates` bound isolates and
//! `max_idle_heap` bytes of idle heap per thread. Past either, the least
//! recently used idle isolate ([`idle`]) of any worker is dropped; idle
//! isolates also go after `idle_timeout`. Dropping one is invisible to
//! clients but for latency: the next request of that worker starts cold.

pub mod capacity;
pub mod host;
pub mod idle;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use js_api::{Isolate, IsolateConfig, LogSink};

use crate::error::RequestError;
use crate::limits::metered::{self, Meter, Metered};
use crate::limits::{CpuDeadline, CpuMeter, Phase};
use crate::obs::stats::Stats;
use crate::worker::{Worker, WorkerId};
use capacity::{Capacity, Reserve};
pub use host::{Failure, Head, Host, Member, Ticket};
use idle::IdleSet;

/// CPU time a worker's modules may take to evaluate when it starts, if its
/// request limit is lower (Cloudflare allows 400 ms for startup too).
pub const STARTUP_CPU: Duration = Duration::from_millis(400);

/// The sizes a pool keeps to (per thread).
#[derive(Clone, Debug)]
pub struct PoolLimits {
  pub blank_target: usize,
  pub max_per_worker: usize,
  /// Requests one isolate serves at once.
  pub max_per_isolate: usize,
  pub max_isolates: usize,
  pub max_idle_heap: usize,
  pub idle_timeout: Duration,
  /// How long `acquire` waits for room before it gives up.
  pub max_queue: Duration,
}

/// How long an isolate stays idle before its garbage is collected and
/// V8's spare pages given back (~5% of an idle hello-world isolate's
/// memory; ~2 ms of the thread each), which is done only when the thread
/// has served nothing for a quarter of this.
const COMPACT_AFTER: Duration = Duration::from_secs(1);

/// How often each executor thread asks the allocator to give freed memory
/// back.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// The global allocator's way to give this thread's free pages back, set
/// by the program that chose it (the `edge` binary: mimalloc's collect).
static RELEASE_FREED: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets what [`give_back_freed_memory`] calls for the global allocator
/// (once; each executor thread calls it for its own heap).
pub fn set_release_freed(release: fn()) {
  let _ = RELEASE_FREED.set(release);
}

/// Returns the allocators' free pages to the system, so that the RSS a
/// burst of requests or connections took goes back down: glibc's (V8 and
/// C libraries; measured 20 to 860 us a call) and the global allocator's
/// for this thread (connections are served, and their buffers freed, on
/// the executor threads).
fn give_back_freed_memory() {
  #[cfg(all(target_os = "linux", target_env = "gnu"))]
  // SAFETY: malloc_trim only walks the allocator's own free lists.
  unsafe {
    libc::malloc_trim(0);
  }
  if let Some(release) = RELEASE_FREED.get() {
    release();
  }
}

pub struct Pool {
  config: IsolateConfig,
  log: Rc<dyn LogSink>,
  limits: PoolLimits,
  stats: Arc<Stats>,
  /// This thread's CPU deadline (module evaluation runs under the worker's
  /// CPU limit too).
  deadline: Arc<CpuDeadline>,
  blank: RefCell<Vec<Isolate>>,
  refilling: Cell<bool>,
  /// Isolates taken or given back on this thread so far (a change between
  /// two looks means the thread was not quiet).
  activity: Cell<u64>,
  capacity: Capacity,
  idle: RefCell<IdleSet<Rc<Host>>>,
  /// Hosts serving requests and open to more, by worker.
  busy: RefCell<HashMap<WorkerId, Vec<Rc<Host>>>>,
  /// Hosts whose requests have crypto work on the blocking pool, and the
  /// pool's CPU time already charged.
  offthread_hosts: RefCell<Vec<std::rc::Weak<Host>>>,
  offthread_seen: Cell<Duration>,
  /// TLS handshakes may warm this many isolates a second on this thread.
  prewarms: RefCell<edge_core::bucket::TokenBucket>,
}

/// Isolates warmed for TLS handshakes, per thread per second (and a
/// burst of as many).
const PREWARMS_PER_S: u64 = 8;

/// A TLS handshake warms a worker that served a request this recently
/// (on any thread; its isolate here may have gone idle and been dropped).
const PREWARM_RECENT_S: u64 = 3600;

impl Pool {
  pub fn new(
    config: IsolateConfig,
    log: Rc<dyn LogSink>,
    limits: PoolLimits,
    stats: Arc<Stats>,
    deadline: Arc<CpuDeadline>,
  ) -> Rc<Self> {
    let pool = Rc::new(Self {
      capacity: Capacity::new(limits.max_isolates, limits.max_per_worker, stats.clone()),
      config,
      log,
      limits,
      stats,
      deadline,
      blank: RefCell::new(Vec::new()),
      refilling: Cell::new(false),
      activity: Cell::new(0),
      idle: RefCell::new(IdleSet::default()),
      busy: RefCell::new(HashMap::new()),
      offthread_hosts: RefCell::new(Vec::new()),
      offthread_seen: Cell::new(Duration::ZERO),
      prewarms: RefCell::new(edge_core::bucket::TokenBucket::new(
        PREWARMS_PER_S,
        std::time::Instant::now(),
      )),
    });
    pool.spawn_sweepers();
    pool
  }

  /// Puts `member` in an isolate of `worker`: one already busy with room,
  /// an idle one (warm), or a blank one bound now (cold, reported true);
  /// else waits for room, at most `max_queue` (then
  /// [`RequestError::Busy`]: never an unbounded queue).
  pub async fn join(self: &Rc<Self>, worker: &Arc<Worker>, member: Rc<Member>) -> Result<(Ticket, bool), RequestError> {
    self.activity.set(self.activity.get() + 1);
    let mut until = None;
    loop {
      if let Some(host) = self.open_host(worker) {
        return Ok((self.admit(&host, member), false));
      }
      if let Some(host) = self.take_idle(worker) {
        self.stats.warm_starts.inc();
        return Ok((self.admit_first(&host, member), false));
      }
      let until = *until.get_or_insert_with(|| tokio::time::Instant::now() + self.limits.max_queue);
      match self.reserve_or_wait(worker, until).await {
        Some(true) => break,
        Some(false) => {}
        None => {
          self.stats.queue_timeouts.inc();
          return Err(self.busy(worker));
        }
      }
    }
    self.stats.cold_starts.inc();
    worker.stats.cold_starts.inc();
    let iso = self.bind_new(worker).await?;
    let host = Host::new(self, worker, iso, self.deadline.clone());
    Ok((self.admit_first(&host, member), true))
  }

  /// Room for one more isolate of `worker`: `Some(true)` granted (and
  /// counted); `Some(false)` after waiting for something to be freed
  /// (look again); `None` when `until` passed first.
  async fn reserve_or_wait(&self, worker: &Worker, until: tokio::time::Instant) -> Option<bool> {
    let waited = match self.capacity.reserve(worker, || self.evict_lru()) {
      Reserve::Granted => return Some(true),
      Reserve::WorkerFull(freed) => tokio::time::timeout_at(until, freed.notified()).await,
      Reserve::ThreadFull => tokio::time::timeout_at(until, self.capacity.wait_for_room()).await,
    };
    waited.is_ok().then_some(false)
  }

  fn busy(&self, worker: &Worker) -> RequestError {
    RequestError::Busy {
      worker: worker.name.to_string(),
      waited: self.limits.max_queue,
    }
  }

  /// The first request of a host that was not busy: called at once; the
  /// host is busy (open to more) only if the request is still in it.
  fn admit_first(&self, host: &Rc<Host>, member: Rc<Member>) -> Ticket {
    let ticket = self.admit(host, member);
    if host.load() > 0 && host.is_open() {
      self
        .busy
        .borrow_mut()
        .entry(host.worker.id)
        .or_default()
        .push(host.clone());
    }
    ticket
  }

  fn admit(&self, host: &Rc<Host>, member: Rc<Member>) -> Ticket {
    self.stats.in_flight.add(1);
    host.admit(member.clone());
    Ticket {
      host: host.clone(),
      member,
    }
  }

  /// The least loaded busy isolate of `worker` with room for one more.
  fn open_host(&self, worker: &Worker) -> Option<Rc<Host>> {
    let busy = self.busy.borrow();
    busy
      .get(&worker.id)?
      .iter()
      .filter(|h| h.is_open() && h.load() < self.limits.max_per_isolate)
      .min_by_key(|h| h.load())
      .cloned()
  }

  /// A request left `host` (answered, failed or moved).
  fn left(&self, host: &Host) {
    self.stats.in_flight.add(-1);
    self.activity.set(self.activity.get() + 1);
    // A request waiting for room may take its place.
    self.capacity.idled(&host.worker);
  }

  /// Charges the blocking pool's CPU time since the last charge, in equal
  /// shares, to the requests (of every host on this thread) that have
  /// crypto work running there; `host` has some. Called before a turn
  /// that may see such work end (so it is charged while still in flight)
  /// and every few milliseconds while it runs.
  fn charge_offthread(&self, host: &Rc<Host>) {
    {
      let mut hosts = self.offthread_hosts.borrow_mut();
      if !hosts.iter().any(|h| std::ptr::eq(h.as_ptr(), Rc::as_ptr(host))) {
        hosts.push(Rc::downgrade(host));
      }
    }
    let total = self.deadline.blocking.total();
    let delta = total.saturating_sub(self.offthread_seen.replace(total));
    // The hosts that still have such work, with its requests (one look).
    let mut found = Vec::new();
    self.offthread_hosts.borrow_mut().retain(|h| {
      let Some(h) = h.upgrade() else { return false };
      let ids = h.offthread_requests();
      let keep = !ids.is_empty();
      if keep {
        found.push((h, ids));
      }
      keep
    });
    let n: usize = found.iter().map(|(_, ids)| ids.len()).sum();
    if delta.is_zero() || n == 0 {
      return;
    }
    let share = delta / n as u32;
    for (h, ids) in found {
      h.charge_offthread(&ids, share);
    }
  }

  /// `host` takes no new requests (stopped for a limit, lost).
  fn host_closed(&self, host: &Host) {
    self.unbusy(host);
  }

  /// The worker's (empty) list stays until it has no isolate on the
  /// thread: no allocation per busy spell.
  fn unbusy(&self, host: &Host) {
    if let Some(list) = self.busy.borrow_mut().get_mut(&host.worker.id) {
      list.retain(|h| !std::ptr::eq(&**h, host));
    }
  }

  /// Makes sure `worker` has an isolate on this thread (a deploy's check):
  /// binds one and leaves it idle if it has none. Waits for room as
  /// [`Pool::join`] does.
  pub async fn prepare(self: &Rc<Self>, worker: &Arc<Worker>, keep: bool) -> Result<(), RequestError> {
    let until = tokio::time::Instant::now() + self.limits.max_queue;
    loop {
      if self.capacity.live_of(worker) > 0 {
        return Ok(());
      }
      match self.reserve_or_wait(worker, until).await {
        Some(true) => break,
        Some(false) => {}
        None => return Err(self.busy(worker)),
      }
    }
    let iso = self.bind_new(worker).await?;
    if !keep {
      // Only checked: the pool is as it was.
      drop(iso);
      self.drop_isolate_of(worker);
      return Ok(());
    }
    let host = Host::new(self, worker, iso, self.deadline.clone());
    self.host_idle(&host);
    Ok(())
  }

  /// Starts binding an isolate for `worker` in the background if it has
  /// none on this thread (a TLS ClientHello named its host). Returns
  /// whether it did. Only for a worker that served a request within
  /// [`PREWARM_RECENT_S`] (a handshake alone makes no isolate), at most
  /// [`PREWARMS_PER_S`] a second, and only into free room: it never
  /// evicts an idle isolate.
  pub fn prewarm(self: &Rc<Self>, worker: &Arc<Worker>) -> bool {
    if self.capacity.live_of(worker) > 0 {
      return false;
    }
    let last = worker.stats.abuse.last_request();
    let now = std::time::Instant::now();
    let recent = last != 0 && edge_core::abuse::second_at(now).saturating_sub(last) <= PREWARM_RECENT_S;
    if !recent || !self.prewarms.borrow_mut().try_take(now, 1) {
      return false;
    }
    if !matches!(self.capacity.reserve(worker, || false), Reserve::Granted) {
      return false;
    }
    self.stats.sni_warmups.inc();
    let (pool, worker) = (self.clone(), worker.clone());
    tokio::task::spawn_local(async move {
      // Ready before the request arrives: it becomes idle, then warm.
      if let Ok(iso) = pool.bind_new(&worker).await {
        let host = Host::new(&pool, &worker, iso, pool.deadline.clone());
        pool.host_idle(&host);
      }
    });
    true
  }

  fn take_idle(&self, worker: &Arc<Worker>) -> Option<Rc<Host>> {
    let idle = self.idle.borrow_mut().pop(worker)?;
    worker.stats.idle_isolates.add(-1);
    idle.iso.set_heap(idle.heap);
    Some(idle.iso)
  }

  /// Binds a blank isolate to `worker`, whose room was reserved.
  async fn bind_new(self: &Rc<Self>, worker: &Arc<Worker>) -> Result<Isolate, RequestError> {
    let mut iso = match self.take_blank(worker) {
      Ok(iso) => iso,
      Err(e) => {
        self.drop_isolate_of(worker);
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
      let meter = Meter {
        cpu: &mut cpu,
        deadline: &self.deadline,
        stopper: &stopper,
        memory_limit: worker.limits.memory_bytes,
        wall: worker.limits.wall,
        wall_until: tokio::time::Instant::now() + worker.limits.wall,
        phase: Phase::Startup,
      };
      metered::run(meter, |cx| bind.as_mut().poll(cx)).await
    };
    let failed = match outcome {
      Metered::Done(Ok(())) => return Ok(iso),
      Metered::Limit(hit) => RequestError::Limit {
        worker: worker.name.to_string(),
        hit,
      },
      Metered::Done(Err(error)) => RequestError::Startup {
        worker: worker.name.to_string(),
        error,
      },
    };
    // Not reusable: it may hold half of the worker's state.
    drop(iso);
    self.drop_isolate_of(worker);
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

  /// `host` has no request left: it waits idle for the next, or goes if
  /// it may not serve again.
  fn host_idle(self: &Rc<Self>, host: &Rc<Host>) {
    self.unbusy(host);
    self.activity.set(self.activity.get() + 1);
    self.schedule_refill();
    let worker = host.worker.clone();
    // The look at its memory may find the isolate over its budget (Wasm
    // memory grown in a request too short for the watchdog to look).
    let heap = if worker.is_retired() || !host.is_open() {
      None
    } else {
      host.isolate().memory_if_reusable()
    };
    worker
      .stats
      .heap_bytes
      .add(heap.unwrap_or(0) as i64 - host.heap() as i64);
    match heap {
      Some(heap) => {
        self.idle.borrow_mut().push(&worker, host.clone(), heap);
        worker.stats.idle_isolates.add(1);
        self.capacity.idled(&worker);
      }
      None => self.drop_isolate_of(&worker),
    }
    while self.idle.borrow().heap() > self.limits.max_idle_heap && self.evict_lru() {}
  }

  /// Drops the least recently used idle isolate; false if none is idle.
  fn evict_lru(&self) -> bool {
    let oldest = self.idle.borrow().oldest();
    match oldest {
      Some((seq, id, _)) => {
        self.evict(seq, id);
        true
      }
      None => false,
    }
  }

  fn evict(&self, seq: u64, id: WorkerId) {
    let Some((worker, idle)) = self.idle.borrow_mut().remove(seq, id) else {
      return;
    };
    let ws = &worker.stats;
    ws.idle_isolates.add(-1);
    ws.heap_bytes.add(-(idle.heap as i64));
    drop(idle);
    self.drop_isolate_of(&worker);
    // Counted once the isolate is gone, so whoever sees the count sees it
    // gone from the gauges too.
    self.stats.evictions.inc();
  }

  /// One isolate of `worker` is gone: its room is given back, and its idle
  /// slot too when it was the worker's last on this thread.
  fn drop_isolate_of(&self, worker: &Worker) {
    self.capacity.release(worker);
    if self.capacity.live_of(worker) == 0 {
      self.idle.borrow_mut().forget(worker.id);
      self.busy.borrow_mut().remove(&worker.id);
    }
  }

  fn spawn_sweepers(self: &Rc<Self>) {
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
      let mut trimmed = Instant::now();
      loop {
        tokio::time::sleep(COMPACT_AFTER / 4).await;
        let Some(pool) = pool.upgrade() else { return };
        // One isolate per scheduler turn, while the thread is quiet: a
        // request meanwhile waits for one collection at most.
        let quiet = |p: &Pool| p.activity.get() == seen;
        while quiet(&pool) && pool.compact_one_idle() {
          tokio::task::yield_now().await;
        }
        if trimmed.elapsed() >= TRIM_EVERY {
          trimmed = Instant::now();
          give_back_freed_memory();
        }
        seen = pool.activity.get();
      }
    });
  }

  /// Collects the garbage of the oldest idle isolate idle for longer than
  /// [`COMPACT_AFTER`] and not collected since; false if there is none.
  /// One found over its budget even so is dropped.
  fn compact_one_idle(&self) -> bool {
    let Some(before) = Instant::now().checked_sub(COMPACT_AFTER) else {
      return false;
    };
    let compacted = self.idle.borrow_mut().with_oldest(
      before,
      |idle| !idle.compacted,
      |worker, idle| {
        let heap = idle.iso.isolate().compact();
        idle.compacted = true;
        worker.stats.heap_bytes.add(heap as i64 - idle.heap as i64);
        idle.heap = heap;
        !idle.iso.isolate().is_reusable()
      },
    );
    match compacted {
      None => false,
      Some((seq, id, over_budget)) => {
        if over_budget {
          self.evict(seq, id);
        }
        true
      }
    }
  }

  fn evict_idle_older_than(&self, age: Duration) {
    loop {
      let oldest = self.idle.borrow().oldest();
      match oldest {
        Some((seq, id, since)) if since.elapsed() >= age => self.evict(seq, id),
        _ => return,
      }
    }
  }

  /// Drops the idle isolates of a retired worker version (busy ones go
  /// when their requests finish).
  pub fn retire(&self, worker: &Arc<Worker>) {
    let seqs = self.idle.borrow().seqs_of(worker);
    for seq in seqs {
      self.evict(seq, worker.id);
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

  /// Drops every isolate not serving a request (at thread exit), newest
  /// first; busy ones go with their drivers.
  pub fn clear(&self) {
    self.busy.borrow_mut().clear();
    let idle = self.idle.borrow_mut().drain();
    let mut all: Vec<Isolate> = self.blank.borrow_mut().drain(..).collect();
    for host in idle.into_iter().rev() {
      drop(host);
    }
    while let Some(iso) = all.pop() {
      drop(iso);
    }
  }
}
