//! Step 4 of a request: take an isolate for the worker on this thread.
//!
//! Each executor thread has its own pool. A worker's idle isolates are
//! reused (warm); without one, a blank isolate from the ready supply is
//! bound to the worker (cold: only the worker's own modules are evaluated).
//! An isolate runs one request at a time; a worker has at most
//! `max_per_worker` isolates per thread and further requests wait.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use js_api::{Isolate, IsolateConfig, LogSink};
use tokio::sync::Notify;

use crate::error::RequestError;
use crate::worker::Worker;

pub struct Pool {
  config: IsolateConfig,
  log: Rc<dyn LogSink>,
  blank: RefCell<Vec<Isolate>>,
  blank_target: usize,
  refilling: Cell<bool>,
  max_per_worker: usize,
  slots: RefCell<HashMap<*const Worker, Slot>>,
  pub stats: PoolStats,
}

#[derive(Default)]
pub struct PoolStats {
  pub cold_starts: Cell<u64>,
  pub warm_starts: Cell<u64>,
  pub blank_misses: Cell<u64>,
}

struct Slot {
  /// Keeps the key's address alive and unique.
  _worker: Arc<Worker>,
  idle: Vec<Isolate>,
  live: usize,
  freed: Rc<Notify>,
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

  pub fn worker(&self) -> &Arc<Worker> {
    &self.worker
  }
}

impl Drop for Lease {
  fn drop(&mut self) {
    if let Some(iso) = self.isolate.take() {
      self.pool.release(&self.worker, iso);
    }
  }
}

impl Pool {
  pub fn new(config: IsolateConfig, log: Rc<dyn LogSink>, blank_target: usize, max_per_worker: usize) -> Rc<Self> {
    Rc::new(Self {
      config,
      log,
      blank: RefCell::new(Vec::new()),
      blank_target,
      refilling: Cell::new(false),
      max_per_worker,
      slots: RefCell::new(HashMap::new()),
      stats: PoolStats::default(),
    })
  }

  /// An isolate for `worker`: warm if one is idle, else a blank one bound
  /// now, else wait for one to be released.
  pub async fn acquire(self: &Rc<Self>, worker: &Arc<Worker>) -> Result<Lease, RequestError> {
    let key = Arc::as_ptr(worker);
    loop {
      let freed = {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.entry(key).or_insert_with(|| Slot {
          _worker: worker.clone(),
          idle: Vec::new(),
          live: 0,
          freed: Rc::new(Notify::new()),
        });
        if let Some(iso) = slot.idle.pop() {
          self.stats.warm_starts.set(self.stats.warm_starts.get() + 1);
          return Ok(Lease {
            pool: self.clone(),
            worker: worker.clone(),
            isolate: Some(iso),
            cold: false,
          });
        }
        if slot.live < self.max_per_worker {
          slot.live += 1;
          None
        } else {
          Some(slot.freed.clone())
        }
      };
      match freed {
        Some(n) => n.notified().await,
        None => break,
      }
    }
    self.stats.cold_starts.set(self.stats.cold_starts.get() + 1);
    let iso = match self.take_blank() {
      Ok(iso) => iso,
      Err(e) => {
        self.forget(worker);
        return Err(RequestError::Internal(e.to_string()));
      }
    };
    let mut lease = Lease {
      pool: self.clone(),
      worker: worker.clone(),
      isolate: Some(iso),
      cold: true,
    };
    let bound = lease
      .isolate()
      .bind(worker.code.clone(), &worker.net, self.log.clone())
      .await;
    if let Err(error) = bound {
      // Not reusable: it may hold half of the worker's state.
      lease.isolate().poison();
      return Err(RequestError::Startup {
        worker: worker.name.to_string(),
        error,
      });
    }
    Ok(lease)
  }

  fn take_blank(self: &Rc<Self>) -> Result<Isolate, js_api::JsApiError> {
    let iso = self.blank.borrow_mut().pop();
    self.schedule_refill();
    match iso {
      Some(iso) => Ok(iso),
      None => {
        self.stats.blank_misses.set(self.stats.blank_misses.get() + 1);
        Isolate::new(&self.config)
      }
    }
  }

  /// Tops the blank supply up in the background, one isolate per turn of
  /// the thread's scheduler so requests are served in between.
  pub fn schedule_refill(self: &Rc<Self>) {
    if self.refilling.get() || self.blank.borrow().len() >= self.blank_target {
      return;
    }
    self.refilling.set(true);
    let pool = self.clone();
    tokio::task::spawn_local(async move {
      while pool.blank.borrow().len() < pool.blank_target {
        tokio::task::yield_now().await;
        match Isolate::new(&pool.config) {
          Ok(iso) => pool.blank.borrow_mut().push(iso),
          Err(e) => {
            tracing::error!("cannot create a blank isolate: {e}");
            break;
          }
        }
      }
      pool.refilling.set(false);
    });
  }

  fn release(&self, worker: &Arc<Worker>, iso: Isolate) {
    let mut slots = self.slots.borrow_mut();
    let Some(slot) = slots.get_mut(&Arc::as_ptr(worker)) else {
      return;
    };
    if iso.is_reusable() {
      slot.idle.push(iso);
    } else {
      slot.live -= 1;
      drop(iso);
    }
    slot.freed.notify_one();
  }

  fn forget(&self, worker: &Arc<Worker>) {
    if let Some(slot) = self.slots.borrow_mut().get_mut(&Arc::as_ptr(worker)) {
      slot.live -= 1;
      slot.freed.notify_one();
    }
  }

  /// Number of blank isolates ready.
  pub fn blank_ready(&self) -> usize {
    self.blank.borrow().len()
  }

  /// Drops every isolate (at thread exit), newest first.
  pub fn clear(&self) {
    let mut all: Vec<Isolate> = self.blank.borrow_mut().drain(..).collect();
    for (_, slot) in self.slots.borrow_mut().drain() {
      all.extend(slot.idle);
    }
    while let Some(iso) = all.pop() {
      drop(iso);
    }
  }
}
