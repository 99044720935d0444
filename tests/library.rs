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
