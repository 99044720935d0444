//! One metered run: isolate work driven under a CPU meter and a wall
//! deadline, with a typed outcome. Binding a worker (its modules'
//! evaluation) goes through [`run`]; requests are metered by their
//! isolate's driver (`pool::host`).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use js_api::IsolateStopper;
use tokio::time::Instant;

use super::{CpuDeadline, CpuMeter, LimitHit, Phase};

/// How a metered run ended.
#[derive(Debug)]
pub enum Metered<T> {
  /// The work finished within its limits.
  Done(T),
  /// A limit stopped it; the isolate is condemned (not reused).
  Limit(LimitHit),
}

/// What a run is metered against.
pub struct Meter<'a> {
  pub cpu: &'a mut CpuMeter,
  pub deadline: &'a CpuDeadline,
  pub stopper: &'a Arc<IsolateStopper>,
  /// The isolate's memory budget, for the hit's figures.
  pub memory_limit: usize,
  /// The wall limit and when it runs out.
  pub wall: Duration,
  pub wall_until: Instant,
  pub phase: Phase,
}

impl Meter<'_> {
  /// The CPU or memory limit the work went over, if any.
  fn hit(&self) -> Option<LimitHit> {
    let memory = &self.stopper.memory;
    if memory.exceeded() {
      return Some(LimitHit::memory(self.memory_limit, Some(memory.reached()), self.phase));
    }
    self.cpu.exceeded().then(|| self.cpu.hit(self.phase))
  }
}

/// Drives `poll` (each call one entry into the isolate) until it is ready,
/// a limit is hit, or the wall deadline passes. The first entry is made
/// before any timer is set, with no waker (work that finishes at once
/// needs neither); if it is pending, `poll` is called again at once with
/// the task's waker.
pub async fn run<T>(m: Meter<'_>, mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> Metered<T> {
  let first = {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    m.cpu.measure(m.deadline, m.stopper, || poll(&mut cx))
  };
  let out = match first {
    Poll::Ready(t) => Some(Some(t)),
    Poll::Pending if m.hit().is_some() => Some(None),
    Poll::Pending => {
      let (cpu, deadline, stopper) = (&mut *m.cpu, m.deadline, m.stopper);
      let drive = std::future::poll_fn(|cx| {
        let r = cpu.measure(deadline, stopper, || poll(cx));
        // Stopped (a termination landed, or the budget is spent between
        // entries): no use waiting for what it awaits.
        if r.is_pending() && (cpu.exceeded() || stopper.memory.exceeded()) {
          return Poll::Ready(None);
        }
        r.map(Some)
      });
      tokio::time::timeout_at(m.wall_until, drive).await.ok()
    }
  };
  let outcome = match (m.hit(), out) {
    (None, Some(Some(t))) => return Metered::Done(t),
    (Some(hit), _) => hit,
    // Stopped early only when a limit was hit; read it as CPU otherwise.
    (None, Some(None)) => m.cpu.hit(m.phase),
    (None, None) => LimitHit::wall(m.wall, m.phase),
  };
  m.stopper.condemn();
  Metered::Limit(outcome)
}
