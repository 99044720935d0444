//! A lease: an isolate lent to one request, back to its pool when dropped.

use std::rc::Rc;
use std::sync::Arc;

use js_api::Isolate;

use super::Pool;
use crate::worker::Worker;

pub struct Lease {
  pub(super) pool: Rc<Pool>,
  pub(super) worker: Arc<Worker>,
  pub(super) isolate: Option<Isolate>,
  /// Heap the isolate had when lent (its worker's gauge holds this).
  pub(super) heap: usize,
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
    self.pool.stats().in_flight.add(-1);
    if let Some(iso) = self.isolate.take() {
      let pool = self.pool.clone();
      pool.release(&self.worker, iso, self.heap);
    }
  }
}
