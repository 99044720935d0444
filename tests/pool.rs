//! The isolate pool: eviction and re-warming stay invisible to clients, the
//! isolate cap holds over many workers, and a ClientHello warms its worker.

use std::fmt::Write as _;
use std::time::Duration;

use crate::support::{get, tls_connect, Fixture, H1};

const COUNTER: &str = "let n = 0; export default { fetch() { n++; return new Response(String(n)) } }";

#[tokio::test]
async fn an_evicted_worker_is_rewarmed_and_keeps_serving() {
  let f = Fixture::new();
  f.file("w.js", COUNTER);
  let engine = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\nmax_isolates = 1\n[[worker]]\nname = \"a\"\nmain = \"w.js\"\nroutes = [\"a.test\"]\n[[worker]]\nname = \"b\"\nmain = \"w.js\"\nroutes = [\"b.test\"]\n",
  );
  let mut c = H1::connect(engine.http_addr().unwrap()).await;
  assert_eq!(c.get("a.test", "/").await.body, "1");
  assert_eq!(c.get("a.test", "/").await.body, "2", "warm: same isolate");
  assert_eq!(c.get("b.test", "/").await.body, "1", "b takes the only slot");
  assert_eq!(c.get("a.test", "/").await.body, "1", "a was evicted and starts fresh");
  let s = engine.stats();
  assert_eq!(
    (s.cold_starts, s.warm_starts, s.evictions, s.live_isolates),
    (3, 1, 2, 1),
    "{s:?}"
  );
}

#[tokio::test]
async fn idle_isolates_are_dropped_after_the_idle_timeout() {
  let f = Fixture::new();
  f.file("w.js", COUNTER);
  let engine = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\nidle_timeout_s = 1\n[[worker]]\nname = \"a\"\nmain = \"w.js\"\nroutes = [\"a.test\"]\n",
  );
  let a = engine.http_addr().unwrap();
  assert_eq!(get(a, "a.test", "/").await.body, "1");
  for _ in 0..60 {
    if engine.stats().evictions == 1 {
      break;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
  assert_eq!(engine.stats().live_isolates, 0, "{:?}", engine.stats());
  assert_eq!(get(a, "a.test", "/").await.body, "1", "served again, cold");
}

#[tokio::test]
async fn ten_thousand_workers_in_sequence_stay_under_the_cap() {
  const WORKERS: usize = 10_000;
  const CAP: usize = 64;
  let f = Fixture::new();
  f.file(
    "w.js",
    "export default { fetch(req, env) { return new Response(env.ID) } }",
  );
  let mut toml =
    format!("[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 2\nmax_isolates = {CAP}\ncheck_at_start = false\n");
  for i in 0..WORKERS {
    let _ = write!(
      toml,
      "[[worker]]\nname = \"w{i}\"\nmain = \"w.js\"\nroutes = [\"w{i}.many.test\"]\n[worker.vars]\nID = \"{i}\"\n"
    );
  }
  let engine = f.start(&toml);
  let mut c = H1::connect(engine.http_addr().unwrap()).await;
  let mut peak = 0;
  for i in 0..WORKERS {
    let r = c.get(&format!("w{i}.many.test"), "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, i.to_string().as_str()));
    peak = peak.max(engine.stats().live_isolates);
  }
  let s = engine.stats();
  assert!(peak <= CAP as i64, "peak {peak} isolates over the cap of {CAP}");
  assert_eq!(s.cold_starts, WORKERS as u64);
  assert!(s.evictions >= (WORKERS - CAP) as u64, "{s:?}");
}

/// A TLS config of `workers` (`w0.warm.test`...) on one thread.
fn warm_config(workers: usize, runtime: &str) -> String {
  let mut toml = format!(
    "[listen]\nhttps = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n{runtime}\n[[tls]]\nhosts = [\"*.warm.test\"]\nself_signed = true\n"
  );
  for i in 0..workers {
    toml += &format!("[[worker]]\nname = \"w{i}\"\nmain = \"w.js\"\nroutes = [\"w{i}.warm.test\"]\n");
  }
  toml
}

/// Sends a ClientHello for `sni` and never goes on (the connection is
/// returned, to keep it open).
async fn hello_only(engine: &edge::Engine, sni: &str) -> tokio::net::TcpStream {
  use tokio::io::AsyncWriteExt;
  let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
  let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
  let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
  let mut hello = Vec::new();
  conn.write_tls(&mut hello).unwrap();
  let mut tcp = tokio::net::TcpStream::connect(engine.https_addr().unwrap())
    .await
    .unwrap();
  tcp.write_all(&hello).await.unwrap();
  tcp
}

/// Waits (up to 10 s) for `cond` on the engine's stats.
async fn until(engine: &edge::Engine, cond: impl Fn(&edge::StatsSnapshot) -> bool) -> edge::StatsSnapshot {
  for _ in 0..1000 {
    let s = engine.stats();
    if cond(&s) {
      return s;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
  engine.stats()
}

#[tokio::test]
async fn a_client_hello_warms_a_recently_used_worker_before_the_request() {
  let f = Fixture::new();
  f.file("w.js", COUNTER);
  let engine = f.start(&warm_config(1, "idle_timeout_s = 1"));
  let pems = engine.certificates_pem();
  let addr = engine.https_addr().unwrap();
  // Served once; its isolate is dropped when idle.
  let tls = tls_connect(addr, Some("w0.warm.test"), &pems, &[]).await.unwrap();
  assert_eq!(H1::over(tls).await.get("w0.warm.test", "/").await.body, "1");
  let s = until(&engine, |s| s.live_isolates == 0).await;
  assert_eq!(s.live_isolates, 0, "{s:?}");
  let before = engine.stats();
  let tls = tls_connect(addr, Some("w0.warm.test"), &pems, &[]).await.unwrap();
  let mut c = H1::over(tls).await;
  // The warm-up is done when its isolate is idle (bound and evaluated).
  let idle = engine.stats_detail().worker("w0");
  for _ in 0..1000 {
    if idle.idle_isolates.get() == 1 {
      break;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
  assert_eq!(idle.idle_isolates.get(), 1, "the ClientHello bound an isolate");
  assert_eq!(c.get("w0.warm.test", "/").await.body, "1");
  let after = engine.stats();
  assert_eq!(after.sni_warmups - before.sni_warmups, 1, "{after:?}");
  assert_eq!(
    after.warm_starts - before.warm_starts,
    1,
    "the request found a warm isolate: {after:?}"
  );
  assert_eq!(
    after.cold_starts, before.cold_starts,
    "no cold start on the request path: {after:?}"
  );
}

#[tokio::test]
async fn client_hellos_alone_bind_nothing_evict_nothing_and_are_rate_limited() {
  let f = Fixture::new();
  f.file("w.js", COUNTER);
  let engine = f.start(&warm_config(40, "idle_timeout_s = 1\nmax_isolates = 32"));
  let pems = engine.certificates_pem();
  let addr = engine.https_addr().unwrap();
  // Hosts never asked for: no isolate for their handshakes.
  let mut open = Vec::new();
  for i in 0..40 {
    open.push(hello_only(&engine, &format!("w{i}.warm.test")).await);
  }
  tokio::time::sleep(Duration::from_millis(300)).await;
  let s = engine.stats();
  assert_eq!((s.sni_warmups, s.live_isolates), (0, 0), "{s:?}");
  drop(open);
  // Every host served once, then all gone idle.
  for i in 0..32 {
    let host = format!("w{i}.warm.test");
    let tls = tls_connect(addr, Some(&host), &pems, &[]).await.unwrap();
    assert_eq!(H1::over(tls).await.get(&host, "/").await.status, 200);
  }
  let s = until(&engine, |s| s.live_isolates == 0).await;
  assert_eq!(s.live_isolates, 0, "{s:?}");
  // 32 handshakes for recent hosts at once: a burst of 8 warms, not 32.
  let started = std::time::Instant::now();
  let mut open = Vec::new();
  for i in 0..32 {
    open.push(hello_only(&engine, &format!("w{i}.warm.test")).await);
  }
  let took = started.elapsed();
  tokio::time::sleep(Duration::from_millis(300)).await;
  let warmed = engine.stats().sni_warmups;
  let allowed = 8 + (took.as_secs_f64() * 8.0).ceil() as u64;
  assert!((1..=allowed).contains(&warmed), "{warmed} warm-ups in {took:?}");
  drop(open);
}

#[tokio::test]
async fn a_client_hello_never_evicts_a_warm_isolate() {
  let f = Fixture::new();
  f.file("w.js", COUNTER);
  let engine = f.start(&warm_config(2, "max_isolates = 1"));
  let pems = engine.certificates_pem();
  let addr = engine.https_addr().unwrap();
  // w0 served, then w1 (w0's idle isolate evicted for it).
  for host in ["w0.warm.test", "w1.warm.test"] {
    let tls = tls_connect(addr, Some(host), &pems, &[]).await.unwrap();
    assert_eq!(H1::over(tls).await.get(host, "/").await.body, "1");
  }
  let before = engine.stats();
  let _open = hello_only(&engine, "w0.warm.test").await;
  tokio::time::sleep(Duration::from_millis(300)).await;
  let tls = tls_connect(addr, Some("w1.warm.test"), &pems, &[]).await.unwrap();
  assert_eq!(
    H1::over(tls).await.get("w1.warm.test", "/").await.body,
    "2",
    "w1's isolate kept its state"
  );
  let after = engine.stats();
  assert_eq!(after.sni_warmups, before.sni_warmups, "{after:?}");
  assert_eq!(after.evictions, before.evictions, "{after:?}");
}

#[tokio::test]
async fn the_code_cache_is_kept_across_restarts() {
  let f = Fixture::new();
  // A module with enough code that V8 makes a cache for it.
  let mut js = String::from("const table = {\n");
  for i in 0..200 {
    let _ = writeln!(js, "  f{i}(x) {{ return x * {i} + {i}; }},");
  }
  js.push_str("};\nexport default { fetch() { return new Response(String(table.f7(6))) } }\n");
  f.file("w.js", js);
  let config = "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\ncode_cache_dir = \"cache\"\n[[worker]]\nname = \"a\"\nmain = \"w.js\"\nroutes = [\"a.test\"]\n";
  let cached = |f: &Fixture| -> Vec<std::path::PathBuf> {
    std::fs::read_dir(f.path("cache"))
      .map(|d| d.map(|e| e.unwrap().path()).collect())
      .unwrap_or_default()
  };
  {
    let engine = f.start(config);
    assert_eq!(get(engine.http_addr().unwrap(), "a.test", "/").await.body, "49");
    let w = engine.stats_detail().worker("a");
    assert_eq!((w.code_cache_read.get(), w.code_cache_written.get()), (0, 1));
  }
  let files = cached(&f);
  assert_eq!(files.len(), 1, "{files:?}");
  assert!(files[0].to_string_lossy().ends_with(".v8cache"), "{files:?}");
  // A restart: V8 takes the cache (it would otherwise make and write one).
  let engine = f.start(config);
  assert_eq!(get(engine.http_addr().unwrap(), "a.test", "/").await.body, "49");
  let w = engine.stats_detail().worker("a");
  assert_eq!((w.code_cache_read.get(), w.code_cache_written.get()), (1, 0));
  // A cache V8 rejects is made again.
  std::fs::write(&files[0], b"not a code cache").unwrap();
  drop(engine);
  let engine = f.start(config);
  assert_eq!(get(engine.http_addr().unwrap(), "a.test", "/").await.body, "49");
  let w = engine.stats_detail().worker("a");
  assert_eq!((w.code_cache_read.get(), w.code_cache_written.get()), (1, 1));
  assert_ne!(std::fs::read(&files[0]).unwrap(), b"not a code cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_finds_every_isolate_busy_gets_503_with_retry_after() {
  let f = Fixture::new();
  f.file(
    "hold.js",
    "export default { async fetch(req) { if (new URL(req.url).pathname === '/hold') { console.log('holding the only isolate'); await new Promise(r => setTimeout(r, 3000)) } return new Response('done') } }",
  );
  let engine = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\nmax_isolates_per_worker = 1\nmax_requests_per_isolate = 1\nmax_queue_ms = 200\n[[worker]]\nname = \"hold\"\nmain = \"hold.js\"\nroutes = [\"hold.test\"]\n",
  );
  let addr = engine.http_addr().unwrap();
  let held = tokio::spawn(async move { crate::support::get(addr, "hold.test", "/hold").await });
  // The first request holds the worker's one isolate (3 s) once it logs.
  for _ in 0..500 {
    if crate::support::logs().contains("holding the only isolate") {
      break;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
  assert!(crate::support::logs().contains("holding the only isolate"));
  let started = std::time::Instant::now();
  let busy = crate::support::get(addr, "hold.test", "/").await;
  assert_eq!(busy.status, 503, "{}", busy.body);
  assert_eq!(busy.headers["retry-after"], "1");
  assert!(busy.body.contains("busy"), "{}", busy.body);
  assert!(
    started.elapsed() >= Duration::from_millis(200),
    "it waited the queue time first"
  );
  assert_eq!(engine.stats_detail().queue_timeouts.get(), 1);
  // The held request still finishes, and the worker serves again after.
  assert_eq!(held.await.unwrap().body, "done");
  assert_eq!(crate::support::get(addr, "hold.test", "/").await.body, "done");
}
