//! KV namespaces: the backend trait every engine implements, and the checks
//! and error messages of Cloudflare's KV (key 512 bytes, value 25 MiB,
//! metadata 1 KiB, expirations at least 60 s ahead, lists of at most 1000
//! keys), made before any engine is asked.

use base64::Engine as _;

/// Cloudflare's KV limits.
pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_VALUE_BYTES: usize = 25 << 20;
pub const MAX_METADATA_BYTES: usize = 1024;
pub const MAX_LIST_KEYS: u32 = 1000;
pub const MIN_EXPIRATION_TTL: u64 = 60;
pub const MIN_CACHE_TTL: f64 = 30.0;

/// Why a KV operation failed. `Refused` carries the HTTP status and message
/// Cloudflare's KV answers with (workers see `KV PUT failed: 400 ...`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KvError {
  #[error("{status} {message}")]
  Refused { status: u16, message: String },
  #[error("the store failed: {0}")]
  Backend(String),
}

impl KvError {
  fn refused(status: u16, message: impl Into<String>) -> Self {
    Self::Refused {
      status,
      message: message.into(),
    }
  }
}

/// A stored value with what was put beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
  pub value: Vec<u8>,
  /// The metadata as JSON text.
  pub metadata: Option<String>,
  /// Seconds since the epoch.
  pub expiration: Option<u64>,
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvKey {
  pub name: String,
  pub expiration: Option<u64>,
  pub metadata: Option<String>,
}

/// A page of a listing: `cursor` is set when more keys follow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvListing {
  pub keys: Vec<KvKey>,
  pub cursor: Option<String>,
}

/// What a listing asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
  pub prefix: String,
  /// Keys after this one (from the cursor).
  pub after: Option<String>,
  pub limit: u32,
}

/// One KV namespace. Calls block (an engine may read a file or a socket):
/// run them off the isolate's thread. `now` is seconds since the epoch;
/// an entry whose expiration is not after it is gone.
pub trait KvStore: Send + Sync {
  fn get(&self, key: &str, now: u64) -> Result<Option<KvEntry>, KvError>;
  /// Writes the value once it is durable: an acknowledged put survives the
  /// process being killed.
  fn put(&self, key: &str, entry: &KvEntry, now: u64) -> Result<(), KvError>;
  fn delete(&self, key: &str) -> Result<(), KvError>;
  fn list(&self, query: &ListQuery, now: u64) -> Result<KvListing, KvError>;
}

/// A key as Cloudflare takes it: not empty, not `.` or `..`, at most 512
/// bytes of UTF-8.
pub fn check_key(key: &str) -> Result<(), KvError> {
  if key.is_empty() {
    return Err(KvError::refused(400, "Key names must not be empty"));
  }
  if key == "." || key == ".." {
    return Err(KvError::refused(
      400,
      format!("Illegal key name \"{key}\". Please use a different name."),
    ));
  }
  check_key_length(key)
}

fn check_key_length(key: &str) -> Result<(), KvError> {
  if key.len() > MAX_KEY_BYTES {
    return Err(KvError::refused(
      414,
      format!(
        "UTF-8 encoded length of {} exceeds key length limit of {MAX_KEY_BYTES}.",
        key.len()
      ),
    ));
  }
  Ok(())
}

/// `get`'s `cacheTtl` (accepted and checked; a node has one cache level).
pub fn check_cache_ttl(ttl: Option<f64>) -> Result<(), KvError> {
  match ttl {
    Some(t) if t.is_nan() || t < MIN_CACHE_TTL => Err(KvError::refused(
      400,
      format!(
        "Invalid cache_ttl of {}. Cache TTL must be at least {MIN_CACHE_TTL}.",
        number(t)
      ),
    )),
    _ => Ok(()),
  }
}

/// The options of a `put`, as the worker gave them.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
  pub expiration: Option<f64>,
  pub expiration_ttl: Option<f64>,
  /// JSON text.
  pub metadata: Option<String>,
}

/// Checks a put and gives the entry to store.
pub fn check_put(key: &str, value: Vec<u8>, options: PutOptions, now: u64) -> Result<KvEntry, KvError> {
  check_key(key)?;
  let expiration = if let Some(ttl) = options.expiration_ttl {
    let t = ttl.trunc();
    if t.is_nan() || t <= 0.0 {
      return Err(KvError::refused(
        400,
        format!(
          "Invalid expiration_ttl of {}. Please specify integer greater than 0.",
          number(ttl)
        ),
      ));
    }
    if t < MIN_EXPIRATION_TTL as f64 {
      return Err(KvError::refused(
        400,
        format!(
          "Invalid expiration_ttl of {}. Expiration TTL must be at least {MIN_EXPIRATION_TTL}.",
          number(ttl)
        ),
      ));
    }
    Some(now.saturating_add(t.min(u64::MAX as f64) as u64))
  } else if let Some(at) = options.expiration {
    let t = at.trunc();
    if t.is_nan() || t <= now as f64 {
      return Err(KvError::refused(
        400,
        format!(
          "Invalid expiration of {}. Please specify integer greater than the current number of seconds since the UNIX epoch.",
          number(at)
        ),
      ));
    }
    if t < (now + MIN_EXPIRATION_TTL) as f64 {
      return Err(KvError::refused(
        400,
        format!(
          "Invalid expiration of {}. Expiration times must be at least {MIN_EXPIRATION_TTL} seconds in the future.",
          number(at)
        ),
      ));
    }
    Some(t.min(u64::MAX as f64) as u64)
  } else {
    None
  };
  if let Some(m) = &options.metadata {
    if m.len() > MAX_METADATA_BYTES {
      return Err(KvError::refused(
        413,
        format!("Metadata length of {} exceeds limit of {MAX_METADATA_BYTES}.", m.len()),
      ));
    }
  }
  check_value_length(value.len())?;
  Ok(KvEntry {
    value,
    metadata: options.metadata,
    expiration,
  })
}

/// A value's size (checked while a stream is read, too).
pub fn check_value_length(len: usize) -> Result<(), KvError> {
  if len > MAX_VALUE_BYTES {
    return Err(KvError::refused(
      413,
      format!("Value length of {len} exceeds limit of {MAX_VALUE_BYTES}."),
    ));
  }
  Ok(())
}

/// Checks `list()`'s options and turns its cursor back into a key.
pub fn check_list(prefix: Option<String>, limit: Option<f64>, cursor: Option<&str>) -> Result<ListQuery, KvError> {
  let limit = match limit {
    None => MAX_LIST_KEYS,
    Some(l) if l.is_nan() || l < 1.0 => {
      return Err(KvError::refused(
        400,
        format!(
          "Invalid key_count_limit of {}. Please specify an integer greater than 0.",
          number(l)
        ),
      ))
    }
    Some(l) if l > MAX_LIST_KEYS as f64 => {
      return Err(KvError::refused(
        400,
        format!(
          "Invalid key_count_limit of {}. Please specify an integer less than {MAX_LIST_KEYS}.",
          number(l)
        ),
      ))
    }
    Some(l) => l as u32,
  };
  let prefix = prefix.unwrap_or_default();
  check_key_length(&prefix)?;
  let after = match cursor {
    None | Some("") => None,
    Some(c) => Some(decode_cursor(c).ok_or_else(|| KvError::refused(400, "Invalid cursor"))?),
  };
  Ok(ListQuery { prefix, after, limit })
}

/// The opaque cursor for a listing that ended at `key`.
pub fn encode_cursor(key: &str) -> String {
  base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_cursor(c: &str) -> Option<String> {
  let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
  String::from_utf8(bytes).ok()
}

/// The least byte string greater than every string starting with `prefix`
/// (none for an empty prefix or one of all 0xFF bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
  let mut end = prefix.to_vec();
  while let Some(last) = end.pop() {
    if last < 0xFF {
      end.push(last + 1);
      return Some(end);
    }
  }
  None
}

/// A number as JavaScript prints it (integers without `.0`).
fn number(n: f64) -> String {
  if n.is_nan() {
    "NaN".into()
  } else if n.fract() == 0.0 && n.abs() < 1e21 {
    format!("{}", n as i128)
  } else {
    format!("{n}")
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn refused(r: Result<impl std::fmt::Debug, KvError>) -> (u16, String) {
    match r {
      Err(KvError::Refused { status, message }) => (status, message),
      other => panic!("expected a refusal, got {other:?}"),
    }
  }

  #[test]
  fn keys_as_cloudflare_takes_them() {
    assert_eq!(refused(check_key("")).1, "Key names must not be empty");
    assert_eq!(
      refused(check_key("..")).1,
      "Illegal key name \"..\". Please use a different name."
    );
    assert!(check_key(&"a".repeat(512)).is_ok());
    assert_eq!(
      refused(check_key(&"é".repeat(257))),
      (
        414,
        "UTF-8 encoded length of 514 exceeds key length limit of 512.".into()
      )
    );
    assert!(check_key("...").is_ok());
  }

  #[test]
  fn expirations() {
    let now = 1_000_000;
    let put = |o: PutOptions| check_put("k", b"v".to_vec(), o, now);
    let e = put(PutOptions {
      expiration_ttl: Some(60.0),
      ..Default::default()
    })
    .unwrap();
    assert_eq!(e.expiration, Some(now + 60));
    assert_eq!(
      refused(put(PutOptions {
        expiration_ttl: Some(10.0),
        ..Default::default()
      }))
      .1,
      "Invalid expiration_ttl of 10. Expiration TTL must be at least 60."
    );
    assert_eq!(
      refused(put(PutOptions {
        expiration_ttl: Some(-1.0),
        ..Default::default()
      }))
      .1,
      "Invalid expiration_ttl of -1. Please specify integer greater than 0."
    );
    assert!(refused(put(PutOptions {
      expiration: Some(now as f64),
      ..Default::default()
    }))
    .1
    .contains("greater than the current number of seconds"));
    assert!(refused(put(PutOptions {
      expiration: Some((now + 30) as f64),
      ..Default::default()
    }))
    .1
    .contains("at least 60 seconds in the future"));
    let e = put(PutOptions {
      expiration: Some((now + 90) as f64),
      expiration_ttl: None,
      metadata: Some("{\"a\":1}".into()),
    })
    .unwrap();
    assert_eq!(e.expiration, Some(now + 90));
    assert_eq!(e.metadata.as_deref(), Some("{\"a\":1}"));
  }

  #[test]
  fn sizes() {
    let meta = format!("\"{}\"", "m".repeat(1023));
    assert_eq!(
      refused(check_put(
        "k",
        vec![],
        PutOptions {
          metadata: Some(meta),
          ..Default::default()
        },
        0
      )),
      (413, "Metadata length of 1025 exceeds limit of 1024.".into())
    );
    assert!(check_put("k", vec![0; MAX_VALUE_BYTES], PutOptions::default(), 0).is_ok());
    assert_eq!(
      refused(check_put("k", vec![0; MAX_VALUE_BYTES + 1], PutOptions::default(), 0)),
      (413, "Value length of 26214401 exceeds limit of 26214400.".into())
    );
    assert!(check_cache_ttl(Some(30.0)).is_ok());
    assert_eq!(
      refused(check_cache_ttl(Some(5.0))).1,
      "Invalid cache_ttl of 5. Cache TTL must be at least 30."
    );
  }

  #[test]
  fn lists() {
    let q = check_list(None, None, None).unwrap();
    assert_eq!((q.prefix.as_str(), q.limit, q.after), ("", 1000, None));
    assert_eq!(refused(check_list(None, Some(0.0), None)).0, 400);
    assert!(refused(check_list(None, Some(1001.0), None))
      .1
      .contains("less than 1000"));
    let c = encode_cursor("ké/y");
    assert_eq!(
      check_list(None, Some(5.0), Some(&c)).unwrap().after.as_deref(),
      Some("ké/y")
    );
    assert_eq!(refused(check_list(None, None, Some("!!"))).1, "Invalid cursor");
    assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
    assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
    assert_eq!(prefix_end(b"\xff\xff"), None);
    assert_eq!(prefix_end(b""), None);
  }
}
