//! The engine as a library: built from a config value in code, handed
//! hyper requests for a named worker, no front door.

use bytes::Bytes;
use edge::config::{Config, WorkerConfig};
use http_body_util::{BodyExt, Full};

use crate::support::{examples_dir, Fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedder_hands_requests_to_a_named_worker() {
  let f = Fixture::new();
  f.file("hello.js", "export default { async fetch(req, env) { return new Response(`${env.GREETING} ${req.method} ${req.url} ${await req.text()}`) } }");
  let mut config = Config {
    base_dir: f.dir.clone(),
    origin: "in code".into(),
    ..Default::default()
  };
  config.runtime.threads = 2;
  config.workers.push(WorkerConfig {
    name: "hello".into(),
    main: "hello.js".into(),
    vars: [("GREETING".to_string(), "hi".to_string())].into(),
    ..Default::default()
  });
  config.workers.push(WorkerConfig {
    name: "stream".into(),
    main: examples_dir().join("stream/index.js"),
    ..Default::default()
  });
  let engine = edge::Engine::new(config).expect("engine");
  assert!(
    engine.http_addr().is_none() && engine.https_addr().is_none(),
    "no front door"
  );

  let req = http::Request::post("https://cdn.example/path")
    .body(Full::new(Bytes::from("payload")))
    .unwrap();
  let res = engine.handle("hello", req).await.expect("response");
  assert_eq!(res.status(), 200);
  let text = res.into_body().collect().await.unwrap().to_bytes();
  assert_eq!(text, "hi POST https://cdn.example/path payload");

  // A streamed body crosses back to the caller's thread.
  let req = http::Request::get("https://cdn.example/?chunks=2&delay=1")
    .body(Full::new(Bytes::new()))
    .unwrap();
  let res = engine.handle("stream", req).await.expect("response");
  assert_eq!(
    res.into_body().collect().await.unwrap().to_bytes(),
    "chunk 0\nchunk 1\n"
  );

  let err = engine
    .handle("nope", http::Request::new(Full::new(Bytes::new())))
    .await
    .err()
    .expect("unknown worker");
  assert_eq!(err.status(), 404);
}

/// An embedder's own code source, counting its reads.
struct CountingSource {
  files: std::collections::BTreeMap<String, &'static str>,
  reads: std::sync::atomic::AtomicUsize,
}

impl edge::ModuleSource for CountingSource {
  fn read(&self, url: &url::Url) -> Result<std::sync::Arc<[u8]>, String> {
    self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let rel = url.path().trim_start_matches("/deployed/spin/");
    self
      .files
      .get(rel)
      .map(|s| std::sync::Arc::from(s.as_bytes()))
      .ok_or_else(|| format!("{rel}: not here"))
  }
}

/// Keeps what the engine tells an embedder.
#[derive(Default)]
struct Told {
  outcomes: std::sync::Mutex<Vec<(String, edge::RequestId, u16, std::time::Duration)>>,
  lines: std::sync::Mutex<Vec<(String, edge::RequestId, edge::ConsoleLevel, String)>>,
}

impl edge::RequestObserver for Told {
  fn finished(&self, o: &edge::Outcome<'_>) {
    let row = (o.worker.to_string(), o.request_id, o.status, o.cpu);
    self.outcomes.lock().unwrap().push(row);
  }
}

impl edge::ConsoleOutput for Told {
  fn line(&self, worker: &str, request_id: edge::RequestId, level: edge::ConsoleLevel, message: &str) {
    let row = (worker.to_string(), request_id, level, message.to_string());
    self.lines.lock().unwrap().push(row);
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedder_deploys_from_its_own_source_and_reads_back_cpu_and_ids() {
  use std::sync::Arc;
  let told = Arc::new(Told::default());
  let engine = edge::Engine::builder(Config {
    origin: "in code".into(),
    ..Default::default()
  })
  .threads(1)
  .observer(told.clone())
  .console(told.clone())
  .start()
  .expect("engine");
  let source = Arc::new(CountingSource {
    files: [
      (
        "index.js".to_string(),
        "import { busy } from './lib/busy.js'; export default { fetch(req) { const n = busy(); console.warn(`spun ${n} times`); return new Response(`spun ${n}`) } }",
      ),
      (
        "lib/busy.js".to_string(),
        "export function busy() { let x = 0; for (let i = 0; i < 5e6; i++) x = (x * 31 + i) | 0; return x === 0.5 ? 0 : 5e6 }",
      ),
    ]
    .into(),
    reads: Default::default(),
  });
  let spec = edge::WorkerSpec {
    name: "spin".into(),
    main_module: "index.js".into(),
    source: source.clone(),
    version: "one".into(),
    routes: vec![],
    vars: Default::default(),
    kv: vec![],
    d1: vec![],
    r2: vec![],
    services: vec![],
    triggers: Default::default(),
    queues: Default::default(),
    secrets: Default::default(),
    limits: edge::LimitsConfig {
      cpu_ms: Some(2000),
      ..Default::default()
    },
    allow_private_network: false,
    compatibility_flags: Vec::new(),
    modules: vec!["index.js".into(), "lib/busy.js".into()],
  };
  let d = engine.deploy(spec.clone()).await.expect("deployed");
  assert!(d.changed);
  assert_eq!(
    source.reads.load(std::sync::atomic::Ordering::SeqCst),
    2,
    "both modules read"
  );
  // The same version again changes nothing.
  assert!(!engine.deploy(spec).await.expect("same version").changed);
  assert!(engine.workers().await.iter().any(|w| w.name == "spin"));

  let id = edge::RequestId::new(0xfeed, 7, 99);
  let ctx = edge::RequestContext {
    request_id: Some(id),
    deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(10)),
    ..Default::default()
  };
  let req = http::Request::get("https://cdn.example/")
    .body(Full::new(Bytes::new()))
    .unwrap();
  let done = engine.handle_with("spin", req, ctx).await.expect("answered");
  assert_eq!(done.request_id, id);
  assert!(!done.cold, "the deploy check left a warm isolate");
  // 5e6 rounds of integer arithmetic: well over a millisecond anywhere.
  assert!(
    done.cpu >= std::time::Duration::from_millis(1),
    "CPU of 5e6 loop rounds: {:?}",
    done.cpu
  );
  let body = done.response.into_body().collect().await.unwrap().to_bytes();
  assert_eq!(body, "spun 5000000");
  // The observer and the console output heard of it, under the same id.
  let outcomes = told.outcomes.lock().unwrap().clone();
  assert_eq!(outcomes.len(), 1, "{outcomes:?}");
  assert_eq!(
    (outcomes[0].0.as_str(), outcomes[0].1, outcomes[0].2),
    ("spin", id, 200)
  );
  assert_eq!(outcomes[0].3, done.cpu);
  let lines = told.lines.lock().unwrap().clone();
  assert_eq!(
    lines,
    vec![(
      "spin".to_string(),
      id,
      edge::ConsoleLevel::Warn,
      "spun 5000000 times".to_string()
    )]
  );

  // A failure carries the same figures, and a typed limit hit.
  let bad = edge::WorkerSpec {
    name: "spin".into(),
    main_module: "index.js".into(),
    source: Arc::new(
      edge::MemorySource::new(
        "spin",
        [(
          "index.js".to_string(),
          Arc::<[u8]>::from(&b"export default { fetch() { while (true) {} } }"[..]),
        )],
      )
      .unwrap(),
    ),
    version: "two".into(),
    routes: vec![],
    vars: Default::default(),
    kv: vec![],
    d1: vec![],
    r2: vec![],
    services: vec![],
    triggers: Default::default(),
    queues: Default::default(),
    secrets: Default::default(),
    limits: edge::LimitsConfig {
      cpu_ms: Some(20),
      ..Default::default()
    },
    allow_private_network: false,
    compatibility_flags: Vec::new(),
    modules: vec!["index.js".into()],
  };
  engine.deploy(bad).await.expect("a spinning handler still loads");
  let req = http::Request::get("https://cdn.example/")
    .body(Full::new(Bytes::new()))
    .unwrap();
  let failed = engine
    .handle_with("spin", req, edge::RequestContext::default())
    .await
    .err()
    .expect("stopped at its CPU limit");
  match &*failed.error {
    edge::RequestError::Limit { hit, .. } => {
      assert_eq!(hit.kind, edge::LimitKind::Cpu);
      assert_eq!(hit.limit, edge::Amount::Time(std::time::Duration::from_millis(20)));
    }
    other => panic!("not a limit hit: {other}"),
  }
  assert!(failed.cpu >= std::time::Duration::from_millis(20), "{:?}", failed.cpu);
  assert_ne!(failed.request_id, edge::RequestId(0), "the engine made an id");
  // Refused before an executor saw it: still an id, and the typed error.
  let req = http::Request::get("https://cdn.example/")
    .body(Full::new(Bytes::new()))
    .unwrap();
  let nope = engine
    .handle_with("nope", req, edge::RequestContext::default())
    .await
    .err()
    .expect("no such worker");
  assert!(
    matches!(*nope.error, edge::RequestError::NoWorker { .. }),
    "{}",
    nope.error
  );
  assert_ne!(nope.request_id, failed.request_id);
  assert_ne!(nope.request_id, edge::RequestId(0));
  engine.remove("spin").await.expect("removed");
  assert!(engine.workers().await.is_empty());
}
