//! Request ids unique across threads, restarts and nodes: 128 bits, the
//! high 64 a random prefix drawn once per engine, the low 64 the thread
//! and a per-thread counter. Written as 32 hex digits.

use std::fmt;

/// One request's id (the `edge-request-id` header, log lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub u128);

impl RequestId {
  /// The id `n` of thread `thread` under an engine's `prefix`.
  pub fn new(prefix: u64, thread: u16, n: u64) -> Self {
    Self(((prefix as u128) << 64) | ((thread as u128) << 48) | (n & 0xffff_ffff_ffff) as u128)
  }

  /// The id as 32 lowercase hex digits, without the `fmt` machinery (it
  /// is on every response).
  pub fn hex(self) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
      *b = HEX[((self.0 >> (124 - 4 * i)) & 0xf) as usize];
    }
    out
  }

  /// Parses 32 hex digits (an id a caller hands in).
  pub fn parse(s: &str) -> Option<Self> {
    (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
      .then(|| u128::from_str_radix(s, 16).ok().map(Self))
      .flatten()
  }
}

impl fmt::Display for RequestId {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{:032x}", self.0)
  }
}

/// A random 64-bit prefix for an engine's ids: the process's random hash
/// keys mixed with the time and the process id (no extra dependency; two
/// engines started in the same nanosecond on two nodes still differ by
/// their hash keys).
pub fn random_prefix() -> u64 {
  use std::hash::{BuildHasher, Hasher};
  let mut h = std::collections::hash_map::RandomState::new().build_hasher();
  let now = std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .unwrap_or_default();
  h.write_u128(now.as_nanos());
  h.write_u32(std::process::id());
  h.finish()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn layout_and_text() {
    let id = RequestId::new(0xdead_beef_0000_0001, 3, 42);
    assert_eq!(id.to_string(), "deadbeef00000001000300000000002a");
    assert_eq!(std::str::from_utf8(&id.hex()).unwrap(), id.to_string());
    assert_eq!(RequestId::parse(&id.to_string()), Some(id));
    assert_eq!(RequestId::parse("xyz"), None);
    assert_eq!(RequestId::parse(&"g".repeat(32)), None);
  }

  #[test]
  fn prefixes_differ() {
    let a: std::collections::HashSet<u64> = (0..100).map(|_| random_prefix()).collect();
    assert_eq!(a.len(), 100);
  }
}
