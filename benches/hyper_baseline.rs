//! The ceiling for the end-to-end benchmarks: a bare hyper server on one
//! thread answering every request with the same bytes as the hello-world
//! worker (`Hello from <host>`, text/plain;charset=UTF-8).
//!
//! `cargo run --release -p edge --example hyper_baseline -- 127.0.0.1:9000`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn main() -> std::io::Result<()> {
  let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".into());
  let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
  rt.block_on(async move {
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("hyper baseline on http://{addr}");
    loop {
      let (tcp, _) = listener.accept().await?;
      let _ = tcp.set_nodelay(true);
      tokio::spawn(async move {
        let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
          let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("");
          let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
          let mut res = Response::new(Full::new(Bytes::from(format!("Hello from {host}\n"))));
          res
            .headers_mut()
            .insert("content-type", "text/plain;charset=UTF-8".parse().unwrap());
          Ok::<_, Infallible>(res)
        });
        let _ = hyper::server::conn::http1::Builder::new()
          .serve_connection(TokioIo::new(tcp), svc)
          .await;
      });
    }
  })
}
