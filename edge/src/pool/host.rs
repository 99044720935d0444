//! A bound isolate serving several requests of its worker at once,
//! interleaved at their awaits (as on Workers and Deno), and the task that
//! drives it: it calls each request's handler, turns the isolate's event
//! loop, hands each request its response head, and keeps streamed bodies
//! and `waitUntil` work going after it.
//!
//! CPU: a handler's call is an entry for one request, timed exactly. A
//! turn of the event loop may run code of any request in the isolate: it is
//! split among them by sampling (`js_api::shares`), and charged whole to
//! the request when only one is in the isolate. A request out of CPU gets
//! its limit at once, also between turns.
//!
//! When an isolate must stop (see ARCHITECTURE.md): a CPU limit stops only
//! the code of the request that hit it; the isolate then takes no new
//! requests and ends when the ones in it have. A memory limit or a broken
//! event loop loses the isolate: every request in it fails. Requests whose
//! handler was not called yet move to another isolate.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use edge_core::request_id::RequestId;
use js_api::v8;
use js_api::{
  CallState, Isolate, IsolateStopper, JsApiError, JsBody, JsRequest, JsResponse, PendingCall, StreamShared,
};
use tokio::time::{Instant, Sleep};

use super::Pool;
use crate::limits::{CpuDeadline, CpuMeter, LimitHit, Phase};
use crate::worker::Worker;

/// How far past the largest budget in the isolate a shared turn runs
/// before the watchdog stops it whoever runs.
const BACKSTOP_MARGIN: Duration = Duration::from_millis(10);

/// Handler calls made in one go before the driver lets the thread's other
/// tasks run.
const START_SLICE: Duration = Duration::from_micros(500);

/// A request's answer, as its task gets it.
pub enum Head {
  Response {
    res: JsResponse,
    subrequests_hit: bool,
    /// CPU the request used up to its response head.
    cpu: Duration,
  },
  Failed {
    failure: Failure,
    cpu: Duration,
  },
  /// The isolate was stopped before the handler ran: run it elsewhere.
  Moved(JsRequest),
}

pub enum Failure {
  Limit(LimitHit),
  Worker(JsApiError),
  /// The isolate was stopped by another request (what stopped it).
  Lost(&'static str),
}

/// One request in a host.
pub struct Member {
  pub request_id: RequestId,
  wall_until: Instant,
  inner: RefCell<MemberState>,
}

struct MemberState {
  /// The isolate's number for the request (0 until its handler is called).
  id: u32,
  cpu: CpuMeter,
  phase: Stage,
  head: Option<Head>,
  waker: Option<Waker>,
  /// Its task went away (the client left) before the head.
  cancelled: bool,
}

// One per request, inside its Rc'd Member: boxing the request would cost
// an allocation per request for no space saved.
#[allow(clippy::large_enum_variant)]
enum Stage {
  Queued(Option<JsRequest>),
  Waiting(PendingCall),
  /// Answered; a streamed body or waitUntil work still runs.
  After {
    body: Option<Rc<StreamShared>>,
    wait: Option<v8::Global<v8::Promise>>,
  },
}

impl Member {
  pub fn new(req: JsRequest, request_id: RequestId, cpu_limit: Duration, wall_until: Instant) -> Rc<Self> {
    Rc::new(Self {
      request_id,
      wall_until,
      inner: RefCell::new(MemberState {
        id: 0,
        cpu: CpuMeter::new(cpu_limit),
        phase: Stage::Queued(Some(req)),
        head: None,
        waker: None,
        cancelled: false,
      }),
    })
  }

  fn give(&self, head: Head) {
    let mut m = self.inner.borrow_mut();
    m.head = Some(head);
    if let Some(w) = m.waker.take() {
      w.wake();
    }
  }

  fn fail(&self, failure: Failure) {
    let cpu = self.inner.borrow().cpu.used();
    self.give(Head::Failed { failure, cpu });
  }
}

/// A request's hold on its host: resolves to the request's head; dropped
/// before that (the client left), the request is given up.
pub struct Ticket {
  pub host: Rc<Host>,
  pub member: Rc<Member>,
}

impl Future for Ticket {
  type Output = Head;
  fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Head> {
    let mut m = self.member.inner.borrow_mut();
    match m.head.take() {
      Some(h) => Poll::Ready(h),
      None => {
        if !m.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
          m.waker = Some(cx.waker().clone());
        }
        Poll::Pending
      }
    }
  }
}

impl Drop for Ticket {
  fn drop(&mut self) {
    let mut m = self.member.inner.borrow_mut();
    if m.head.is_none() && !matches!(m.phase, Stage::After { .. }) {
      m.cancelled = true;
      drop(m);
      self.host.wake();
    }
  }
}

pub struct Host {
  pub worker: Arc<Worker>,
  iso: RefCell<Isolate>,
  stopper: Arc<IsolateStopper>,
  deadline: Arc<CpuDeadline>,
  pool: Weak<Pool>,
  st: RefCell<State>,
}

#[derive(Default)]
struct State {
  queued: VecDeque<Rc<Member>>,
  members: rustc_hash::FxHashMap<u32, Rc<Member>>,
  driving: bool,
  waker: Option<Waker>,
  turn: u64,
  settled: Vec<u32>,
  /// Why it takes no new requests, once it is stopped.
  condemned: Option<&'static str>,
  /// Heap the isolate held when it last went busy (its worker's gauge
  /// holds this).
  pub heap: usize,
}

impl Host {
  pub(super) fn new(pool: &Rc<Pool>, worker: &Arc<Worker>, iso: Isolate, deadline: Arc<CpuDeadline>) -> Rc<Self> {
    Rc::new(Self {
      worker: worker.clone(),
      stopper: iso.stopper().clone(),
      iso: RefCell::new(iso),
      deadline,
      pool: Rc::downgrade(pool),
      st: RefCell::default(),
    })
  }

  /// Requests in the isolate (called or waiting to be).
  pub fn load(&self) -> usize {
    let st = self.st.borrow();
    st.queued.len() + st.members.len()
  }

  /// Whether it may take another request.
  pub fn is_open(&self) -> bool {
    self.st.borrow().condemned.is_none() && !self.stopper.is_condemned()
  }

  pub(super) fn set_heap(&self, heap: usize) {
    self.st.borrow_mut().heap = heap;
  }

  pub(super) fn heap(&self) -> usize {
    self.st.borrow().heap
  }

  pub(super) fn isolate(&self) -> std::cell::RefMut<'_, Isolate> {
    self.iso.borrow_mut()
  }

  /// Takes `member` in; its handler is called by the driver.
  pub(super) fn admit(self: &Rc<Self>, member: Rc<Member>) {
    let driving = {
      let mut st = self.st.borrow_mut();
      if st.driving {
        st.queued.push_back(member.clone());
      }
      st.driving
    };
    if driving {
      return self.wake();
    }
    // No driver: the handler is called here, in the request's own task.
    // One that answers at once with a whole body (most do) needs no
    // driver task at all.
    self.start(&member);
    self.deliver_settled();
    if !self.is_open() {
      self.move_queued();
    }
    let idle = {
      let st = self.st.borrow();
      st.members.is_empty() && st.queued.is_empty()
    };
    if idle {
      if let Some(pool) = self.pool.upgrade() {
        pool.host_idle(self);
      }
      return;
    }
    self.st.borrow_mut().driving = true;
    tokio::task::spawn_local(Driver {
      host: self.clone(),
      sleep: None,
      tick: None,
    });
  }

  fn wake(&self) {
    if let Some(w) = self.st.borrow().waker.as_ref() {
      w.wake_by_ref();
    }
  }

  fn condemn(&self, why: &'static str) {
    let first = self.st.borrow().condemned.is_none();
    self.st.borrow_mut().condemned.get_or_insert(why);
    self.stopper.condemn();
    if first {
      if let Some(pool) = self.pool.upgrade() {
        pool.host_closed(self);
      }
    }
  }

  /// Calls the handler of a queued request: one entry, timed for it alone.
  fn start(&self, m: &Rc<Member>) {
    let req = {
      let mut inner = m.inner.borrow_mut();
      if inner.cancelled {
        // Given up before its handler ran.
        return self.left_one();
      }
      match &mut inner.phase {
        Stage::Queued(req) => req.take(),
        _ => None,
      }
    };
    let Some(req) = req else { return };
    let mut cpu = m.inner.borrow().cpu;
    let (id, r) = cpu.measure(&self.deadline, &self.stopper, || {
      self.iso.borrow_mut().call(req, m.request_id.0)
    });
    {
      let mut inner = m.inner.borrow_mut();
      inner.cpu = cpu;
      inner.id = id;
    }
    self.st.borrow_mut().members.insert(id, m.clone());
    self.iso.borrow().shares().join(id, cpu.left());
    if self.stopper.memory.exceeded() {
      return self.lose_all(Some(id), "memory limit");
    }
    if cpu.exceeded() {
      // Stopped inside its own call: no other request's code was on the
      // stack or in the microtask queue, so the others go on.
      self.iso.borrow_mut().cancel_termination();
      self.end(id, Some(Failure::Limit(cpu.hit(Phase::Handler))), true);
      return self.condemn("CPU limit");
    }
    match r {
      Ok(CallState::Ready(res)) => self.answer(id, res),
      Ok(CallState::Pending(p)) => m.inner.borrow_mut().phase = Stage::Waiting(p),
      Err(JsApiError::Terminated) => {
        self.iso.borrow_mut().cancel_termination();
        self.end(id, Some(Failure::Worker(JsApiError::Terminated)), true);
        self.condemn("termination");
      }
      Err(e) => self.end(id, Some(Failure::Worker(e)), false),
    }
  }

  /// Hands request `id` its response; it stays while its body streams or
  /// its waitUntil work runs.
  fn answer(&self, id: u32, mut res: JsResponse) {
    let Some(m) = self.st.borrow().members.get(&id).cloned() else {
      return;
    };
    let subrequests_hit = self.iso.borrow_mut().take_subrequest_limit_hit(id);
    let body = match &res.body {
      JsBody::Stream(s) => Some(s.shared()),
      _ => None,
    };
    let wait = res.wait_until.take();
    let cpu = m.inner.borrow().cpu.used();
    let after = body.is_some() || wait.is_some();
    if after {
      m.inner.borrow_mut().phase = Stage::After { body, wait };
    }
    m.give(Head::Response {
      res,
      subrequests_hit,
      cpu,
    });
    if !after {
      self.end(id, None, false);
    }
  }

  /// Request `id` leaves the isolate, told `failure` if it has not had its
  /// head yet. `tell_js`: the bootstrap still holds its state.
  fn end(&self, id: u32, failure: Option<Failure>, tell_js: bool) {
    let Some(m) = self.st.borrow_mut().members.remove(&id) else {
      return;
    };
    if let Some(f) = failure {
      m.fail(f);
    }
    if let Stage::After { body: Some(b), .. } = &m.inner.borrow().phase {
      b.abandon();
    }
    self.iso.borrow_mut().finish_request(id, tell_js);
    self.left_one();
  }

  fn left_one(&self) {
    if let Some(pool) = self.pool.upgrade() {
      pool.left(self);
    }
  }

  /// The isolate is lost: every request in it fails (`culprit` with the
  /// memory limit), queued ones move elsewhere.
  fn lose_all(&self, culprit: Option<u32>, why: &'static str) {
    self.condemn(why);
    let memory = self.stopper.memory.exceeded();
    let ids: Vec<u32> = self.st.borrow().members.keys().copied().collect();
    let hit = || {
      let m = &self.stopper.memory;
      LimitHit::memory(self.worker.limits.memory_bytes, Some(m.reached()), Phase::Handler)
    };
    for id in ids {
      let failure = if memory && (culprit == Some(id) || culprit.is_none()) {
        Failure::Limit(hit())
      } else {
        Failure::Lost(why)
      };
      self.end(id, Some(failure), false);
    }
    self.move_queued();
  }

  fn move_queued(&self) {
    let queued: Vec<_> = self.st.borrow_mut().queued.drain(..).collect();
    for m in queued {
      let req = match &mut m.inner.borrow_mut().phase {
        Stage::Queued(req) => req.take(),
        _ => None,
      };
      if let Some(req) = req {
        m.give(Head::Moved(req));
      }
      self.left_one();
    }
  }

  /// One turn of the event loop, for whatever of its requests is ready.
  fn turn(&self, cx: &mut Context<'_>) {
    let (turn, backstop, alone) = {
      let mut st = self.st.borrow_mut();
      st.turn += 1;
      let backstop = st
        .members
        .values()
        .map(|m| m.inner.borrow().cpu.left())
        .max()
        .unwrap_or_default()
        // Samples stop a request at its limit; this only stops what they
        // cannot (no sample landed).
        + BACKSTOP_MARGIN;
      let alone = (st.members.len() == 1).then(|| *st.members.keys().next().expect("one"));
      (st.turn, backstop, alone)
    };
    for m in self.st.borrow().members.values() {
      if let Stage::After { body: Some(b), .. } = &m.inner.borrow().phase {
        b.set_drive_waker(cx.waker());
      }
    }
    let now = std::time::Instant::now();
    let shares = self.iso.borrow().shares().clone();
    let lone = alone.and_then(|id| self.st.borrow().members.get(&id).cloned());
    let (r, fired) = match &lone {
      // One request in the isolate: the turn is its own, timed exactly
      // (code an ended request left is charged to it too).
      Some(m) => {
        let mut cpu = m.inner.borrow().cpu;
        let r = cpu.measure(&self.deadline, &self.stopper, || self.iso.borrow_mut().turn(cx));
        m.inner.borrow_mut().cpu = cpu;
        (r, false)
      }
      None => {
        shares.begin_turn(turn, js_api::shares::thread_cpu());
        let (r, fired) = self
          .deadline
          .run_shared(&self.stopper, backstop, turn, now, || self.iso.borrow_mut().turn(cx));
        shares.end_turn(js_api::shares::thread_cpu());
        let st = self.st.borrow();
        shares.drain_charges(|id, d| {
          if let Some(m) = st.members.get(&id) {
            m.inner.borrow_mut().cpu.charge(d);
          }
        });
        (r, fired)
      }
    };
    let stopped = shares.take_stopped();
    if self.stopper.memory.exceeded() {
      return self.lose_all(alone, "memory limit");
    }
    let lone_over = lone.as_ref().is_some_and(|m| m.inner.borrow().cpu.exceeded());
    let terminated = fired || stopped.is_some() || lone_over || matches!(r, Poll::Ready(Err(JsApiError::Terminated)));
    if terminated {
      self.iso.borrow_mut().cancel_termination();
      // The loop stopped mid-turn, maybe before it asked to be woken for
      // what is pending: turn again soon.
      cx.waker().wake_by_ref();
      self.condemn("CPU limit");
      if stopped.is_some_and(|id| !self.st.borrow().members.contains_key(&id)) {
        tracing::warn!(
          worker = &*self.worker.name,
          "code of an ended request ran out of CPU and was stopped"
        );
      }
    } else if let Poll::Ready(Err(e)) = &r {
      // The loop itself failed: nothing in it can be trusted.
      tracing::warn!(worker = &*self.worker.name, "event loop failed: {e}");
      return self.lose_all(None, "event loop failure");
    }
    self.end_over_limit();
    self.deliver_settled();
    self.after_turn(r.is_ready() && !terminated);
  }

  /// Ends the requests out of CPU, whether stopped in a turn or charged
  /// past their limit (samples, off-thread work).
  fn end_over_limit(&self) {
    let over: Vec<u32> = {
      let st = self.st.borrow();
      st.members
        .iter()
        .filter(|(_, m)| m.inner.borrow().cpu.exceeded())
        .map(|(id, _)| *id)
        .collect()
    };
    for id in over {
      self.limit_hit(id);
    }
  }

  /// Whether a request here has crypto work running on the blocking pool.
  pub(super) fn has_offthread(&self) -> bool {
    self.iso.borrow().has_offthread()
  }

  /// Its requests with crypto work on the blocking pool now.
  pub(super) fn offthread_requests(&self) -> Vec<u32> {
    let mut ids = Vec::new();
    self.iso.borrow_mut().offthread_requests(&mut ids);
    ids
  }

  /// Charges `share` of the blocking pool's time to each of `ids`.
  pub(super) fn charge_offthread(&self, ids: &[u32], share: Duration) {
    {
      let st = self.st.borrow();
      for id in ids {
        if let Some(m) = st.members.get(id) {
          m.inner.borrow_mut().cpu.charge(share);
        }
      }
    }
    self.end_over_limit();
    self.wake();
  }

  fn limit_hit(&self, id: u32) {
    let Some(m) = self.st.borrow().members.get(&id).cloned() else {
      return;
    };
    let (hit, after) = {
      let inner = m.inner.borrow();
      let after = matches!(inner.phase, Stage::After { .. });
      let phase = if after { Phase::AfterResponse } else { Phase::Handler };
      (inner.cpu.hit(phase), after)
    };
    self.worker.stats.limit_hit(hit.kind);
    if after {
      tracing::warn!(worker = &*self.worker.name, request_id = %m.request_id, "after the response: {hit}");
      self.end(id, None, true);
    } else {
      self.end(id, Some(Failure::Limit(hit)), true);
    }
  }

  /// Heads of the requests whose handler settled.
  fn deliver_settled(&self) {
    let mut settled = std::mem::take(&mut self.st.borrow_mut().settled);
    self.iso.borrow_mut().drain_settled(&mut settled);
    for id in settled.drain(..) {
      let Some(m) = self.st.borrow().members.get(&id).cloned() else {
        continue;
      };
      let r = match &m.inner.borrow().phase {
        Stage::Waiting(p) => self.iso.borrow_mut().response(p),
        _ => None,
      };
      match r {
        None => {}
        Some(Ok(res)) => self.answer(id, res),
        Some(Err(e)) => self.end(id, Some(Failure::Worker(e)), false),
      }
    }
    self.st.borrow_mut().settled = settled;
  }

  /// Ends the requests done after their answer; with the loop `idle`,
  /// what still waits can never settle.
  fn after_turn(&self, idle: bool) {
    let members: Vec<(u32, Rc<Member>)> = self.st.borrow().members.iter().map(|(k, v)| (*k, v.clone())).collect();
    for (id, m) in members {
      let never_settles = match &m.inner.borrow().phase {
        Stage::After { body, wait } => {
          let body_done = body.as_ref().is_none_or(|b| b.is_finished());
          let wait_done = idle || wait.as_ref().is_none_or(|p| self.iso.borrow_mut().is_settled(p));
          if !(body_done && wait_done) {
            continue;
          }
          false
        }
        Stage::Waiting(_) if idle => true,
        _ => continue,
      };
      if never_settles {
        let failure = match self.st.borrow().condemned {
          Some(why) => Failure::Lost(why),
          None => Failure::Worker(JsApiError::NeverSettles),
        };
        self.end(id, Some(failure), true);
      } else {
        self.end(id, None, true);
      }
    }
  }

  /// Requests past their wall time, or whose client left.
  fn check_walls(&self, now: Instant) -> Option<Instant> {
    let mut next: Option<Instant> = None;
    let queued: Vec<Rc<Member>> = self.st.borrow().queued.iter().cloned().collect();
    for m in queued {
      let (cancelled, over) = {
        let inner = m.inner.borrow();
        (inner.cancelled, m.wall_until <= now)
      };
      if cancelled || over {
        self.st.borrow_mut().queued.retain(|q| !Rc::ptr_eq(q, &m));
        if over && !cancelled {
          m.fail(Failure::Limit(LimitHit::wall(self.worker.limits.wall, Phase::Handler)));
        }
        self.left_one();
      } else {
        next = Some(next.map_or(m.wall_until, |n| n.min(m.wall_until)));
      }
    }
    let members: Vec<(u32, Rc<Member>)> = self.st.borrow().members.iter().map(|(k, v)| (*k, v.clone())).collect();
    for (id, m) in members {
      let (cancelled, after) = {
        let inner = m.inner.borrow();
        (inner.cancelled, matches!(inner.phase, Stage::After { .. }))
      };
      if cancelled {
        self.end(id, None, true);
      } else if m.wall_until <= now {
        let phase = if after { Phase::AfterResponse } else { Phase::Handler };
        let hit = LimitHit::wall(self.worker.limits.wall, phase);
        if after {
          self.worker.stats.limit_hit(hit.kind);
          tracing::warn!(worker = &*self.worker.name, request_id = %m.request_id, "after the response: {hit}");
          self.end(id, None, true);
        } else {
          self.end(id, Some(Failure::Limit(hit)), true);
        }
      } else {
        next = Some(next.map_or(m.wall_until, |n| n.min(m.wall_until)));
      }
    }
    next
  }
}

/// The task that runs a host's requests while it has any.
struct Driver {
  host: Rc<Host>,
  sleep: Option<Pin<Box<Sleep>>>,
  /// While crypto work of its requests runs off the thread: when to
  /// charge its time next.
  tick: Option<Pin<Box<Sleep>>>,
}

/// How often the blocking pool's time is charged while work runs there.
const OFFTHREAD_TICK: Duration = Duration::from_millis(5);

impl Future for Driver {
  type Output = ();
  fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
    let host = self.host.clone();
    {
      let mut st = host.st.borrow_mut();
      if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        st.waker = Some(cx.waker().clone());
      }
    }
    if !host.is_open() {
      host.move_queued();
    }
    // Handlers first, a slice of them; then one turn of the loop.
    let started = std::time::Instant::now();
    let mut yielded = false;
    loop {
      let next = host.st.borrow_mut().queued.pop_front();
      let Some(m) = next else { break };
      host.start(&m);
      if !host.is_open() {
        host.move_queued();
        break;
      }
      if started.elapsed() >= START_SLICE && !host.st.borrow().queued.is_empty() {
        cx.waker().wake_by_ref();
        yielded = true;
        break;
      }
    }
    host.deliver_settled();
    // Crypto work off the thread is charged while still in flight: the
    // turn may see it end.
    if host.has_offthread() {
      if let Some(pool) = host.pool.upgrade() {
        pool.charge_offthread(&host);
      }
    }
    if !host.st.borrow().members.is_empty() && !yielded {
      host.turn(cx);
    }
    if host.has_offthread() {
      let at = Instant::now() + OFFTHREAD_TICK;
      let tick = self.tick.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
      if tick.as_mut().poll(cx).is_ready() {
        tick.as_mut().reset(at);
        cx.waker().wake_by_ref();
      }
    } else {
      self.tick = None;
    }
    let next_wall = host.check_walls(Instant::now());
    let done = {
      let mut st = host.st.borrow_mut();
      let done = st.members.is_empty() && st.queued.is_empty();
      if done {
        st.driving = false;
        st.waker = None;
      }
      done
    };
    if done {
      if let Some(pool) = host.pool.upgrade() {
        pool.host_idle(&host);
      }
      return Poll::Ready(());
    }
    if let Some(at) = next_wall {
      match &mut self.sleep {
        Some(s) if s.deadline() == at => {}
        Some(s) => s.as_mut().reset(at),
        None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
      }
      if let Some(s) = &mut self.sleep {
        if s.as_mut().poll(cx).is_ready() {
          cx.waker().wake_by_ref();
        }
      }
    }
    Poll::Pending
  }
}
