//! A request head as a parser lets it through (httparse, hyper's), then
//! the front door's checks: no panics; an authority that passes has only
//! name characters and parses again to itself; Transfer-Encoding values of
//! any bytes are judged.
#![no_main]

use edge_core::head::only_chunked;
use edge_core::host::Authority;
use libfuzzer_sys::fuzz_target;

fn check_authority(s: &str) {
  if let Ok(a) = Authority::parse(s) {
    let host = a.host.trim_start_matches('[').trim_end_matches(']');
    assert!(
      host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')),
      "{s:?} gave {a:?}"
    );
    assert!(!a.host.ends_with('.') && !a.host.is_empty(), "{s:?} gave {a:?}");
    assert!(a.port != Some(0));
    assert_eq!(Authority::parse(&a.url_host()).as_ref(), Ok(&a), "{s:?}");
  }
}

fuzz_target!(|data: &[u8]| {
  if let Ok(s) = std::str::from_utf8(data) {
    check_authority(s);
  }
  let mut headers = [httparse::EMPTY_HEADER; 64];
  let mut req = httparse::Request::new(&mut headers);
  if let Ok(httparse::Status::Complete(_)) = req.parse(data) {
    let mut codings = Vec::new();
    for h in req.headers.iter() {
      if h.name.eq_ignore_ascii_case("host") {
        if let Ok(v) = std::str::from_utf8(h.value) {
          check_authority(v);
        }
      }
      if h.name.eq_ignore_ascii_case("transfer-encoding") {
        codings.push(h.value);
      }
    }
    let _ = only_chunked(codings);
  }
});
