//! Checks of a request head that need no HTTP library (the front door's
//! `front/head.rs` applies them; the fuzz target feeds them whatever a
//! parser lets through).

/// Whether the `Transfer-Encoding` values of a request name one coding,
/// `chunked` (RFC 9112 6.1: the server knows no other; `gzip, chunked`
/// would hand a worker gzip it never decodes, `chunked, chunked` is
/// malformed).
pub fn only_chunked<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
  let mut chunked = 0;
  for coding in values.into_iter().flat_map(|v| v.split(|b| *b == b',')) {
    if !coding.trim_ascii().eq_ignore_ascii_case(b"chunked") {
      return false;
    }
    chunked += 1;
  }
  chunked == 1
}

/// Whether a request method is one workerd serves (the standard ones and
/// the WebDAV, UPnP and cache ones kj's HTTP knows); another is 501 there,
/// and here. Methods are case-sensitive.
pub fn known_method(method: &str) -> bool {
  matches!(
    method,
    "GET"
      | "HEAD"
      | "POST"
      | "PUT"
      | "DELETE"
      | "PATCH"
      | "OPTIONS"
      | "TRACE"
      | "PURGE"
      | "COPY"
      | "LOCK"
      | "MKCOL"
      | "MOVE"
      | "PROPFIND"
      | "PROPPATCH"
      | "SEARCH"
      | "UNLOCK"
      | "ACL"
      | "REPORT"
      | "MKACTIVITY"
      | "CHECKOUT"
      | "MERGE"
      | "M-SEARCH"
      | "NOTIFY"
      | "SUBSCRIBE"
      | "UNSUBSCRIBE"
      | "QUERY"
      | "BAN"
  )
}

/// Whether `Accept-Encoding` values accept `coding` (RFC 9110 12.5.3): it
/// is named, or `*` is, with a weight above 0 (a named coding's weight wins
/// over `*`'s). Without the header nothing is accepted but identity (what
/// clients that send none expect, whatever the RFC lets a server assume).
pub fn accepts_coding<'a>(values: impl IntoIterator<Item = &'a [u8]>, coding: &str) -> bool {
  let mut star = None;
  for item in values.into_iter().flat_map(|v| v.split(|b| *b == b',')) {
    let mut parts = item.split(|b| *b == b';');
    let name = parts.next().unwrap_or_default().trim_ascii();
    let weight = parts
      .filter_map(|p| p.trim_ascii().strip_prefix(b"q="))
      .next()
      .and_then(|q| std::str::from_utf8(q).ok()?.trim().parse::<f32>().ok())
      .unwrap_or(1.0);
    if name.eq_ignore_ascii_case(coding.as_bytes()) {
      return weight > 0.0;
    }
    if name == b"*" {
      star = Some(weight > 0.0);
    }
  }
  star.unwrap_or(false)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn methods() {
    for m in ["GET", "PROPFIND", "M-SEARCH", "QUERY"] {
      assert!(known_method(m), "{m}");
    }
    for m in ["PUPPY", "get", "CONNECT", ""] {
      assert!(!known_method(m), "{m}");
    }
  }

  #[test]
  fn accepted_codings() {
    let acc = |v: &str, c: &str| accepts_coding([v.as_bytes()], c);
    assert!(acc("gzip, deflate, br", "br"));
    assert!(acc("GZIP", "gzip"));
    assert!(acc("br;q=0.5, gzip;q=1.0", "br"));
    assert!(!acc("br;q=0, gzip", "br"));
    assert!(!acc("br; q=0.000", "br"));
    assert!(acc("*", "br"));
    assert!(!acc("*;q=0", "gzip"));
    assert!(acc("*;q=0, gzip", "gzip"));
    assert!(!acc("gzip;q=0, *", "gzip"));
    assert!(!acc("identity", "gzip"));
    assert!(!acc("", "gzip"));
    assert!(!accepts_coding(std::iter::empty::<&[u8]>(), "gzip"));
    assert!(accepts_coding([b"deflate".as_slice(), b"br".as_slice()], "br"));
  }

  #[test]
  fn transfer_codings() {
    let one = |v: &str| only_chunked([v.as_bytes()]);
    assert!(one("chunked"));
    assert!(one(" Chunked "));
    for bad in [
      "gzip, chunked",
      "chunked, chunked",
      "identity",
      "",
      "chunked,",
      "x-chunked",
    ] {
      assert!(!one(bad), "{bad:?}");
    }
    assert!(!only_chunked([b"gzip".as_slice(), b"chunked".as_slice()]));
    assert!(!only_chunked(std::iter::empty::<&[u8]>()));
  }
}
