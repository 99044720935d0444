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

#[cfg(test)]
mod tests {
  use super::*;

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
