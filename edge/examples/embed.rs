//! Embedding the engine in a CDN node's own proxy: no front door, a worker
//! deployed from code held in memory, requests handed in with the node's
//! own request id and a deadline, and the CPU time each one cost read back
//! for billing. Uses only the curated API of the `edge` crate.
//!
//! `cargo run --release -p edge --example embed`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge::config::Config;
use edge::{Engine, MemorySource, RequestContext, RequestId, WorkerSpec};
use http_body_util::{BodyExt, Full};

const WORKER: &str = r#"
export default {
  async fetch(request, env) {
    const { n } = await request.json();
    let sum = 0;
    for (let i = 0; i < n; i++) sum += i;
    return Response.json({ sum, greeting: env.GREETING });
  },
};
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
  let engine = Engine::builder(Config::default()).threads(1).start()?;

  // Code from anywhere: here a string; a CDN would read its own store.
  let files = [("index.js".to_string(), Arc::<[u8]>::from(WORKER.as_bytes()))];
  let spec = WorkerSpec {
    name: "sum".into(),
    main_module: "index.js".into(),
    source: Arc::new(MemorySource::new("sum", files)?),
    version: "v1".into(),
    routes: vec![],
    vars: [("GREETING".to_string(), "hello".to_string())].into(),
    kv: vec![],
    d1: vec![],
    r2: vec![],
    services: vec![],
    triggers: Default::default(),
    queues: Default::default(),
    secrets: Default::default(),
    limits: Default::default(),
    allow_private_network: false,
    compatibility_flags: Vec::new(),
    modules: vec!["index.js".into()],
  };
  let deployed = engine.deploy(spec).await?;
  println!("deployed {} version {}", deployed.name, deployed.version);

  for (i, n) in [10u64, 1_000_000].into_iter().enumerate() {
    let req = http::Request::post("https://sum.example/").body(Full::new(Bytes::from(format!("{{\"n\":{n}}}"))))?;
    let ctx = RequestContext {
      request_id: Some(RequestId::new(0x0cd1, 0, i as u64 + 1)),
      deadline: Some(Instant::now() + Duration::from_secs(5)),
      ..Default::default()
    };
    match engine.handle_with("sum", req, ctx).await {
      Ok(done) => {
        let status = done.response.status();
        let body = done.response.into_body().collect().await?.to_bytes();
        println!(
          "{} {status} {} cpu={:?} {}",
          done.request_id,
          String::from_utf8_lossy(&body),
          done.cpu,
          if done.cold { "cold" } else { "warm" }
        );
      }
      Err(failed) => println!(
        "{} failed after {:?} of CPU: {}",
        failed.request_id, failed.cpu, failed.error
      ),
    }
  }
  engine.shutdown();
  Ok(())
}
