//! Step 3 of a request: the worker for a host name, by the table of
//! `edge_core::routes` (exact, longest wildcard, catch-all), and workers
//! by name for embedders.

use std::collections::HashMap;
use std::sync::Arc;

use edge_core::routes::Routes;

use crate::worker::Worker;

#[derive(Default)]
pub struct Router {
  routes: Routes<Arc<Worker>>,
  by_name: HashMap<Arc<str>, Arc<Worker>>,
}

impl Router {
  /// Routes every worker's own `routes`.
  pub fn from_workers(workers: &[Arc<Worker>]) -> Self {
    let routes = workers
      .iter()
      .flat_map(|w| w.routes.iter().map(move |r| (r.clone(), w.clone())));
    Self {
      routes: Routes::new(routes),
      by_name: workers.iter().map(|w| (w.name.clone(), w.clone())).collect(),
    }
  }

  /// The worker for a Host header value (or :authority), port and case
  /// ignored.
  pub fn route(&self, host: &str) -> Option<&Arc<Worker>> {
    self.routes.route(host)
  }

  pub fn by_name(&self, name: &str) -> Option<&Arc<Worker>> {
    self.by_name.get(name)
  }

  /// Every worker, in no order.
  pub fn workers(&self) -> impl Iterator<Item = &Arc<Worker>> {
    self.by_name.values()
  }
}
