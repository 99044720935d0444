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
  let mut toml = format!("[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 2\nmax_isolates = {CAP}\n");
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

#[tokio::test]
async fn a_client_hello_warms_its_worker_before_the_request() {
  let f = Fixture::new();
  f.file("w.js", COUNTER);
  let engine = f.start(
    "[listen]\nhttps = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n[[tls]]\nhosts = [\"*.warm.test\"]\nself_signed = true\n[[worker]]\nname = \"a\"\nmain = \"w.js\"\nroutes = [\"a.warm.test\"]\n",
  );
  let before = engine.stats();
  let tls = tls_connect(
    engine.https_addr().unwrap(),
    Some("a.warm.test"),
    &engine.certificates_pem(),
    &[],
  )
  .await
  .unwrap();
  let mut c = H1::over(tls).await;
  // Give the warm-up its moment; the request would wait for it anyway.
  for _ in 0..100 {
    if engine.stats().live_isolates == 1 {
      break;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
  assert_eq!(c.get("a.warm.test", "/").await.body, "1");
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
