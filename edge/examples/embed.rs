//! Embedding the runtime in another program (a CDN node's proxy, say): the
//! engine is built from a config value, without a config file or the TLS
//! front door, and handed hyper requests for a named worker.
//!
//! Run: `cargo run -p edge --example embed`

use bytes::Bytes;
use edge::config::{Config, WorkerConfig};
use http_body_util::{BodyExt, Full};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
  let workers = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workers");
  let mut config = Config {
    base_dir: workers.clone(),
    origin: "embed example".into(),
    ..Default::default()
  };
  config.runtime.threads = 1;
  config.workers.push(WorkerConfig {
    name: "api".into(),
    main: "api/index.js".into(),
    ..Default::default()
  });
  let engine = edge::Engine::new(config)?;

  let req = http::Request::post("https://api.example/orders")
    .header("content-type", "application/json")
    .body(Full::new(Bytes::from(
      r#"{"id":1,"items":[{"name":"tea","price":3,"qty":2}]}"#,
    )))?;
  let res = engine.handle("api", req).await?;
  println!("{}", res.status());
  let body = res
    .into_body()
    .collect()
    .await
    .map_err(|e| anyhow::anyhow!(e))?
    .to_bytes();
  println!("{}", String::from_utf8_lossy(&body));
  engine.shutdown();
  Ok(())
}
