//! Criterion micro-benchmarks of the hot path pieces: routing a host (the
//! `edge_core` table the router wraps),
//! taking a warm isolate from the pool, calling a warm handler, and a cold start (binding a blank isolate to a
//! worker, then calling it).
//!
//! `cargo bench -p edge --bench micro`

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use edge::config::{Config, WorkerConfig};
use edge::internals::worker::Worker;
use js_api::{CallState, Isolate, IsolateConfig, JsRequest, LogSink, WorkerLogContext};

struct NoLog;
impl LogSink for NoLog {
  fn log(&self, _: &WorkerLogContext, _: u32, _: &str) {}
}

fn hello_worker(name: &str) -> Arc<Worker> {
  let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workers");
  let config = Config {
    base_dir: dir,
    origin: "bench".into(),
    ..Default::default()
  };
  let w = WorkerConfig {
    name: name.into(),
    main: "hello/index.js".into(),
    ..Default::default()
  };
  Worker::from_config(&config, 0, &w, Default::default()).unwrap()
}

fn request() -> JsRequest {
  JsRequest {
    method: http::Method::GET,
    url: "http://bench.example/".into(),
    headers: http::HeaderMap::new(),
    body: None,
    trigger: None,
    cf: None,
    chain: None,
    entrypoint: None,
  }
}

fn call_ready(iso: &mut Isolate) {
  let (id, r) = iso.call(request(), 1);
  match r.unwrap() {
    CallState::Ready(r) => assert_eq!(r.status, 200),
    CallState::Pending(_) => panic!("hello world answers at once"),
  }
  iso.finish_request(id, false);
}

fn routing(c: &mut Criterion) {
  let w = hello_worker("w");
  let mut routes = Vec::new();
  for i in 0..1000 {
    routes.push((format!("site{i}.example.com"), w.clone()));
    routes.push((format!("*.tenant{i}.example.net"), w.clone()));
  }
  let router = edge_core::routes::Routes::new(routes);
  c.bench_function("route exact host (2000 routes)", |b| {
    b.iter(|| router.route("site500.example.com:443").unwrap())
  });
  c.bench_function("route wildcard host (2000 routes)", |b| {
    b.iter(|| router.route("api.eu.tenant500.example.net").unwrap())
  });
}

fn isolates(c: &mut Criterion) {
  js_api::init_v8(&[]);
  let rt = tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build()
    .unwrap();
  let _guard = rt.enter();
  let config = IsolateConfig::default();
  let log: Rc<dyn LogSink> = Rc::new(NoLog);
  let worker = hello_worker("hello");

  let mut warm = Isolate::new(&config).unwrap();
  rt.block_on(warm.bind(worker.code.clone(), &worker.net, 50, log.clone()))
    .unwrap();
  c.bench_function("warm call: hello world handler", |b| b.iter(|| call_ready(&mut warm)));
  drop(warm);

  c.bench_function("cold start: bind a blank isolate + call", |b| {
    b.iter_batched(
      || Isolate::new(&config).unwrap(),
      |mut iso| {
        rt.block_on(iso.bind(worker.code.clone(), &worker.net, 50, log.clone()))
          .unwrap();
        call_ready(&mut iso);
        iso
      },
      BatchSize::PerIteration,
    )
  });

  c.bench_function(
    "cold start of a never-seen worker: bind + call (no module or code cache)",
    |b| {
      b.iter_batched(
        || (Isolate::new(&config).unwrap(), hello_worker("fresh")),
        |(mut iso, fresh)| {
          rt.block_on(iso.bind(fresh.code.clone(), &fresh.net, 50, log.clone()))
            .unwrap();
          call_ready(&mut iso);
          iso
        },
        BatchSize::PerIteration,
      )
    },
  );

  c.bench_function("second call of a freshly bound isolate", |b| {
    b.iter_batched(
      || {
        let mut iso = Isolate::new(&config).unwrap();
        rt.block_on(iso.bind(worker.code.clone(), &worker.net, 50, log.clone()))
          .unwrap();
        call_ready(&mut iso);
        iso
      },
      |mut iso| {
        call_ready(&mut iso);
        iso
      },
      BatchSize::PerIteration,
    )
  });

  c.bench_function("blank isolate from the snapshot (the supply's cost)", |b| {
    b.iter_batched(|| (), |_| Isolate::new(&config).unwrap(), BatchSize::PerIteration)
  });
}

/// Taking a warm isolate from a thread's pool and giving it back (what a
/// warm request pays the pool, without the call).
fn pool(c: &mut Criterion) {
  use edge::internals::pool::{Head, Member};
  let rt = tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build()
    .unwrap();
  let local = tokio::task::LocalSet::new();
  let watchdog = edge::internals::limits::Watchdog::start(Default::default()).unwrap();
  let worker = hello_worker("pooled");
  let limits = edge::internals::pool::PoolLimits {
    // No blank supply: releasing never schedules a refill.
    blank_target: 0,
    max_per_worker: 8,
    max_per_isolate: 256,
    max_isolates: 64,
    max_idle_heap: 1 << 30,
    idle_timeout: std::time::Duration::from_secs(300),
    max_queue: std::time::Duration::from_secs(10),
  };
  let pool = local.block_on(&rt, async {
    let pool = edge::internals::pool::Pool::new(
      IsolateConfig::default(),
      Rc::new(NoLog),
      limits,
      Arc::default(),
      watchdog.deadline_maker().for_this_thread(Default::default()),
    );
    pool.prepare(&worker, true).await.unwrap();
    pool
  });
  let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
  c.bench_function("a hello request through a warm isolate of the pool", |b| {
    b.iter(|| {
      local.block_on(&rt, async {
        let member = Member::new(
          request(),
          edge::RequestId(1),
          std::time::Duration::from_secs(1),
          deadline,
        );
        let (ticket, cold) = pool.join(&worker, member).await.unwrap();
        assert!(!cold);
        assert!(matches!(ticket.await, Head::Response { .. }));
      })
    })
  });
}

criterion_group! {
  name = benches;
  config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(4));
  targets = routing, isolates, pool
}
criterion_main!(benches);
