//! The Cache API's store (`caches.default`, `caches.open(name)`): responses
//! kept in memory, bounded by bytes (least recently used go first), keyed by
//! zone, cache name and URL, so a worker reads only what was put for its own
//! zone. What may be stored, how long it stays fresh (`s-maxage`,
//! `max-age`, `Expires`, Cloudflare's default TTLs), `Vary`, conditional
//! requests (`If-None-Match`, `If-Modified-Since` -> 304) and single byte
//! ranges (-> 206 or 416) are decided here, without V8.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// A response as put or matched. Header names are lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
  pub status: u16,
  pub headers: Vec<(String, String)>,
  pub body: Arc<[u8]>,
}

/// Why `put` refused (a `TypeError` in JS, Cloudflare's messages).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CacheError {
  #[error("Cannot cache response to non-GET request.")]
  NotGet,
  #[error("Cannot cache response to a range request (206 Partial Content).")]
  Partial,
  #[error("Cannot cache response with 'Vary: *' header.")]
  VaryStar,
}

/// Default TTLs for responses without their own (Cloudflare's edge
/// defaults, seconds).
fn default_ttl(status: u16) -> Option<u64> {
  match status {
    200 | 203 | 206 | 300 | 301 | 410 => Some(7200),
    302 | 303 => Some(1200),
    404 => Some(180),
    _ => None,
  }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
  headers
    .iter()
    .find(|(k, _)| k.eq_ignore_ascii_case(name))
    .map(|(_, v)| v.as_str())
}

/// The `Cache-Control` directives, lower case, values unquoted.
fn directives(value: Option<&str>) -> HashMap<String, Option<String>> {
  let mut out = HashMap::new();
  for part in value.unwrap_or("").split(',') {
    let part = part.trim();
    if part.is_empty() {
      continue;
    }
    let (k, v) = match part.split_once('=') {
      Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"').to_string())),
      None => (part, None),
    };
    out.insert(k.to_ascii_lowercase(), v);
  }
  out
}

/// Seconds since the epoch of an HTTP date (IMF-fixdate only).
pub fn parse_http_date(s: &str) -> Option<u64> {
  // "Sun, 06 Nov 1994 08:49:37 GMT"
  let s = s.trim();
  let rest = s.split_once(", ")?.1;
  let mut it = rest.split(' ');
  let day: u64 = it.next()?.parse().ok()?;
  let month = match it.next()? {
    "Jan" => 1,
    "Feb" => 2,
    "Mar" => 3,
    "Apr" => 4,
    "May" => 5,
    "Jun" => 6,
    "Jul" => 7,
    "Aug" => 8,
    "Sep" => 9,
    "Oct" => 10,
    "Nov" => 11,
    "Dec" => 12,
    _ => return None,
  };
  let year: i64 = it.next()?.parse().ok()?;
  let mut hms = it.next()?.split(':');
  let (h, m, sec): (u64, u64, u64) = (
    hms.next()?.parse().ok()?,
    hms.next()?.parse().ok()?,
    hms.next()?.parse().ok()?,
  );
  if it.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
    return None;
  }
  // Days from the civil date (Howard Hinnant's algorithm).
  let (y, mo) = if month <= 2 {
    (year - 1, month + 9)
  } else {
    (year, month - 3)
  };
  let era = y.div_euclid(400);
  let yoe = y - era * 400;
  let doy = (153 * mo as i64 + 2) / 5 + day as i64 - 1;
  let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  let days = era * 146_097 + doe - 719_468;
  if days < 0 {
    return None;
  }
  Some(days as u64 * 86_400 + h * 3600 + m * 60 + sec)
}

/// How long a response put at `now` stays fresh, or `None` if it is not
/// to be stored (`no-store`, `private`, `Set-Cookie`, no TTL).
pub fn freshness(resp: &CachedResponse, now: u64) -> Option<u64> {
  let cc = directives(header(&resp.headers, "cache-control"));
  if cc.contains_key("no-store") || cc.contains_key("private") || header(&resp.headers, "set-cookie").is_some() {
    return None;
  }
  let secs = |k: &str| cc.get(k).and_then(|v| v.as_deref()).and_then(|v| v.parse::<u64>().ok());
  if cc.contains_key("no-cache") {
    return None;
  }
  if let Some(s) = secs("s-maxage").or_else(|| secs("max-age")) {
    return (s > 0).then_some(s);
  }
  if let Some(exp) = header(&resp.headers, "expires") {
    let exp = parse_http_date(exp)?;
    let base = header(&resp.headers, "date").and_then(parse_http_date).unwrap_or(now);
    return exp.checked_sub(base).filter(|s| *s > 0);
  }
  default_ttl(resp.status)
}

struct Entry {
  resp: CachedResponse,
  /// The request's values of the headers the response varies on.
  vary: Vec<(String, Option<String>)>,
  stored_at: u64,
  expires_at: u64,
  tick: u64,
  size: usize,
}

struct Inner {
  entries: HashMap<String, Entry>,
  /// Least recently used first.
  order: BTreeMap<u64, String>,
  bytes: usize,
  tick: u64,
}

/// One node's (process's) cache.
pub struct HttpCache {
  inner: Mutex<Inner>,
  max_bytes: usize,
}

/// The default bound of the process's cache.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

fn key(zone: &str, cache: &str, url: &str) -> String {
  format!("{zone}\u{0}{cache}\u{0}{url}")
}

impl HttpCache {
  pub fn new(max_bytes: usize) -> Self {
    Self {
      inner: Mutex::new(Inner {
        entries: HashMap::new(),
        order: BTreeMap::new(),
        bytes: 0,
        tick: 0,
      }),
      max_bytes,
    }
  }

  /// The process's cache: made on first use, bounded by the first
  /// [`HttpCache::configure`] (else [`DEFAULT_CACHE_BYTES`]).
  pub fn node() -> &'static HttpCache {
    NODE.get_or_init(|| HttpCache::new(DEFAULT_CACHE_BYTES))
  }

  /// Sets the process's bound, before the cache is first used (later calls
  /// change nothing; gives whether it took).
  pub fn configure(max_bytes: usize) -> bool {
    NODE.set(HttpCache::new(max_bytes)).is_ok()
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
    self.inner.lock().unwrap_or_else(|p| p.into_inner())
  }

  /// Stores `resp` for a GET of `url` with `req_headers`; `Ok(false)` when
  /// it is not to be stored (or larger than an eighth of the cache).
  #[allow(clippy::too_many_arguments)]
  pub fn put(
    &self,
    zone: &str,
    cache: &str,
    method: &str,
    url: &str,
    req_headers: &[(String, String)],
    resp: CachedResponse,
    now: u64,
  ) -> Result<bool, CacheError> {
    if !method.eq_ignore_ascii_case("GET") {
      return Err(CacheError::NotGet);
    }
    if resp.status == 206 {
      return Err(CacheError::Partial);
    }
    let vary_names: Vec<String> = header(&resp.headers, "vary")
      .unwrap_or("")
      .split(',')
      .map(|v| v.trim().to_ascii_lowercase())
      .filter(|v| !v.is_empty())
      .collect();
    if vary_names.iter().any(|v| v == "*") {
      return Err(CacheError::VaryStar);
    }
    let Some(ttl) = freshness(&resp, now) else {
      return Ok(false);
    };
    let size = resp.body.len() + resp.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + url.len() + 256;
    if size > self.max_entry() {
      return Ok(false);
    }
    let vary = vary_names
      .into_iter()
      .map(|n| {
        let v = header(req_headers, &n).map(str::to_string);
        (n, v)
      })
      .collect();
    let mut g = self.lock();
    let k = key(zone, cache, url);
    g.tick += 1;
    let tick = g.tick;
    g.remove(&k);
    while g.bytes + size > self.max_bytes {
      let Some(victim) = g.order.first_key_value().map(|(_, k)| k.clone()) else {
        break;
      };
      g.remove(&victim);
    }
    g.bytes += size;
    g.order.insert(tick, k.clone());
    g.entries.insert(
      k,
      Entry {
        resp,
        vary,
        stored_at: now,
        expires_at: now.saturating_add(ttl),
        tick,
        size,
      },
    );
    Ok(true)
  }

  /// The response for a request, as the Cache API's `match` gives it: a
  /// 304 for a matching conditional request, a 206 or 416 for a single
  /// byte range, with `cf-cache-status: HIT` and `age`.
  #[allow(clippy::too_many_arguments)]
  pub fn lookup(
    &self,
    zone: &str,
    cache: &str,
    method: &str,
    url: &str,
    req_headers: &[(String, String)],
    ignore_method: bool,
    now: u64,
  ) -> Option<CachedResponse> {
    if !ignore_method && !method.eq_ignore_ascii_case("GET") {
      return None;
    }
    let k = key(zone, cache, url);
    let mut g = self.lock();
    let e = g.entries.get(&k)?;
    if e.expires_at <= now {
      g.remove(&k);
      return None;
    }
    if e.vary.iter().any(|(n, v)| header(req_headers, n) != v.as_deref()) {
      return None;
    }
    let (resp, age) = (e.resp.clone(), now - e.stored_at);
    let old_tick = e.tick;
    g.tick += 1;
    let tick = g.tick;
    g.order.remove(&old_tick);
    g.order.insert(tick, k.clone());
    if let Some(e) = g.entries.get_mut(&k) {
      e.tick = tick;
    }
    drop(g);
    Some(answer(resp, age, req_headers))
  }

  /// Removes the entry for `url`; whether there was one.
  pub fn delete(&self, zone: &str, cache: &str, method: &str, url: &str, ignore_method: bool) -> bool {
    if !ignore_method && !method.eq_ignore_ascii_case("GET") {
      return false;
    }
    let mut g = self.lock();
    g.remove(&key(zone, cache, url)).is_some()
  }

  /// The largest entry it stores, in bytes.
  pub fn max_entry(&self) -> usize {
    self.max_bytes / 8
  }

  /// Bytes held now.
  pub fn bytes(&self) -> usize {
    self.lock().bytes
  }
}

static NODE: OnceLock<HttpCache> = OnceLock::new();

impl Inner {
  /// Takes `key`'s entry out of the map, the order and the byte count.
  fn remove(&mut self, key: &str) -> Option<Entry> {
    let e = self.entries.remove(key)?;
    self.order.remove(&e.tick);
    self.bytes -= e.size;
    Some(e)
  }
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
  let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
  if_none_match.trim() == "*" || if_none_match.split(',').any(|t| weak(t) == weak(etag))
}

/// The stored response shaped for the request.
fn answer(mut resp: CachedResponse, age: u64, req: &[(String, String)]) -> CachedResponse {
  resp.headers.retain(|(k, _)| k != "age" && k != "cf-cache-status");
  resp.headers.push(("cf-cache-status".into(), "HIT".into()));
  resp.headers.push(("age".into(), age.to_string()));
  let etag = header(&resp.headers, "etag").map(str::to_string);
  let not_modified = match (header(req, "if-none-match"), etag.as_deref()) {
    (Some(inm), Some(etag)) => etag_matches(inm, etag),
    (Some(_), None) => false,
    (None, _) => match (
      header(req, "if-modified-since").and_then(parse_http_date),
      header(&resp.headers, "last-modified").and_then(parse_http_date),
    ) {
      (Some(since), Some(modified)) => modified <= since,
      _ => false,
    },
  };
  if not_modified && resp.status == 200 {
    resp.status = 304;
    resp.body = Arc::from(&[][..]);
    resp
      .headers
      .retain(|(k, _)| k != "content-length" && k != "content-type");
    return resp;
  }
  if resp.status != 200 {
    return resp;
  }
  if let Some(range) = header(req, "range") {
    let len = resp.body.len() as u64;
    match single_range(range, len) {
      Some(Ok((start, end))) => {
        resp.status = 206;
        resp.body = Arc::from(&resp.body[start as usize..=end as usize]);
        resp.headers.retain(|(k, _)| k != "content-length");
        resp
          .headers
          .push(("content-range".into(), format!("bytes {start}-{end}/{len}")));
      }
      Some(Err(())) => {
        resp.status = 416;
        resp.body = Arc::from(&[][..]);
        resp.headers.retain(|(k, _)| k != "content-length");
        resp.headers.push(("content-range".into(), format!("bytes */{len}")));
      }
      None => {}
    }
  }
  resp
}

/// A single `bytes=` range over `len` bytes: `Some(Ok(first, last))`,
/// `Some(Err)` when unsatisfiable, `None` when not one range we serve (the
/// whole response goes).
fn single_range(range: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
  let spec = range.trim().strip_prefix("bytes=")?;
  if spec.contains(',') {
    return None;
  }
  let (a, b) = spec.split_once('-')?;
  let (a, b) = (a.trim(), b.trim());
  let r = if a.is_empty() {
    let n: u64 = b.parse().ok()?;
    if n == 0 || len == 0 {
      return Some(Err(()));
    }
    (len.saturating_sub(n), len - 1)
  } else {
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() {
      len.saturating_sub(1)
    } else {
      b.parse().ok()?
    };
    if start >= len || end < start {
      return Some(Err(()));
    }
    (start, end.min(len - 1))
  };
  Some(Ok(r))
}

#[cfg(test)]
mod tests {
  use super::*;

  fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> CachedResponse {
    CachedResponse {
      status,
      headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
      body: Arc::from(body.as_bytes()),
    }
  }

  fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
  }

  #[test]
  fn dates_and_freshness() {
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
    assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(parse_http_date("not a date"), None);
    let now = 1_000_000;
    assert_eq!(
      freshness(&resp(200, &[("cache-control", "max-age=60")], ""), now),
      Some(60)
    );
    assert_eq!(
      freshness(&resp(200, &[("cache-control", "max-age=60, s-maxage=600")], ""), now),
      Some(600)
    );
    assert_eq!(freshness(&resp(200, &[("cache-control", "no-store")], ""), now), None);
    assert_eq!(
      freshness(&resp(200, &[("cache-control", "private, max-age=9")], ""), now),
      None
    );
    assert_eq!(freshness(&resp(200, &[("set-cookie", "a=b")], ""), now), None);
    assert_eq!(freshness(&resp(200, &[], ""), now), Some(7200));
    assert_eq!(freshness(&resp(500, &[], ""), now), None);
    assert_eq!(freshness(&resp(200, &[("cache-control", "max-age=0")], ""), now), None);
    let exp = resp(
      200,
      &[
        ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("expires", "Sun, 06 Nov 1994 08:50:37 GMT"),
      ],
      "",
    );
    assert_eq!(freshness(&exp, now), Some(60));
  }

  #[test]
  fn put_match_delete_by_zone_and_name() {
    let c = HttpCache::new(1 << 20);
    let r = resp(
      200,
      &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
      "hello world",
    );
    assert!(c
      .put("a.test", "default", "GET", "https://a.test/x", &[], r.clone(), 100)
      .unwrap());
    let got = c
      .lookup("a.test", "default", "GET", "https://a.test/x", &[], false, 110)
      .unwrap();
    assert_eq!((got.status, &*got.body), (200, &b"hello world"[..]));
    assert!(got.headers.contains(&("cf-cache-status".into(), "HIT".into())));
    assert!(got.headers.contains(&("age".into(), "10".into())));
    assert!(
      c.lookup("b.test", "default", "GET", "https://a.test/x", &[], false, 110)
        .is_none(),
      "another zone"
    );
    assert!(
      c.lookup("a.test", "other", "GET", "https://a.test/x", &[], false, 110)
        .is_none(),
      "another cache"
    );
    assert!(c
      .lookup("a.test", "default", "POST", "https://a.test/x", &[], false, 110)
      .is_none());
    assert!(c
      .lookup("a.test", "default", "POST", "https://a.test/x", &[], true, 110)
      .is_some());
    assert!(
      c.lookup("a.test", "default", "GET", "https://a.test/x", &[], false, 160)
        .is_none(),
      "expired"
    );
    assert!(
      !c.delete("a.test", "default", "GET", "https://a.test/x", false),
      "expired entries go"
    );
    c.put("a.test", "default", "GET", "https://a.test/x", &[], r, 100)
      .unwrap();
    assert!(c.delete("a.test", "default", "GET", "https://a.test/x", false));
    assert_eq!(c.bytes(), 0);
    assert_eq!(
      c.put(
        "a.test",
        "default",
        "POST",
        "https://a.test/y",
        &[],
        resp(200, &[], ""),
        0
      ),
      Err(CacheError::NotGet)
    );
    assert_eq!(
      c.put(
        "a.test",
        "default",
        "GET",
        "https://a.test/y",
        &[],
        resp(206, &[], ""),
        0
      ),
      Err(CacheError::Partial)
    );
    assert_eq!(
      c.put(
        "a.test",
        "default",
        "GET",
        "https://a.test/y",
        &[],
        resp(200, &[("vary", "*")], ""),
        0
      ),
      Err(CacheError::VaryStar)
    );
    assert_eq!(
      c.put(
        "a.test",
        "default",
        "GET",
        "https://a.test/y",
        &[],
        resp(200, &[("cache-control", "no-store")], ""),
        0
      ),
      Ok(false)
    );
  }

  #[test]
  fn vary_conditionals_and_ranges() {
    let c = HttpCache::new(1 << 20);
    let r = resp(
      200,
      &[
        ("cache-control", "max-age=60"),
        ("etag", "W/\"v1\""),
        ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("vary", "Accept-Language"),
        ("content-length", "10"),
      ],
      "0123456789",
    );
    let en = h(&[("accept-language", "en")]);
    c.put("z", "d", "GET", "u", &en, r, 0).unwrap();
    assert!(c
      .lookup("z", "d", "GET", "u", &h(&[("accept-language", "fr")]), false, 1)
      .is_none());
    assert!(c.lookup("z", "d", "GET", "u", &[], false, 1).is_none());
    let with = |extra: &[(&str, &str)]| {
      let mut req = en.clone();
      req.extend(h(extra));
      c.lookup("z", "d", "GET", "u", &req, false, 1).unwrap()
    };
    assert_eq!(with(&[("if-none-match", "\"v1\"")]).status, 304);
    assert_eq!(with(&[("if-none-match", "\"v2\"")]).status, 200);
    assert_eq!(
      with(&[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]).status,
      304
    );
    assert_eq!(
      with(&[("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT")]).status,
      200
    );
    let part = with(&[("range", "bytes=2-4")]);
    assert_eq!((part.status, &*part.body), (206, &b"234"[..]));
    assert!(part.headers.contains(&("content-range".into(), "bytes 2-4/10".into())));
    assert!(!part.headers.iter().any(|(k, _)| k == "content-length"));
    assert_eq!(&*with(&[("range", "bytes=-3")]).body, b"789");
    assert_eq!(&*with(&[("range", "bytes=7-")]).body, b"789");
    let bad = with(&[("range", "bytes=20-30")]);
    assert_eq!(bad.status, 416);
    assert!(bad.headers.contains(&("content-range".into(), "bytes */10".into())));
    assert_eq!(
      with(&[("range", "bytes=0-1,4-5")]).status,
      200,
      "several ranges: the whole"
    );
  }

  #[test]
  fn bounded_least_recently_used_first() {
    let c = HttpCache::new(8 * 1024);
    let body = "x".repeat(700);
    for i in 0..20 {
      c.put("z", "d", "GET", &format!("u{i}"), &[], resp(200, &[], &body), 0)
        .unwrap();
      // u0 is read each time: it stays.
      c.lookup("z", "d", "GET", "u0", &[], false, 0);
      assert!(c.bytes() <= 8 * 1024);
    }
    assert!(c.lookup("z", "d", "GET", "u0", &[], false, 0).is_some());
    assert!(c.lookup("z", "d", "GET", "u1", &[], false, 0).is_none());
    assert!(c.lookup("z", "d", "GET", "u19", &[], false, 0).is_some());
    // Larger than an eighth of the cache: not stored.
    assert_eq!(
      c.put("z", "d", "GET", "big", &[], resp(200, &[], &"y".repeat(2000)), 0),
      Ok(false)
    );
  }
}
