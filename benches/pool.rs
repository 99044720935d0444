//! Pool benchmarks, each beside its baseline in the same run:
//! - cold start with a blank isolate ready, and with the supply exhausted,
//!   beside a warm request (server side: from the request reaching the
//!   executor to the response head);
//! - resident memory per idle warm hello-world worker, over 1,000 workers,
//!   beside the memory of the engine with no worker warm (measured first,
//!   while the process is fresh).
//!
//! `cargo bench -p edge --bench pool` (release build).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::config::{Config, WorkerConfig};
use http_body_util::Full;

const COLD: usize = 400;
const WARM_WORKERS: usize = 1000;

fn config(workers: usize, blank: usize) -> Config {
  let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workers");
  let mut c = Config {
    base_dir: dir,
    origin: "bench".into(),
    ..Default::default()
  };
  c.runtime.threads = 1;
  c.runtime.blank_isolates = blank;
  c.runtime.max_isolates = workers + 16;
  for i in 0..workers {
    c.workers.push(WorkerConfig {
      name: format!("w{i}"),
      main: "hello/index.js".into(),
      ..Default::default()
    });
  }
  c
}

fn req() -> http::Request<Full<Bytes>> {
  http::Request::get("http://bench.example/")
    .body(Full::new(Bytes::new()))
    .unwrap()
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
  v.sort();
  v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
  format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn rss() -> u64 {
  let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
  s.split_whitespace()
    .nth(1)
    .and_then(|v| v.parse::<u64>().ok())
    .unwrap_or(0)
    * 4096
}

async fn cold_starts(blank: usize, pause: Duration) -> (Vec<Duration>, Vec<Duration>, (f64, f64, f64, f64)) {
  let engine = edge::Engine::new(config(COLD, blank)).unwrap();
  let (mut cold, mut warm) = (Vec::new(), Vec::new());
  for i in 0..COLD {
    tokio::time::sleep(pause).await; // let the blank supply refill
    let t = Instant::now();
    let res = engine.handle(&format!("w{i}"), req()).await.unwrap();
    cold.push(t.elapsed());
    assert_eq!(res.status(), 200);
    tokio::time::sleep(pause).await;
    let t = Instant::now();
    let res = engine.handle(&format!("w{i}"), req()).await.unwrap();
    warm.push(t.elapsed());
    assert_eq!(res.status(), 200);
  }
  let h = engine.stats_detail();
  let server = (
    h.cold_latency.quantile_us(0.5),
    h.cold_latency.quantile_us(0.99),
    h.warm_latency.quantile_us(0.5),
    h.warm_latency.quantile_us(0.99),
  );
  let s = engine.stats();
  assert_eq!(s.cold_starts as usize, COLD);
  if blank > 0 {
    assert_eq!(s.blank_misses, 0, "a blank isolate was ready for every cold start");
  }
  (cold, warm, server)
}

/// Cold starts back to back, as under load: `BURST` blank isolates are made
/// first, then each request goes to a worker never served before, with no
/// pause (the executor's caches stay warm; refills wait for idle turns).
/// Server side, bucket bounds.
async fn cold_burst() -> (f64, f64) {
  const BURST: usize = 50;
  let engine = edge::Engine::new(config(BURST, BURST)).unwrap();
  // Let the executor make its supply.
  for _ in 0..500 {
    if engine.stats_detail().blank_isolates.get() as usize >= BURST {
      break;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  assert!(
    engine.stats_detail().blank_isolates.get() as usize >= BURST,
    "supply made"
  );
  for i in 0..BURST {
    let res = engine.handle(&format!("w{i}"), req()).await.unwrap();
    assert_eq!(res.status(), 200);
  }
  let s = engine.stats();
  assert_eq!(s.cold_starts as usize, BURST);
  assert_eq!(s.blank_misses, 0, "a blank isolate was ready for every cold start");
  let h = &engine.stats_detail().cold_latency;
  (h.quantile_us(0.5), h.quantile_us(0.99))
}

/// First request to a worker with a large module (a 600 KB bundle of
/// 6,000 small functions) in a fresh engine, as after a restart: without a
/// code cache directory, and with one that the previous engine filled.
/// Median of 7, server side (bucket bounds).
async fn restart_cold_start() -> (f64, f64) {
  let dir = std::env::temp_dir().join(format!("edge-pool-bench-{}", std::process::id()));
  let _ = std::fs::remove_dir_all(&dir);
  std::fs::create_dir_all(&dir).unwrap();
  let mut js = String::from("const t = {\n");
  for i in 0..6000 {
    js.push_str(&format!(
      "  f{i}(x) {{ const y = x * {i} + 1; return y > 10 ? y - {i} : String(y).length; }},\n"
    ));
  }
  js.push_str("};\nexport default { fetch() { return new Response(String(t.f5(2))) } }\n");
  std::fs::write(dir.join("big.js"), js).unwrap();
  let first = |cache: bool| {
    let dir = dir.clone();
    async move {
      let mut c = Config {
        base_dir: dir.clone(),
        origin: "bench".into(),
        ..Default::default()
      };
      c.runtime.threads = 1;
      if cache {
        c.runtime.code_cache_dir = Some(dir.join("cache"));
      }
      c.workers.push(WorkerConfig {
        name: "big".into(),
        main: "big.js".into(),
        ..Default::default()
      });
      let engine = edge::Engine::new(c).unwrap();
      tokio::time::sleep(Duration::from_millis(100)).await; // blank supply made
      let res = engine.handle("big", req()).await.unwrap();
      assert_eq!(res.status(), 200);
      engine.stats_detail().cold_latency.quantile_us(0.5)
    }
  };
  let median = |mut v: Vec<f64>| {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
  };
  let mut without = Vec::new();
  let mut with = Vec::new();
  first(true).await; // fills the cache directory
  for _ in 0..7 {
    without.push(first(false).await);
    with.push(first(true).await);
  }
  let _ = std::fs::remove_dir_all(&dir);
  (median(without), median(with))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
  println!("== memory per idle warm worker ({WARM_WORKERS} hello-world workers, 1 thread)");
  let engine = edge::Engine::new(config(WARM_WORKERS, 2)).unwrap();
  tokio::time::sleep(Duration::from_millis(200)).await;
  let before = rss();
  for i in 0..WARM_WORKERS {
    let res = engine.handle(&format!("w{i}"), req()).await.unwrap();
    assert_eq!(res.status(), 200);
  }
  // Idle: past the pool's one second before it collects an idle
  // isolate's garbage.
  tokio::time::sleep(Duration::from_millis(2500)).await;
  let after = rss();
  assert_eq!(engine.stats().live_isolates as usize, WARM_WORKERS);
  println!(
    "engine, no worker warm (baseline) {:.1} MB RSS",
    before as f64 / 1048576.0
  );
  println!(
    "after {WARM_WORKERS} warm workers        {:.1} MB RSS: {:.2} MB per worker",
    after as f64 / 1048576.0,
    (after - before) as f64 / 1048576.0 / WARM_WORKERS as f64
  );
  let heap: i64 = (0..WARM_WORKERS)
    .map(|i| engine.stats_detail().worker(&format!("w{i}")).heap_bytes.get())
    .sum();
  println!(
    "of which V8 heap in use, ArrayBuffers and Wasm (as the pool counts them): {:.2} MB per worker",
    heap as f64 / 1048576.0 / WARM_WORKERS as f64
  );
  drop(engine);

  println!("== cold start (engine.handle round trip, 1 executor thread, {COLD} workers)");
  let us = |v: f64| format!("{:.3} ms", v / 1e3);
  let (cold, warm, s) = cold_starts(2, Duration::from_millis(8)).await;
  println!("                          round trip (caller's thread)   server side (to response head, bucket bound)");
  let row = |name: &str, round: &[Duration], server: (f64, f64)| {
    println!(
      "{name:<25} p50 {}  p99 {}   p50 {}  p99 {}",
      ms(pct(round.to_vec(), 0.5)),
      ms(pct(round.to_vec(), 0.99)),
      us(server.0),
      us(server.1)
    )
  };
  row("warm request (baseline)", &warm, (s.2, s.3));
  row("cold, blank isolate ready", &cold, (s.0, s.1));
  let (cold, _, s) = cold_starts(0, Duration::from_millis(1)).await;
  row("cold, supply exhausted", &cold, (s.0, s.1));
  let (without, with) = restart_cold_start().await;
  println!(
    "first request after a restart, 600 KB module: {} without runtime.code_cache_dir (baseline), {} with it",
    us(without),
    us(with)
  );
  let (p50, p99) = cold_burst().await;
  println!(
    "{:<25} {:>37}   p50 {}  p99 {}",
    "cold, back to back",
    "",
    us(p50),
    us(p99)
  );
}
