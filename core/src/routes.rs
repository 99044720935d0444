//! The host-to-worker table: exact names first, then wildcards from the
//! longest suffix to the shortest (`*.a.example` matches any depth of
//! labels before `a.example`), then a catch-all `*`. Case, the port and a
//! trailing dot are ignored.

use std::collections::HashMap;

use crate::host::strip_port;

/// Routes to values of `T` (the server routes to workers).
#[derive(Debug, Clone)]
pub struct Routes<T> {
  exact: HashMap<String, T>,
  /// Keyed by the suffix after `*.`.
  wildcard: HashMap<String, T>,
  catch_all: Option<T>,
}

impl<T> Default for Routes<T> {
  fn default() -> Self {
    Self {
      exact: HashMap::new(),
      wildcard: HashMap::new(),
      catch_all: None,
    }
  }
}

impl<T> Routes<T> {
  /// A table of `(pattern, value)` pairs; a later pair with the same
  /// pattern replaces an earlier one (callers check for conflicts first).
  pub fn new(routes: impl IntoIterator<Item = (String, T)>) -> Self {
    let mut r = Self::default();
    for (pattern, v) in routes {
      let pattern = pattern.to_ascii_lowercase();
      if pattern == "*" {
        r.catch_all = Some(v);
      } else if let Some(suffix) = pattern.strip_prefix("*.") {
        r.wildcard.insert(suffix.to_string(), v);
      } else {
        r.exact.insert(pattern, v);
      }
    }
    r
  }

  /// The value for a Host header value (or `:authority`).
  pub fn route(&self, host: &str) -> Option<&T> {
    let host = strip_port(host);
    let lower;
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
      lower = host.to_ascii_lowercase();
      lower.as_str()
    } else {
      host
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if let Some(v) = self.exact.get(host) {
      return Some(v);
    }
    if !self.wildcard.is_empty() {
      let mut rest = host;
      while let Some((_, suffix)) = rest.split_once('.') {
        if let Some(v) = self.wildcard.get(suffix) {
          return Some(v);
        }
        rest = suffix;
      }
    }
    self.catch_all.as_ref()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn table() -> Routes<&'static str> {
    Routes::new([
      ("api.example".to_string(), "api"),
      ("*.example".to_string(), "any-example"),
      ("*.deep.example".to_string(), "deep"),
      ("Mixed.Case".to_string(), "mixed"),
    ])
  }

  #[test]
  fn exact_then_longest_wildcard() {
    let r = table();
    assert_eq!(r.route("api.example"), Some(&"api"));
    assert_eq!(r.route("www.example"), Some(&"any-example"));
    assert_eq!(r.route("a.b.example"), Some(&"any-example"));
    assert_eq!(r.route("x.deep.example"), Some(&"deep"));
    assert_eq!(r.route("y.x.deep.example"), Some(&"deep"));
    assert_eq!(r.route("example"), None, "a wildcard needs a label before it");
    assert_eq!(r.route("other.test"), None);
  }

  #[test]
  fn case_port_and_trailing_dot_ignored() {
    let r = table();
    assert_eq!(r.route("API.EXAMPLE:8443"), Some(&"api"));
    assert_eq!(r.route("api.example."), Some(&"api"));
    assert_eq!(r.route("mixed.case"), Some(&"mixed"));
  }

  #[test]
  fn catch_all_last() {
    let r = Routes::new([("*".to_string(), 0), ("a.example".to_string(), 1)]);
    assert_eq!(r.route("a.example"), Some(&1));
    assert_eq!(r.route("b.example"), Some(&0));
    assert_eq!(r.route("[::1]:80"), Some(&0));
    assert_eq!(Routes::<u8>::default().route("a"), None);
  }
}
