//! Bodies stream both ways: a response reaches the client chunk by chunk
//! before the stream ends, and a large upload echoed back keeps memory flat.

use bytes::Bytes;
use http_body_util::BodyExt;

use crate::support::{examples_dir, resident_memory_lock, rss_bytes, streamed_body, Fixture, Upstream, H1};

#[tokio::test]
async fn response_chunks_arrive_before_the_stream_ends() {
  let up = Upstream::start(None).await;
  let f = Fixture::new();
  // The second chunk waits on the upstream's /gate, which the test opens
  // only after it has received the first chunk.
  f.file(
    "s.js",
    r#"export default {
  fetch(req, env) {
    if (new URL(req.url).pathname === "/quick") return new Response("quick");
    const enc = new TextEncoder();
    const body = new ReadableStream({
      async start(c) {
        c.enqueue(enc.encode("first;"));
        await (await fetch(env.UP + "/gate")).text();
        c.enqueue(enc.encode("second;"));
        c.close();
      },
    });
    return new Response(body);
  },
};"#,
  );
  let engine = f.start(&format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"s\"\nmain = \"s.js\"\nroutes = [\"s.test\"]\nallow_private_network = true\n[worker.vars]\nUP = \"http://{}\"\n",
    up.addr
  ));
  let mut c = H1::connect(engine.http_addr().unwrap()).await;
  let req = http::Request::get("/")
    .header("host", "s.test")
    .body(crate::support::empty())
    .unwrap();
  let res = c.send(req).await;
  assert_eq!(res.status(), 200);
  let mut body = res.into_body();
  let first = body
    .frame()
    .await
    .expect("a first frame")
    .expect("frame")
    .into_data()
    .unwrap();
  assert_eq!(first, Bytes::from_static(b"first;"));
  // The second chunk cannot exist before this: the gate is still shut.
  up.gate.notify_one();
  let rest = body.collect().await.unwrap().to_bytes();
  assert_eq!(rest, Bytes::from_static(b"second;"));
  // The isolate is back in the pool and serves again.
  let r = c.get("s.test", "/quick").await;
  assert_eq!((r.status, r.body.as_str()), (200, "quick"));
}

#[tokio::test]
async fn the_streaming_example_sends_its_chunks() {
  let f = Fixture::new();
  let engine = f.start(&format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"stream\"\nmain = \"{}\"\nroutes = [\"st.test\"]\n",
    examples_dir().join("stream/index.js").display()
  ));
  let r = H1::connect(engine.http_addr().unwrap())
    .await
    .get("st.test", "/?chunks=3&delay=1")
    .await;
  assert_eq!(r.body, "chunk 0\nchunk 1\nchunk 2\n");
}

#[tokio::test]
async fn large_upload_echoed_back_keeps_memory_flat() {
  const MB: usize = 1 << 20;
  const TOTAL: usize = 200 * MB;
  let _measures = resident_memory_lock().await;
  let f = Fixture::new();
  let engine = f.start(&format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"echo\"\nmain = \"{}\"\nroutes = [\"echo.test\"]\n[worker.limits]\nrequest_body_mb = 256\n",
    examples_dir().join("echo/index.js").display()
  ));
  let mut c = H1::connect(engine.http_addr().unwrap()).await;
  // Warm up (first isolate, allocator pools), then measure.
  let r = c.get("echo.test", "/").await;
  assert_eq!(r.status, 200);
  let before = rss_bytes();

  let req = http::Request::post("/")
    .header("host", "echo.test")
    .body(streamed_body(TOTAL / MB, MB, 7))
    .unwrap();
  let res = c.send(req).await;
  assert_eq!(res.status(), 200);
  let mut body = res.into_body();
  let (mut received, mut peak) = (0usize, 0u64);
  while let Some(frame) = body.frame().await {
    let data = frame.expect("frame").into_data().unwrap_or_default();
    assert!(data.iter().all(|&b| b == 7));
    received += data.len();
    peak = peak.max(rss_bytes());
  }
  assert_eq!(received, TOTAL);
  let grew = peak.saturating_sub(before);
  assert!(
    grew < 64 * MB as u64,
    "resident memory grew by {} MB while echoing 200 MB",
    grew / MB as u64
  );
}

/// An upload cut short: the client sends part of a declared body, reads
/// the worker's early answer and leaves. The connection must close (it
/// used to stay open in CLOSE-WAIT, one fd each, until the process ran
/// out: the body lived on in a warm isolate's resource table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_client_abandons_closes_its_connection() {
  use tokio::io::{AsyncReadExt, AsyncWriteExt};
  let f = Fixture::new();
  // One worker never touches the body; the other takes the stream and
  // does not read it.
  f.file(
    "deny.js",
    "export default { fetch() { return new Response('no', { status: 401 }) } }",
  );
  f.file(
    "peek.js",
    "export default { fetch(req) { void req.body; return Response.redirect('https://elsewhere.example/', 302) } }",
  );
  let engine = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n[[worker]]\nname = \"deny\"\nmain = \"deny.js\"\nroutes = [\"deny.test\"]\n[[worker]]\nname = \"peek\"\nmain = \"peek.js\"\nroutes = [\"peek.test\"]\n",
  );
  let addr = engine.http_addr().unwrap();
  for (host, status) in [
    ("deny.test", "401"),
    ("peek.test", "302"),
    ("deny.test", "401"),
    ("peek.test", "302"),
  ] {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\n0123456789");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{host}: {text}");
    // The client is done: it closes its side. The server must close too.
    tcp.shutdown().await.unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
      loop {
        match tcp.read(&mut buf).await {
          Ok(0) | Err(_) => return,
          Ok(_) => {}
        }
      }
    })
    .await;
    assert!(closed.is_ok(), "{host}: the server kept the connection open");
  }
  // And it counts none open.
  for _ in 0..500 {
    if engine.stats_detail().open_connections.get() == 0 {
      break;
    }
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
  }
  assert_eq!(engine.stats_detail().open_connections.get(), 0);
}
