//! A request head as a parser lets it through (httparse, hyper's), then
//! the front door's checks: no panics; an authority that passes has only
//! name characters and parses again to itself; Transfer-Encoding values of
//! any bytes are judged; the strict line follower gives the same verdict
//! however the bytes are cut, and refuses only at an LF.
#![no_main]

use edge_core::framing::{Feed, StrictLines};
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

/// The refusal (an index into `data`) when fed whole and cut in two.
fn check_lines(data: &[u8]) {
  let verdict = |parts: &[&[u8]]| {
    let mut s = StrictLines::new();
    let mut at = 0;
    for p in parts {
      match s.feed(p) {
        Feed::Refuse(i) => return Some(at + i),
        Feed::Other => return None,
        Feed::Go => at += p.len(),
      }
    }
    None
  };
  let whole = verdict(&[data]);
  if let Some(i) = whole {
    assert_eq!(data[i], b'\n', "refused at a byte not an LF: {i}");
  }
  let cut = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
  assert_eq!(verdict(&[&data[..cut], &data[cut..]]), whole, "cut at {cut}");
}

fuzz_target!(|data: &[u8]| {
  check_lines(data);
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
