//! Test fixtures: a server started from a TOML config and worker files in a
//! temporary folder, real HTTP/1.1 and HTTP/2 clients (with TLS and SNI),
//! a local upstream server, and a capture of the server's log.

#![allow(dead_code)]

pub mod mmdb;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use edge::{Config, Engine};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// A folder of worker files and a config, deleted on drop.
pub struct Fixture {
  pub dir: PathBuf,
}

impl Fixture {
  pub fn new() -> Self {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("edge-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Self { dir }
  }

  /// Writes a file under the fixture folder (parents created).
  pub fn file(&self, rel: &str, contents: impl AsRef<[u8]>) -> &Self {
    let p = self.dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, contents).unwrap();
    self
  }

  pub fn path(&self, rel: &str) -> PathBuf {
    self.dir.join(rel)
  }

  /// Writes `edge.toml` and parses and validates it.
  pub fn config(&self, toml: &str) -> Result<Config, edge::ConfigError> {
    self.file("edge.toml", toml);
    Config::load(&self.dir.join("edge.toml"))
  }

  /// Starts a server from `toml` (listeners on port 0 unless given).
  pub fn start(&self, toml: &str) -> Engine {
    capture_logs();
    let config = self.config(toml).unwrap_or_else(|e| panic!("config: {e}"));
    Engine::start(config).unwrap_or_else(|e| panic!("start: {e}"))
  }
}

impl Drop for Fixture {
  fn drop(&mut self) {
    let _ = std::fs::remove_dir_all(&self.dir);
  }
}

/// The worker files of the repository's `workers/` folder.
pub fn examples_dir() -> PathBuf {
  Path::new(env!("CARGO_MANIFEST_DIR")).join("../workers")
}

// ---- logs ------------------------------------------------------------------

#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
  fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
    self.0.lock().unwrap().extend_from_slice(buf);
    Ok(buf.len())
  }
  fn flush(&mut self) -> std::io::Result<()> {
    Ok(())
  }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
  type Writer = LogBuffer;
  fn make_writer(&'a self) -> Self::Writer {
    self.clone()
  }
}

/// Every log line of the process so far (all tests share it).
pub fn logs() -> String {
  String::from_utf8_lossy(&capture_logs().0.lock().unwrap()).into_owned()
}

pub fn capture_logs() -> &'static LogBuffer {
  static BUF: OnceLock<LogBuffer> = OnceLock::new();
  BUF.get_or_init(|| {
    let buf = LogBuffer::default();
    let _ = tracing_subscriber::fmt()
      .with_env_filter(tracing_subscriber::EnvFilter::new("info,worker=debug"))
      .with_ansi(false)
      .with_writer(buf.clone())
      .try_init();
    buf
  })
}

// ---- clients ---------------------------------------------------------------

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn body(b: impl Into<Bytes>) -> BoxBody {
  Full::new(b.into()).map_err(|e| match e {}).boxed()
}

pub fn empty() -> BoxBody {
  body(Bytes::new())
}

/// A request body sent as `count` chunks of `size` bytes of `byte`, by a
/// task that feeds a channel (the server sees a chunked, streamed body).
pub fn streamed_body(count: usize, size: usize, byte: u8) -> BoxBody {
  let (tx, rx) =
    tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>>(2);
  let chunk = Bytes::from(vec![byte; size]);
  tokio::spawn(async move {
    for _ in 0..count {
      if tx.send(Ok(http_body::Frame::data(chunk.clone()))).await.is_err() {
        return;
      }
    }
  });
  http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed()
}

/// A response with its whole body read.
pub struct Got {
  pub status: u16,
  pub headers: http::HeaderMap,
  pub body: String,
  pub version: http::Version,
}

impl Got {
  /// The `edge-limit` header, if the response has one.
  pub fn limit(&self) -> Option<&str> {
    self.headers.get("edge-limit").and_then(|v| v.to_str().ok())
  }
}

pub async fn collect(res: Response<hyper::body::Incoming>) -> Got {
  let (parts, b) = res.into_parts();
  let bytes = b.collect().await.expect("response body").to_bytes();
  Got {
    status: parts.status.as_u16(),
    headers: parts.headers,
    body: String::from_utf8_lossy(&bytes).into_owned(),
    version: parts.version,
  }
}

/// An HTTP/1.1 connection to `addr`.
pub struct H1 {
  send: hyper::client::conn::http1::SendRequest<BoxBody>,
}

impl H1 {
  pub async fn connect(addr: SocketAddr) -> Self {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    Self::over(tcp).await
  }

  pub async fn over<I>(io: I) -> Self
  where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
  {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
      .await
      .expect("h1 handshake");
    tokio::spawn(async move {
      let _ = conn.await;
    });
    Self { send }
  }

  pub async fn send(&mut self, req: Request<BoxBody>) -> Response<hyper::body::Incoming> {
    self.send.ready().await.expect("ready");
    self.send.send_request(req).await.expect("request")
  }

  /// [`Self::send`], the connection's end an error (the server went away).
  pub async fn try_send(&mut self, req: Request<BoxBody>) -> Result<Response<hyper::body::Incoming>, String> {
    self.send.ready().await.map_err(|e| e.to_string())?;
    self.send.send_request(req).await.map_err(|e| e.to_string())
  }

  /// GET `path` with a Host header.
  pub async fn get(&mut self, host: &str, path: &str) -> Got {
    let req = Request::get(path).header("host", host).body(empty()).unwrap();
    collect(self.send(req).await).await
  }
}

/// One GET over a fresh plain connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Got {
  H1::connect(addr).await.get(host, path).await
}

/// A TLS client that trusts `pems` and sends `sni` (None: no SNI).
pub async fn tls_connect(
  addr: SocketAddr,
  sni: Option<&str>,
  pems: &[String],
  alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
  let mut roots = rustls::RootCertStore::empty();
  for pem in pems {
    for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
      roots.add(c.unwrap()).unwrap();
    }
  }
  let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
  cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
  // Without SNI the client still checks the certificate for this name.
  cfg.enable_sni = sni.is_some();
  let name = ServerName::try_from(sni.unwrap_or("localhost").to_string()).unwrap();
  let tcp = TcpStream::connect(addr).await?;
  tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await
}

/// An HTTP/2 connection over TLS (ALPN h2).
pub struct H2 {
  send: hyper::client::conn::http2::SendRequest<BoxBody>,
}

impl H2 {
  pub async fn connect(addr: SocketAddr, sni: &str, pems: &[String]) -> Self {
    let tls = tls_connect(addr, Some(sni), pems, &[b"h2"]).await.expect("tls");
    assert_eq!(
      tls.get_ref().1.alpn_protocol(),
      Some(&b"h2"[..]),
      "server chose h2 by ALPN"
    );
    let (send, conn) = hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tls))
      .await
      .expect("h2 handshake");
    tokio::spawn(async move {
      let _ = conn.await;
    });
    Self { send }
  }

  /// Another handle on the same connection (for concurrent streams).
  pub fn clone_handle(&self) -> Self {
    Self {
      send: self.send.clone(),
    }
  }

  pub async fn get(&mut self, url: &str) -> Got {
    let req = Request::get(url).body(empty()).unwrap();
    self.send.ready().await.unwrap();
    collect(self.send.send_request(req).await.expect("h2 request")).await
  }
}

// ---- upstream ----------------------------------------------------------------

/// A local HTTP server for subrequests: answers `GET /x` with
/// `upstream saw /x` and records each path it was asked for.
pub struct Upstream {
  pub addr: SocketAddr,
  pub seen: Arc<Mutex<Vec<String>>>,
  /// The headers of each request, in order.
  pub heads: Arc<Mutex<Vec<http::HeaderMap>>>,
  /// Requests to `/gate` wait until this is notified.
  pub gate: Arc<tokio::sync::Notify>,
}

impl Upstream {
  pub async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
    Self::start_on("127.0.0.1:0", tls).await
  }

  /// An upstream listening on `bind` (`0.0.0.0:0`: every interface).
  pub async fn start_on(bind: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Notify::new());
    let (seen2, heads2, gate2) = (seen.clone(), heads.clone(), gate.clone());
    tokio::spawn(async move {
      loop {
        let Ok((tcp, _)) = listener.accept().await else { return };
        let (seen, heads, gate, tls) = (seen2.clone(), heads2.clone(), gate2.clone(), tls.clone());
        tokio::spawn(async move {
          let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let (seen, heads, gate) = (seen.clone(), heads.clone(), gate.clone());
            async move {
              let path = req.uri().path().to_string();
              seen.lock().unwrap().push(path.clone());
              heads.lock().unwrap().push(req.headers().clone());
              if path == "/gate" {
                gate.notified().await;
              }
              let via = req
                .headers()
                .get("x-via")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
              Ok::<_, std::convert::Infallible>(
                Response::builder()
                  .header("x-upstream", "yes")
                  .body(Full::new(Bytes::from(format!("upstream saw {path} via {via}"))))
                  .unwrap(),
              )
            }
          });
          let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
          match tls {
            Some(cfg) => {
              if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
              }
            }
            None => {
              let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
            }
          }
        });
      }
    });
    Self {
      addr,
      seen,
      heads,
      gate,
    }
  }

  pub fn seen(&self) -> Vec<String> {
    self.seen.lock().unwrap().clone()
  }

  pub fn heads(&self) -> Vec<http::HeaderMap> {
    self.heads.lock().unwrap().clone()
  }
}

/// A self-signed certificate for `hosts`: (cert PEM, key PEM, rustls config).
pub fn self_signed(hosts: &[&str]) -> (String, String, Arc<rustls::ServerConfig>) {
  let ck = rcgen::generate_simple_self_signed(hosts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
  let cert_pem = ck.cert.pem();
  let key_pem = ck.key_pair.serialize_pem();
  let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
  let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
  (cert_pem, key_pem, Arc::new(cfg))
}

/// Resident memory of this process, in bytes.
/// Held by the tests that measure this process's resident memory and by
/// those that make it spike (attacks past the memory limit), which would
/// otherwise run in parallel in this one binary.
pub async fn resident_memory_lock() -> tokio::sync::MutexGuard<'static, ()> {
  static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
  LOCK.lock().await
}

pub fn rss_bytes() -> u64 {
  let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
  let pages: u64 = s.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
  pages * 4096
}

// ---- admin API ---------------------------------------------------------------

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A `multipart/form-data` upload: the `metadata` JSON and module parts.
pub fn upload(meta: &str, modules: &[(&str, &[u8])]) -> (String, Vec<u8>) {
  let boundary = "edge-test-boundary-7d3f";
  let mut b = Vec::new();
  let mut part = |name: &str, ct: &str, bytes: &[u8]| {
    b.extend_from_slice(
      format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: {ct}\r\n\r\n"
      )
      .as_bytes(),
    );
    b.extend_from_slice(bytes);
    b.extend_from_slice(b"\r\n");
  };
  part("metadata", "application/json", meta.as_bytes());
  for (name, bytes) in modules {
    part(name, "application/javascript+module", bytes);
  }
  b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
  (format!("multipart/form-data; boundary={boundary}"), b)
}

/// One admin request with the test token (or `token`).
pub async fn admin(
  addr: SocketAddr,
  method: &str,
  path: &str,
  token: Option<&str>,
  body: Option<(String, Vec<u8>)>,
) -> Got {
  let mut req = Request::builder().method(method).uri(path).header("host", "admin");
  if let Some(t) = token {
    req = req.header("authorization", format!("Bearer {t}"));
  }
  let req = match body {
    Some((ct, bytes)) => req.header("content-type", ct).body(self::body(bytes)).unwrap(),
    None => req.body(empty()).unwrap(),
  };
  collect(H1::connect(addr).await.send(req).await).await
}

/// Deploys `source` as the single module `index.js` of worker `name` for
/// host `route`.
pub async fn deploy(addr: SocketAddr, name: &str, route: &str, source: &str) -> Got {
  let meta = format!(r#"{{"main_module":"index.js","routes":["{route}"]}}"#);
  let up = upload(&meta, &[("index.js", source.as_bytes())]);
  admin(addr, "PUT", &format!("/workers/{name}"), Some(TOKEN), Some(up)).await
}
