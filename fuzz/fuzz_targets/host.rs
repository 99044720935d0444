//! Host handling on any input: no panics, and what passes the route check
//! routes to itself.
#![no_main]

use edge_core::host::{cert_name_matches, check_host_pattern, strip_port};
use edge_core::routes::Routes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
  let Ok(s) = std::str::from_utf8(data) else { return };
  let bare = strip_port(s);
  let _ = cert_name_matches(s, bare);
  if check_host_pattern(s, false).is_ok() && !s.starts_with("*.") {
    let routes = Routes::new([(s.to_string(), ())]);
    assert!(routes.route(s).is_some(), "{s:?} routes to itself");
    assert!(routes.route(&s.to_ascii_uppercase()).is_some());
    assert!(routes.route(&format!("{s}:443")).is_some());
  }
});
