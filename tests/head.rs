//! The request head. Strict Host: one host and port in RFC 3986 authority
//! syntax, or 400; a Host that disagrees with the request's authority, or
//! a second Host, is 400; a trailing dot is the same host in routing and in
//! the TLS check; the worker's `request.url` has the host the request was
//! routed by. Sizes: a head over 64 KiB is 431, a header line over 16 KiB
//! 431, a request line over 16 KiB 414. Framing and methods: a transfer
//! coding other than chunked and CONNECT are 501; `OPTIONS *` is the
//! server's to answer. Line endings: a bare LF in an HTTP/1.1 head or
//! trailer is 400, bodies hold any bytes, HTTP/2 is left alone.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self_signed, tls_connect, Fixture};

const WORKER: &str = "export default { async fetch(req) { \
  const body = await req.text(); \
  return new Response('url ' + req.url + (body ? ' body ' + JSON.stringify(body) : '')) } }";

fn engine(f: &Fixture) -> (edge::Engine, String) {
  let (cert, key, _) = self_signed(&["*.w.test"]);
  f.file("w.pem", &cert).file("w.key", &key).file("w.js", WORKER);
  let e = f.start(
    r#"
[listen]
http = "127.0.0.1:0"
https = "127.0.0.1:0"
[runtime]
threads = 1
[[tls]]
hosts = ["*.w.test"]
cert = "w.pem"
key = "w.key"
default = true
[[worker]]
name = "w"
main = "w.js"
routes = ["*.w.test"]
"#,
  );
  (e, cert)
}

/// Sends `head` (a request head, without its final blank line) and reads
/// the whole response (the server closes: `Connection: close` is added).
async fn raw<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, head: &str) -> String {
  s.write_all(format!("{head}\r\nconnection: close\r\n\r\n").as_bytes())
    .await
    .unwrap();
  let mut got = Vec::new();
  s.read_to_end(&mut got).await.unwrap();
  String::from_utf8_lossy(&got).into_owned()
}

async fn plain(addr: std::net::SocketAddr, head: &str) -> String {
  raw(&mut TcpStream::connect(addr).await.unwrap(), head).await
}

/// A POST with `head`'s extra header lines and `body` as sent.
async fn post(addr: std::net::SocketAddr, headers: &str, body: &str) -> String {
  let mut s = TcpStream::connect(addr).await.unwrap();
  let req = format!("POST / HTTP/1.1\r\nhost: x.w.test\r\nconnection: close\r\n{headers}\r\n\r\n{body}");
  s.write_all(req.as_bytes()).await.unwrap();
  let mut got = Vec::new();
  s.read_to_end(&mut got).await.unwrap();
  String::from_utf8_lossy(&got).into_owned()
}

fn status(res: &str) -> u16 {
  res.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_host_that_is_not_one_authority_is_400() {
  let f = Fixture::new();
  let (e, _) = engine(&f);
  let addr = e.http_addr().unwrap();
  for host in [
    "evil.example/@x.w.test",
    "evil.example?@x.w.test",
    "evil.example#@x.w.test",
    "user@x.w.test",
    "x.w.test:99999",
    "x.w.test:0",
    "x.w.test:80:80",
    "x%2ew.test",
    "x..w.test",
  ] {
    let res = plain(addr, &format!("GET / HTTP/1.1\r\nhost: {host}")).await;
    assert_eq!(status(&res), 400, "Host: {host}\n{res}");
    assert!(res.contains("bad Host"), "Host: {host}\n{res}");
  }
  // An absolute target's authority is held to the same rules.
  let res = plain(addr, "GET http://evil.example@x.w.test/ HTTP/1.1\r\nhost: x.w.test").await;
  assert_eq!(status(&res), 400, "{res}");
  // Two Host headers (RFC 9112 3.2), or one that differs from the target.
  let res = plain(addr, "GET / HTTP/1.1\r\nhost: x.w.test\r\nhost: y.w.test").await;
  assert_eq!(status(&res), 400, "{res}");
  assert!(res.contains("more than one Host"), "{res}");
  let res = plain(addr, "GET http://x.w.test/ HTTP/1.1\r\nhost: y.w.test").await;
  assert_eq!(status(&res), 400, "{res}");
  // Still serving, and what is routed is what the worker sees.
  let res = plain(addr, "GET /p?q=1 HTTP/1.1\r\nhost: X.W.test.:8080").await;
  assert_eq!(status(&res), 200, "{res}");
  assert!(res.ends_with("url http://x.w.test:8080/p?q=1"), "{res}");
  let res = plain(addr, "GET http://x.w.test/abs HTTP/1.1\r\nhost: x.w.test").await;
  assert!(res.ends_with("url http://x.w.test/abs"), "{res}");
}

#[tokio::test]
async fn over_tls_the_host_checked_is_the_host_routed() {
  let f = Fixture::new();
  let (e, cert) = engine(&f);
  let addr = e.https_addr().unwrap();
  let ask = |host: &'static str| {
    let cert = cert.clone();
    async move {
      let mut tls = tls_connect(addr, Some("x.w.test"), &[cert], &[]).await.unwrap();
      raw(&mut tls, &format!("GET / HTTP/1.1\r\nhost: {host}")).await
    }
  };
  // Once passed the 421 check by ending in a covered name.
  let res = ask("evil/@x.w.test").await;
  assert_eq!(status(&res), 400, "{res}");
  // A trailing dot is the same host in the certificate check and routing.
  let res = ask("x.w.test.").await;
  assert_eq!(status(&res), 200, "{res}");
  assert!(res.ends_with("url https://x.w.test/"), "{res}");
  // A host the certificate does not cover is still 421.
  assert_eq!(status(&ask("other.test").await), 421);
}

#[tokio::test]
async fn heads_too_large_unknown_codings_and_connect_are_refused() {
  let f = Fixture::new();
  let (e, _) = engine(&f);
  let addr = e.http_addr().unwrap();
  let host = "host: x.w.test";
  // One header of 64 KiB; 420 KiB of 7 KiB headers (each under the line cap).
  let res = plain(
    addr,
    &format!("GET / HTTP/1.1\r\n{host}\r\nx-big: {}", "a".repeat(64 << 10)),
  )
  .await;
  assert_eq!(status(&res), 431, "{res}");
  let many: String = (0..60).map(|i| format!("\r\nx-{i}: {}", "b".repeat(7 << 10))).collect();
  let res = plain(addr, &format!("GET / HTTP/1.1\r\n{host}{many}")).await;
  assert_eq!(status(&res), 431, "{res}");
  // One header line of 17 KiB within a head under 64 KiB.
  let res = plain(
    addr,
    &format!("GET / HTTP/1.1\r\n{host}\r\nx-big: {}", "c".repeat(17 << 10)),
  )
  .await;
  assert_eq!(status(&res), 431, "{res}");
  assert!(res.contains("a header line is longer"), "{res}");
  let res = plain(addr, &format!("GET /{} HTTP/1.1\r\n{host}", "d".repeat(17 << 10))).await;
  assert_eq!(status(&res), 414, "{res}");
  // Under the caps: served.
  let res = plain(
    addr,
    &format!(
      "GET /{} HTTP/1.1\r\n{host}\r\nx-big: {}",
      "d".repeat(8 << 10),
      "c".repeat(15 << 10)
    ),
  )
  .await;
  assert_eq!(status(&res), 200, "{res}");
  // Only chunked is a transfer coding here (RFC 9112 6.1).
  // (hyper refuses a last coding other than chunked itself: no framing.)
  for (te, want) in [("gzip, chunked", 501), ("chunked, chunked", 501), ("identity", 400)] {
    let res = post(addr, &format!("transfer-encoding: {te}"), "0\r\n\r\n").await;
    assert_eq!(status(&res), want, "TE {te}: {res}");
  }
  let res = post(addr, "transfer-encoding: Chunked", "1\r\nx\r\n0\r\n\r\n").await;
  assert_eq!(status(&res), 200, "{res}");
  // CONNECT reaches no worker.
  let res = plain(addr, "CONNECT x.w.test:443 HTTP/1.1\r\nhost: x.w.test:443").await;
  assert_eq!(status(&res), 501, "{res}");
  // A method workerd does not know is 501 too; one it knows reaches the
  // worker.
  let res = plain(addr, "PUPPY / HTTP/1.1\r\nhost: x.w.test").await;
  assert_eq!(status(&res), 501, "{res}");
  let res = plain(addr, "PROPFIND / HTTP/1.1\r\nhost: x.w.test").await;
  assert_eq!(status(&res), 200, "{res}");
  // OPTIONS * is the server's: an Allow header, no worker run.
  let res = plain(addr, &format!("OPTIONS * HTTP/1.1\r\n{host}")).await;
  assert_eq!(status(&res), 200, "{res}");
  assert!(res.to_ascii_lowercase().contains("allow: get, head, post"), "{res}");
  assert!(!res.contains("url "), "{res}");
  let res = plain(addr, &format!("GET * HTTP/1.1\r\n{host}")).await;
  assert!(status(&res) == 400 || status(&res) == 501, "{res}");
}

/// Writes `bytes` on a fresh connection and reads until the server closes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, bytes: &[u8]) -> String {
  s.write_all(bytes).await.unwrap();
  let mut got = Vec::new();
  let _ = s.read_to_end(&mut got).await;
  String::from_utf8_lossy(&got).into_owned()
}

fn statuses(res: &str) -> Vec<u16> {
  res
    .match_indices("HTTP/1.1 ")
    .filter_map(|(i, _)| res[i + 9..i + 12].parse().ok())
    .collect()
}

#[tokio::test]
async fn a_bare_lf_in_a_head_or_trailer_is_400_and_bodies_hold_any_bytes() {
  let f = Fixture::new();
  let (e, cert) = engine(&f);
  let addr = e.http_addr().unwrap();
  let tcp = || async { TcpStream::connect(addr).await.unwrap() };
  for bad in [
    "GET / HTTP/1.1\nhost: x.w.test\r\n\r\n",
    "GET / HTTP/1.1\r\nhost: x.w.test\n\r\n",
    "GET / HTTP/1.1\r\nhost: x.w.test\r\n\n",
    "GET / HTTP/1.1\nhost: x.w.test\n\n",
    "\nGET / HTTP/1.1\r\nhost: x.w.test\r\n\r\n",
  ] {
    let res = exchange(tcp().await, bad.as_bytes()).await;
    assert_eq!(statuses(&res), [400], "{bad:?}: {res}");
  }
  // Pipelined: bodies with bare LFs (sized and chunked) reach the worker
  // as sent; the request after them with a bare LF is refused alone.
  let pipelined = "POST /1 HTTP/1.1\r\nhost: x.w.test\r\ncontent-length: 5\r\n\r\na\nb\n\n\
     POST /2 HTTP/1.1\r\nhost: x.w.test\r\ntransfer-encoding: chunked\r\n\r\n\
     3\r\n\n\n\n\r\n0\r\nx-trailer: 1\r\n\r\n\
     GET /3 HTTP/1.1\r\nhost: x.w.test\r\n\r\n\
     GET /4 HTTP/1.1\r\nhost: x.w.test\nx: y\r\n\r\n\
     GET /5 HTTP/1.1\r\nhost: x.w.test\r\n\r\n";
  let res = exchange(tcp().await, pipelined.as_bytes()).await;
  assert_eq!(statuses(&res), [200, 200, 200, 400], "{res}");
  assert!(res.contains(r#"url http://x.w.test/1 body "a\nb\n\n""#), "{res}");
  assert!(res.contains(r#"url http://x.w.test/2 body "\n\n\n""#), "{res}");
  assert!(res.contains("url http://x.w.test/3"), "{res}");
  assert!(!res.contains("/5"), "{res}");
  // A trailer line ended by a bare LF.
  let res = exchange(
    tcp().await,
    b"POST / HTTP/1.1\r\nhost: x.w.test\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nt: 1\nu: 2\r\n\r\n",
  )
  .await;
  assert!(!res.contains("HTTP/1.1 200"), "{res}");
  // Over TLS too.
  let tls = tls_connect(
    e.https_addr().unwrap(),
    Some("x.w.test"),
    std::slice::from_ref(&cert),
    &[b"http/1.1"],
  )
  .await
  .unwrap();
  let res = exchange(tls, b"GET / HTTP/1.1\r\nhost: x.w.test\n\r\n").await;
  assert_eq!(statuses(&res), [400], "{res}");
  let metrics = e.metrics_text();
  assert!(metrics.contains("edge_bare_lf_refused_total 8"), "{metrics}");
  // HTTP/2 with prior knowledge on the plain port: its frames hold bare
  // LFs (a body of them here) and pass untouched.
  let (mut send, conn) = hyper::client::conn::http2::handshake(
    hyper_util::rt::TokioExecutor::new(),
    hyper_util::rt::TokioIo::new(tcp().await),
  )
  .await
  .unwrap();
  tokio::spawn(conn);
  let req = http::Request::post("http://x.w.test/h2")
    .body(http_body_util::Full::new(bytes::Bytes::from_static(b"\n\n\nz\n")))
    .unwrap();
  let got = send.send_request(req).await.unwrap();
  assert_eq!(got.status(), 200);
  let body = http_body_util::BodyExt::collect(got.into_body())
    .await
    .unwrap()
    .to_bytes();
  assert_eq!(&body[..], br#"url http://x.w.test/h2 body "\n\n\nz\n""#);
}

#[tokio::test]
async fn allow_bare_lf_accepts_them() {
  let f = Fixture::new();
  f.file("w.js", WORKER);
  let e = f.start(
    r#"
[listen]
http = "127.0.0.1:0"
[server]
allow_bare_lf = true
[runtime]
threads = 1
[[worker]]
name = "w"
main = "w.js"
routes = ["*.w.test"]
"#,
  );
  let tcp = TcpStream::connect(e.http_addr().unwrap()).await.unwrap();
  let res = exchange(tcp, b"GET / HTTP/1.1\nhost: x.w.test\nconnection: close\n\n").await;
  assert_eq!(statuses(&res), [200], "{res}");
}
