//! The front door's caps and timeouts: an idle connection (before its first
//! request or between requests) is closed after `server.idle_timeout_s`, a
//! TLS handshake that never finishes after `server.handshake_timeout_s`,
//! and a connection past `server.max_connections_per_ip` at accept; a slow
//! request in flight is not an idle connection.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Fixture;

const WORKER: &str = "export default { async fetch(req) { if (new URL(req.url).pathname === '/slow') await new Promise(r => setTimeout(r, 2500)); return new Response('hi') } }";

fn engine(f: &Fixture, server: &str) -> edge::Engine {
  f.file("w.js", WORKER);
  f.start(&format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n[server]\n{server}\n[runtime]\nthreads = 1\n[[tls]]\nhosts = [\"localhost\"]\nself_signed = true\ndefault = true\n[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"*\"]\n"
  ))
}

/// Reads until the server closes: how long that took (None: still open
/// after `limit`).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
  let since = Instant::now();
  let mut buf = [0u8; 4096];
  loop {
    match tokio::time::timeout(limit.saturating_sub(since.elapsed()), s.read(&mut buf)).await {
      Err(_) => return None,
      Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
      Ok(Ok(_)) => {}
    }
  }
}

/// One request on `s`, its whole response read (the body is short).
async fn ask(s: &mut TcpStream, path: &str) -> String {
  s.write_all(format!("GET {path} HTTP/1.1\r\nhost: a.test\r\n\r\n").as_bytes())
    .await
    .unwrap();
  let mut got = Vec::new();
  let mut buf = [0u8; 4096];
  while !got.ends_with(b"hi") {
    let n = s.read(&mut buf).await.unwrap();
    assert!(n > 0, "closed before the response: {:?}", String::from_utf8_lossy(&got));
    got.extend_from_slice(&buf[..n]);
  }
  String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn idle_connections_are_closed_and_a_slow_request_is_not_idle() {
  let f = Fixture::new();
  let e = engine(&f, "idle_timeout_s = 1");
  let addr = e.http_addr().unwrap();
  // Never a first byte.
  let mut quiet = TcpStream::connect(addr).await.unwrap();
  assert!(
    closed_within(&mut quiet, Duration::from_secs(10)).await.is_some(),
    "a silent connection stayed open"
  );
  // Idle after a response (keep-alive).
  let mut kept = TcpStream::connect(addr).await.unwrap();
  assert!(ask(&mut kept, "/").await.starts_with("HTTP/1.1 200"));
  assert!(
    closed_within(&mut kept, Duration::from_secs(10)).await.is_some(),
    "an idle keep-alive connection stayed open"
  );
  // A request that takes longer than the idle timeout is answered.
  let mut slow = TcpStream::connect(addr).await.unwrap();
  assert!(ask(&mut slow, "/slow").await.starts_with("HTTP/1.1 200"));
  let text = e.metrics_text();
  let idle = text
    .lines()
    .find(|l| l.starts_with("edge_idle_timeouts_total "))
    .unwrap();
  assert!(idle != "edge_idle_timeouts_total 0", "{idle}");
}

#[tokio::test]
async fn an_unfinished_tls_handshake_is_closed() {
  let f = Fixture::new();
  let e = engine(&f, "handshake_timeout_s = 1");
  let mut s = TcpStream::connect(e.https_addr().unwrap()).await.unwrap();
  // Half a ClientHello's record header, then nothing.
  s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
  assert!(
    closed_within(&mut s, Duration::from_secs(10)).await.is_some(),
    "the half handshake stayed open"
  );
  // Counted just after the socket closes.
  let mut counted = false;
  for _ in 0..200 {
    if e.metrics_text().contains("edge_handshake_timeouts_total 1") {
      counted = true;
      break;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
  assert!(counted, "edge_handshake_timeouts_total not 1");
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_closed_at_accept() {
  let f = Fixture::new();
  let e = engine(&f, "max_connections_per_ip = 3");
  let addr = e.http_addr().unwrap();
  let mut open = Vec::new();
  for _ in 0..3 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(ask(&mut s, "/").await.starts_with("HTTP/1.1 200"));
    open.push(s);
  }
  let mut fourth = TcpStream::connect(addr).await.unwrap();
  let closed = closed_within(&mut fourth, Duration::from_secs(5)).await;
  assert!(closed.is_some(), "a fourth connection from one address was kept");
  assert!(e
    .metrics_text()
    .contains("edge_connections_refused_total{reason=\"per_ip\"} 1"));
  // A place freed is a place taken again.
  drop(open.pop());
  let mut again = None;
  for _ in 0..100 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    if s.write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n").await.is_ok() {
      let mut buf = [0u8; 64];
      if matches!(tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await, Ok(Ok(n)) if n > 0) {
        again = Some(String::from_utf8_lossy(&buf).into_owned());
        break;
      }
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  assert!(
    again.is_some_and(|r| r.starts_with("HTTP/1.1 200")),
    "no connection after one closed"
  );
}

// A worker cannot frame its own response: a Content-Length shorter than
// the body (which put the rest on the keep-alive connection, read by a
// pipelining client as the next response), or Transfer-Encoding and
// Connection headers, are the server's to set.
#[tokio::test]
async fn a_worker_cannot_frame_its_response() {
  let f = Fixture::new();
  f.file(
    "frame.js",
    r#"export default { fetch(req) {
      const p = new URL(req.url).pathname;
      if (p === "/short") return new Response("A".repeat(5) + "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged", { headers: { "content-length": "5" } });
      if (p === "/chunked") return new Response("plain", { headers: { "transfer-encoding": "chunked", "connection": "close", "keep-alive": "timeout=1" } });
      if (p === "/head") return new Response(null, { headers: { "content-length": "1234" } });
      return new Response("second");
    } }"#,
  );
  let e =
    f.start("[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"frame\"\nmain = \"frame.js\"\nroutes = [\"*\"]\n");
  let mut s = TcpStream::connect(e.http_addr().unwrap()).await.unwrap();
  // Both requests at once (pipelined): the second answer must be ours.
  s.write_all(b"GET /short HTTP/1.1\r\nhost: a.test\r\n\r\nGET /next HTTP/1.1\r\nhost: a.test\r\n\r\n")
    .await
    .unwrap();
  let mut got = Vec::new();
  let mut buf = [0u8; 4096];
  while !got.ends_with(b"second") {
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
      .await
      .unwrap()
      .unwrap();
    assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
    got.extend_from_slice(&buf[..n]);
  }
  let text = String::from_utf8_lossy(&got).into_owned();
  assert!(text.contains("content-length: 49\r\n"), "{text}");
  assert!(!text.contains("content-length: 5\r\n"), "{text}");
  assert_eq!(
    text.matches("HTTP/1.1 200 OK").count(),
    3,
    "two responses, the forged head inside the first body: {text}"
  );
  assert!(
    text.ends_with("content-length: 6\r\n\r\nsecond") || text.contains("\r\n\r\nsecond"),
    "{text}"
  );
  // Framing and connection headers from the worker are dropped.
  let got = crate::support::get(e.http_addr().unwrap(), "a.test", "/chunked").await;
  assert_eq!((got.status, got.body.as_str()), (200, "plain"));
  for h in ["transfer-encoding", "connection", "keep-alive"] {
    assert!(got.headers.get(h).is_none(), "{h}: {:?}", got.headers.get(h));
  }
  // A HEAD answer keeps the length it tells.
  let mut c = crate::support::H1::connect(e.http_addr().unwrap()).await;
  let req = hyper::Request::head("/head")
    .header("host", "a.test")
    .body(crate::support::empty())
    .unwrap();
  let res = c.send(req).await;
  assert_eq!(
    res.headers().get("content-length").map(|v| v.to_str().unwrap()),
    Some("1234")
  );
}

#[tokio::test]
async fn a_trickling_body_is_408_and_a_client_that_stops_reading_is_closed() {
  let f = Fixture::new();
  f.file(
    "slow.js",
    r#"export default { async fetch(req) {
      if (new URL(req.url).pathname === "/big") {
        const chunk = new Uint8Array(1 << 20);
        let n = 0;
        return new Response(new ReadableStream({ pull(c) { if (n++ < 64) c.enqueue(chunk); else c.close(); } }));
      }
      return new Response("read " + (await req.text()).length);
    } }"#,
  );
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[server]\nmin_body_bytes_per_s = 100\nbody_rate_grace_s = 1\nsend_timeout_s = 1\n[limits]\nwall_ms = 60000\n[[worker]]\nname = \"slow\"\nmain = \"slow.js\"\nroutes = [\"*\"]\n",
  );
  let addr = e.http_addr().unwrap();
  // 1000 bytes declared, one every 200 ms (5 a second, under 100).
  let mut s = TcpStream::connect(addr).await.unwrap();
  s.write_all(b"POST / HTTP/1.1\r\nhost: a.test\r\ncontent-length: 1000\r\n\r\n")
    .await
    .unwrap();
  let (mut rd, mut wr) = s.into_split();
  let started = Instant::now();
  let writer = tokio::spawn(async move {
    for _ in 0..1000 {
      if wr.write_all(b"x").await.is_err() {
        return;
      }
      tokio::time::sleep(Duration::from_millis(200)).await;
    }
  });
  let mut got = Vec::new();
  let mut buf = [0u8; 4096];
  while !got.windows(4).any(|w| w == b"\r\n\r\n") {
    match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await {
      Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
      _ => break,
    }
  }
  writer.abort();
  let text = String::from_utf8_lossy(&got);
  assert!(
    text.starts_with("HTTP/1.1 408"),
    "after {:?}: {text}",
    started.elapsed()
  );
  // A body at the rate is read whole.
  let mut s = TcpStream::connect(addr).await.unwrap();
  s.write_all(b"POST / HTTP/1.1\r\nhost: a.test\r\ncontent-length: 300\r\nconnection: close\r\n\r\n")
    .await
    .unwrap();
  for _ in 0..3 {
    s.write_all(&[b'y'; 100]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
  }
  let mut got = Vec::new();
  s.read_to_end(&mut got).await.unwrap();
  assert!(
    String::from_utf8_lossy(&got).ends_with("read 300"),
    "{}",
    String::from_utf8_lossy(&got)
  );
  // 64 MB asked for and nothing read: closed after the send timeout.
  let mut s = TcpStream::connect(addr).await.unwrap();
  s.write_all(b"GET /big HTTP/1.1\r\nhost: a.test\r\n\r\n").await.unwrap();
  tokio::time::sleep(Duration::from_secs(4)).await;
  let mut got = 0usize;
  let mut buf = vec![0u8; 1 << 16];
  let drained = tokio::time::timeout(Duration::from_secs(10), async {
    loop {
      match s.read(&mut buf).await {
        Ok(0) | Err(_) => break,
        Ok(n) => got += n,
      }
    }
  })
  .await;
  assert!(drained.is_ok(), "the stalled connection stayed open");
  assert!(got < 64 << 20, "all {got} bytes were sent");
  let text = e.metrics_text();
  for m in ["edge_send_timeouts_total 1", "edge_slow_bodies_total 1"] {
    assert!(text.contains(m), "{m}: {text}");
  }
}
