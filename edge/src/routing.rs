//! Step 3 of a request: the worker for a host name. Exact names first, then
//! wildcards from the longest suffix to the shortest, then a catch-all `*`.
//! The port is ignored.

use std::collections::HashMap;
use std::sync::Arc;

use crate::worker::Worker;

#[derive(Default)]
pub struct Router {
  exact: HashMap<String, Arc<Worker>>,
  /// Keyed by the suffix after `*.`; matches any depth of labels before it.
  wildcard: HashMap<String, Arc<Worker>>,
  catch_all: Option<Arc<Worker>>,
  by_name: HashMap<Arc<str>, Arc<Worker>>,
}

impl Router {
  pub fn new(routes: impl IntoIterator<Item = (String, Arc<Worker>)>, workers: &[Arc<Worker>]) -> Self {
    let mut r = Self::default();
    for (pattern, w) in routes {
      let pattern = pattern.to_ascii_lowercase();
      if pattern == "*" {
        r.catch_all = Some(w);
      } else if let Some(suffix) = pattern.strip_prefix("*.") {
        r.wildcard.insert(suffix.to_string(), w);
      } else {
        r.exact.insert(pattern, w);
      }
    }
    for w in workers {
      r.by_name.insert(w.name.clone(), w.clone());
    }
    r
  }

  /// Routes every worker's own `routes`.
  pub fn from_workers(workers: &[Arc<Worker>]) -> Self {
    let routes = workers
      .iter()
      .flat_map(|w| w.routes.iter().map(move |r| (r.clone(), w.clone())));
    Self::new(routes, workers)
  }

  /// The worker for a Host header value (or :authority), port and case
  /// ignored.
  pub fn route(&self, host: &str) -> Option<&Arc<Worker>> {
    let host = strip_port(host);
    let lower;
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
      lower = host.to_ascii_lowercase();
      lower.as_str()
    } else {
      host
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if let Some(w) = self.exact.get(host) {
      return Some(w);
    }
    if !self.wildcard.is_empty() {
      let mut rest = host;
      while let Some((_, suffix)) = rest.split_once('.') {
        if let Some(w) = self.wildcard.get(suffix) {
          return Some(w);
        }
        rest = suffix;
      }
    }
    self.catch_all.as_ref()
  }

  pub fn by_name(&self, name: &str) -> Option<&Arc<Worker>> {
    self.by_name.get(name)
  }

  pub fn workers(&self) -> impl Iterator<Item = &Arc<Worker>> {
    self.by_name.values()
  }
}

/// `host:port` or `[v6]:port` without the port.
pub fn strip_port(host: &str) -> &str {
  if let Some(rest) = host.strip_prefix('[') {
    return rest.split_once(']').map_or(host, |(h, _)| h);
  }
  match host.rsplit_once(':') {
    Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
    _ => host,
  }
}
