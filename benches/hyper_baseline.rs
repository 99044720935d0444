//! The ceiling for the end-to-end benchmarks: a bare hyper server on one
//! thread answering the benchmark worker's routes (`workers/bench`) with
//! the same bytes, in Rust: `/` "Hello World!", `POST /json` the same JSON
//! summary, `/stream` 1 MiB in 16 chunks; `/sleep` "slept" after 50 ms (the
//! upstream of the concurrency benchmark, benches/concurrency.sh). HTTP/1.1
//! and HTTP/2 (h2c, or ALPN with `--tls`).
//!
//! `cargo run --release -p edge --example hyper_baseline -- 127.0.0.1:9000 [--tls cert.pem key.pem]`

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

type Body = BoxBody<Bytes, Infallible>;

async fn handle(req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
  let res = match req.uri().path() {
    "/sleep" => {
      tokio::time::sleep(std::time::Duration::from_millis(50)).await;
      Response::new(Full::new(Bytes::from_static(b"slept")).boxed())
    }
    "/json" => {
      let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
      let order: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
      let items = order["items"].as_array().cloned().unwrap_or_default();
      let total: f64 = items
        .iter()
        .map(|i| i["price"].as_f64().unwrap_or(0.0) * i["qty"].as_f64().unwrap_or(0.0))
        .sum();
      let mut tags: Vec<String> = order["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_uppercase))
        .collect();
      tags.sort();
      let out = serde_json::json!({
        "id": order["id"],
        "customer": order["customer"]["name"].as_str().unwrap_or("").to_uppercase(),
        "lines": items.len(),
        "total": total,
        "tags": tags,
      });
      let mut res = Response::new(Full::new(Bytes::from(out.to_string())).boxed());
      res
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
      res
    }
    "/stream" => {
      let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
      let chunks = futures::stream::iter((0..16).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))));
      let mut res = Response::new(StreamBody::new(chunks).boxed());
      res
        .headers_mut()
        .insert("content-type", "application/octet-stream".parse().unwrap());
      res
    }
    _ => {
      let mut res = Response::new(Full::new(Bytes::from_static(b"Hello World!")).boxed());
      res
        .headers_mut()
        .insert("content-type", "text/plain;charset=UTF-8".parse().unwrap());
      res
    }
  };
  Ok(res)
}

fn tls_config(cert: &str, key: &str) -> std::io::Result<Arc<rustls::ServerConfig>> {
  let certs = rustls_pemfile::certs(&mut std::fs::read(cert)?.as_slice()).collect::<Result<Vec<_>, _>>()?;
  let key = rustls_pemfile::private_key(&mut std::fs::read(key)?.as_slice())?
    .ok_or_else(|| std::io::Error::other("no private key"))?;
  let mut sc = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(std::io::Error::other)?;
  sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
  Ok(Arc::new(sc))
}

fn main() -> std::io::Result<()> {
  let args: Vec<String> = std::env::args().collect();
  let addr = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:9000".into());
  let tls = match args.get(2).map(String::as_str) {
    Some("--tls") => Some(tokio_rustls::TlsAcceptor::from(tls_config(&args[3], &args[4])?)),
    _ => None,
  };
  let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
  rt.block_on(async move {
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("hyper baseline on {addr}");
    loop {
      let (tcp, _) = listener.accept().await?;
      let _ = tcp.set_nodelay(true);
      let tls = tls.clone();
      tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        let svc = hyper::service::service_fn(handle);
        let _ = match tls {
          Some(acceptor) => match acceptor.accept(tcp).await {
            Ok(stream) => builder.serve_connection(TokioIo::new(stream), svc).await,
            Err(_) => Ok(()),
          },
          None => builder.serve_connection(TokioIo::new(tcp), svc).await,
        };
      });
    }
  })
}
