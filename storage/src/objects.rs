//! R2-style object storage: the [`ObjectStore`] trait an engine implements
//! (the embedded one is [`crate::sqlite_objects`]; a fleet's shared engine
//! implements the same), R2's limits and messages, and the conditions of
//! conditional reads and writes.
//!
//! Bodies move in pieces both ways: a put is staged a piece at a time and
//! made visible at once when it commits (a reader sees the old object or
//! the new, never part of one); a read takes a byte range of one version.

/// R2's largest object in a single put (5 GiB less 5 MiB).
pub const MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024 - 5 * 1024 * 1024;
/// R2's longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// R2's custom and HTTP metadata, in bytes of their JSON.
pub const MAX_METADATA_BYTES: usize = 8192;
/// Parts of a multipart upload are numbered 1 to this.
pub const MAX_PARTS: u32 = 10_000;
/// R2's smallest part (all but the last).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// The most keys one list or delete takes.
pub const MAX_LIST: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
  /// A bad argument, with R2's message.
  #[error("{0}")]
  Invalid(String),
  /// A multipart upload that does not exist (anymore).
  #[error("The specified multipart upload does not exist. (10024)")]
  NoSuchUpload,
  /// The bucket is full (the node's disk is not a tenant's to fill).
  #[error("bucket full: {0}")]
  Full(String),
  #[error("{0}")]
  Backend(String),
}

/// One stored version of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
  pub key: String,
  /// Unique per write.
  pub version: String,
  pub size: u64,
  /// MD5 of the body in hex; a multipart object's is the MD5 of its parts'
  /// MD5s, then `-` and the count, as on R2 and S3.
  pub etag: String,
  /// Milliseconds since the epoch.
  pub uploaded: u64,
  /// The object's HTTP metadata as JSON (`contentType`, ...), as given.
  pub http_metadata: String,
  /// Its custom metadata as JSON (an object of strings), as given.
  pub custom_metadata: String,
  /// Checksums given with the put (JSON: `{"sha256": "<hex>"}`), checked.
  pub checksums: String,
}

/// What a conditional read or write needs of the current object
/// (`onlyIf`): every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
  /// Holds if the etag is one of these (`*`: any object).
  pub etag_matches: Option<Vec<String>>,
  /// Holds if the etag is none of these (`*`: no object).
  pub etag_does_not_match: Option<Vec<String>>,
  /// Holds if uploaded before (after) this many ms since the epoch.
  pub uploaded_before: Option<u64>,
  pub uploaded_after: Option<u64>,
}

impl Conditions {
  pub fn is_empty(&self) -> bool {
    *self == Self::default()
  }

  /// Whether `current` (the object now, if any) passes. No object fails a
  /// condition on an etag or time, but `etag_does_not_match`.
  pub fn hold(&self, current: Option<&ObjectMeta>) -> bool {
    let listed = |list: &[String], etag: &str| list.iter().any(|e| e == "*" || e.trim_matches('"') == etag);
    if let Some(list) = &self.etag_matches {
      match current {
        Some(o) if listed(list, &o.etag) => {}
        _ => return false,
      }
    }
    if let (Some(list), Some(o)) = (&self.etag_does_not_match, current) {
      if listed(list, &o.etag) {
        return false;
      }
    }
    let before = self
      .uploaded_before
      .is_none_or(|t| current.is_some_and(|o| o.uploaded < t));
    let after = self
      .uploaded_after
      .is_none_or(|t| current.is_some_and(|o| o.uploaded > t));
    before && after
  }
}

/// A list request (`list({prefix, cursor, delimiter, startAfter, limit})`).
#[derive(Debug, Clone, Default)]
pub struct ObjectQuery {
  pub prefix: String,
  /// Keys from this one on (a cursor; `startAfter` is its key and a NUL).
  pub from: Option<Vec<u8>>,
  pub delimiter: Option<String>,
  pub limit: usize,
}

/// A list's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectListing {
  pub objects: Vec<ObjectMeta>,
  /// Keys rolled up at the delimiter, each once, in order.
  pub delimited_prefixes: Vec<String>,
  /// More from `cursor` on (where the next page starts, as `from`).
  pub truncated: bool,
  pub cursor: Option<Vec<u8>>,
}

/// A put (or a part) being written: made by [`ObjectStore::stage`], fed by
/// [`ObjectStore::append`], then committed or dropped.
#[derive(Debug)]
pub struct Staged {
  pub id: String,
  pub size: u64,
  pub(crate) md5: md5::Md5,
}

impl Staged {
  pub fn new(id: String) -> Self {
    Self {
      id,
      size: 0,
      md5: md5::Digest::new(),
    }
  }

  /// Counts `piece` into the size and MD5 (the engine calls it).
  pub fn note(&mut self, piece: &[u8]) {
    md5::Digest::update(&mut self.md5, piece);
    self.size += piece.len() as u64;
  }

  /// The MD5 of what was staged, in hex.
  pub fn md5_hex(&self) -> String {
    hex(&md5::Digest::finalize(self.md5.clone()))
  }
}

/// Milliseconds since the epoch (uploaded times, staging ages).
pub fn now_ms() -> u64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map(|d| d.as_millis() as u64)
    .unwrap_or(0)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
  bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a commit writes besides the staged body.
#[derive(Debug, Clone, Default)]
pub struct PutMeta {
  pub http_metadata: String,
  pub custom_metadata: String,
  pub checksums: String,
  /// An MD5 the body must have (hex), from `put(..., {md5})`.
  pub md5: Option<String>,
}

/// One engine's bucket. Calls block: run them off the event loop.
pub trait ObjectStore: Send + Sync {
  fn head(&self, key: &str) -> Result<Option<ObjectMeta>, ObjectError>;

  /// Up to `max` bytes of `version` from `offset` (fewer at its end;
  /// `Invalid` if that version is gone: the object was replaced while
  /// being read).
  fn read(&self, version: &str, offset: u64, max: usize) -> Result<Vec<u8>, ObjectError>;

  /// Starts a staged body.
  fn stage(&self) -> Result<Staged, ObjectError>;

  /// Adds a piece to a staged body.
  fn append(&self, staged: &mut Staged, piece: &[u8]) -> Result<(), ObjectError>;

  /// Makes a staged body the object `key`, if `only_if` holds of the
  /// current one (else `None`, and the staged body is dropped).
  fn commit(
    &self,
    staged: Staged,
    key: &str,
    meta: &PutMeta,
    only_if: &Conditions,
    now_ms: u64,
  ) -> Result<Option<ObjectMeta>, ObjectError>;

  /// Drops a staged body that will not be committed.
  fn discard(&self, staged: Staged);

  fn delete(&self, keys: &[String]) -> Result<(), ObjectError>;

  fn list(&self, q: &ObjectQuery) -> Result<ObjectListing, ObjectError>;

  /// Starts a multipart upload of `key`; returns its id.
  fn create_multipart(&self, key: &str, meta: &PutMeta, now_ms: u64) -> Result<String, ObjectError>;

  /// Makes a staged body part `number` of upload `upload` (replacing one
  /// of that number); returns its etag.
  fn commit_part(&self, upload: &str, key: &str, number: u32, staged: Staged) -> Result<String, ObjectError>;

  /// Joins the parts named (number and etag, ascending) into the object.
  fn complete_multipart(
    &self,
    upload: &str,
    key: &str,
    parts: &[(u32, String)],
    now_ms: u64,
  ) -> Result<ObjectMeta, ObjectError>;

  fn abort_multipart(&self, upload: &str, key: &str) -> Result<(), ObjectError>;
}

/// R2's checks of a key.
pub fn check_key(key: &str) -> Result<(), ObjectError> {
  if key.len() > MAX_KEY_BYTES {
    return Err(ObjectError::Invalid(format!(
      "The specified object name is not valid: its length is {} bytes, at most {MAX_KEY_BYTES}. (10020)",
      key.len()
    )));
  }
  Ok(())
}

/// R2's checks of the metadata of a put (JSON as given).
pub fn check_meta(meta: &PutMeta) -> Result<(), ObjectError> {
  if meta.custom_metadata.len() + meta.http_metadata.len() > MAX_METADATA_BYTES {
    return Err(ObjectError::Invalid(format!(
      "Your metadata headers exceed the maximum allowed metadata size of {MAX_METADATA_BYTES} bytes. (10012)"
    )));
  }
  Ok(())
}

/// The etag of a multipart object: the MD5 of its parts' MD5s, `-N`.
pub fn multipart_etag(part_etags: &[&str]) -> String {
  let mut h: md5::Md5 = md5::Digest::new();
  for e in part_etags {
    let bytes: Vec<u8> = (0..e.len() / 2)
      .filter_map(|i| u8::from_str_radix(e.get(2 * i..2 * i + 2)?, 16).ok())
      .collect();
    md5::Digest::update(&mut h, &bytes);
  }
  format!("{}-{}", hex(&md5::Digest::finalize(h)), part_etags.len())
}

#[cfg(test)]
mod tests {
  use super::*;

  fn meta(etag: &str, uploaded: u64) -> ObjectMeta {
    ObjectMeta {
      key: "k".into(),
      version: "v".into(),
      size: 0,
      etag: etag.into(),
      uploaded,
      http_metadata: String::new(),
      custom_metadata: String::new(),
      checksums: String::new(),
    }
  }

  #[test]
  fn conditions_as_r2_applies_them() {
    let o = meta("abc", 100);
    let c = |f: fn(&mut Conditions)| {
      let mut c = Conditions::default();
      f(&mut c);
      c
    };
    assert!(Conditions::default().hold(None));
    assert!(c(|c| c.etag_matches = Some(vec!["abc".into()])).hold(Some(&o)));
    assert!(c(|c| c.etag_matches = Some(vec!["\"abc\"".into()])).hold(Some(&o)));
    assert!(!c(|c| c.etag_matches = Some(vec!["x".into()])).hold(Some(&o)));
    assert!(!c(|c| c.etag_matches = Some(vec!["*".into()])).hold(None));
    assert!(c(|c| c.etag_does_not_match = Some(vec!["*".into()])).hold(None));
    assert!(!c(|c| c.etag_does_not_match = Some(vec!["*".into()])).hold(Some(&o)));
    assert!(c(|c| c.uploaded_before = Some(101)).hold(Some(&o)));
    assert!(!c(|c| c.uploaded_before = Some(100)).hold(Some(&o)));
    assert!(c(|c| c.uploaded_after = Some(99)).hold(Some(&o)));
    assert!(!c(|c| c.uploaded_after = Some(99)).hold(None));
  }

  #[test]
  fn etags_are_md5s_as_on_s3() {
    let mut s = Staged::new("x".into());
    s.note(b"hello");
    assert_eq!(s.md5_hex(), "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(s.size, 5);
    // S3's: the MD5 of the parts' MD5s (as bytes), then the count.
    let (hello, world) = ("5d41402abc4b2a76b9719d911017c592", "7d793037a0760186574b0282f2f435e7");
    assert_eq!(multipart_etag(&[hello, world]), "065947336a2f2a95ba8899f3675c3be6-2");
  }
}
