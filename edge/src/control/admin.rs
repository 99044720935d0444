//! The admin API's listener, on its own thread (off unless `[admin]
//! listen` is set): every request carries `Authorization: Bearer <token>`
//! (the public listeners never answer these paths), then goes to the
//! routes of [`super::api`].
//!
//! With `runtime.processes` > 1 the supervisor serves this listener
//! ([`AdminServer::relaying`], `super::relay`): deploys checked on one
//! process, kept in the data directory, then made on every process;
//! `/metrics` summed over them.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::broadcast;

use super::api::{self, text, Reply};
use super::background::Background;
use super::deploy::Deployer;
use super::relay::Relay;
use crate::obs::stats::Stats;

/// The running admin listener.
pub struct AdminServer {
  pub addr: std::net::SocketAddr,
  _thread: Background,
}

impl AdminServer {
  pub fn start(
    deployer: Arc<Deployer>,
    stats: Arc<Stats>,
    listener: std::net::TcpListener,
    token: String,
  ) -> std::io::Result<Self> {
    Self::serve(Control::Deploys { deployer, stats }, listener, token)
  }

  /// A supervisor's: every request relayed to its processes.
  pub fn relaying(relay: Arc<Relay>, listener: std::net::TcpListener, token: String) -> std::io::Result<Self> {
    Self::serve(Control::Relayed(relay), listener, token)
  }

  fn serve(control: Control, listener: std::net::TcpListener, token: String) -> std::io::Result<Self> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let token: Arc<[u8]> = Arc::from(token.into_bytes());
    let thread = Background::start("edge-admin", "admin API", move |mut stopped| async move {
      let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
          tracing::error!("admin: cannot use its listener: {e}");
          return;
        }
      };
      loop {
        let (tcp, _) = tokio::select! {
          a = listener.accept() => match a {
            Ok(a) => a,
            Err(e) => {
              tracing::warn!("admin: accept failed: {e}");
              tokio::time::sleep(std::time::Duration::from_millis(50)).await;
              continue;
            }
          },
          _ = stopped.wait_for(|s| *s) => return,
        };
        let api = Api {
          control: control.clone(),
          token: token.clone(),
        };
        tokio::spawn(async move {
          let api = Arc::new(api);
          let svc = hyper::service::service_fn(move |req| serve(api.clone(), req));
          let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(tcp), svc)
            .await;
        });
      }
    })?;
    Ok(Self { addr, _thread: thread })
  }
}

/// What the admin API reaches.
#[derive(Clone)]
enum Control {
  /// The deployer and the counters of this process.
  Deploys { deployer: Arc<Deployer>, stats: Arc<Stats> },
  /// A supervisor's processes.
  Relayed(Arc<Relay>),
}

struct Api {
  control: Control,
  token: Arc<[u8]>,
}

/// An answer of the admin listener: whole, or a tail's stream of lines.
type Answer = http::Response<BoxBody<Bytes, Infallible>>;

async fn serve(api: Arc<Api>, req: Request<Incoming>) -> Result<Answer, Infallible> {
  Ok(match tail_of(&req) {
    Some(name) if authorized(&req, &api.token) => match &api.control {
      Control::Deploys { stats, .. } => tail(stats, &name),
      Control::Relayed(_) => text(
        StatusCode::NOT_IMPLEMENTED,
        "501 Not Implemented: tails are served with runtime.processes = 1\n",
      )
      .map(BodyExt::boxed),
    },
    _ => answer(&api, req).await.map(BodyExt::boxed),
  })
}

/// The worker of `GET /workers/{name}/tail`.
fn tail_of(req: &Request<Incoming>) -> Option<String> {
  let name = req.uri().path().strip_prefix("/workers/")?.strip_suffix("/tail")?;
  (req.method() == http::Method::GET && !name.is_empty() && !name.contains('/')).then(|| name.to_string())
}

/// A worker's live tail as JSON lines (`obs::tail`), until the client
/// goes; a line `{"type":"lagged","missed":N}` where it fell behind.
fn tail(stats: &Stats, name: &str) -> Answer {
  let Some(worker) = stats.workers.get(name).map(|w| w.clone()) else {
    return text(StatusCode::NOT_FOUND, "404 Not Found: no such worker\n").map(BodyExt::boxed);
  };
  let listener = worker.tail.subscribe();
  let lines = futures::stream::unfold(listener, |mut l| async move {
    let line = match l.rx.recv().await {
      Ok(line) => format!("{line}\n"),
      Err(broadcast::error::RecvError::Lagged(n)) => format!("{{\"type\":\"lagged\",\"missed\":{n}}}\n"),
      Err(broadcast::error::RecvError::Closed) => return None,
    };
    Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), l))
  });
  let mut res = http::Response::new(StreamBody::new(lines).boxed());
  res.headers_mut().insert(
    http::header::CONTENT_TYPE,
    HeaderValue::from_static("application/x-ndjson"),
  );
  res
}

async fn answer(api: &Api, req: Request<Incoming>) -> Reply {
  if !authorized(&req, &api.token) {
    let mut res = text(
      StatusCode::UNAUTHORIZED,
      "401 Unauthorized: send Authorization: Bearer <token>\n",
    );
    res
      .headers_mut()
      .insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    return res;
  }
  match &api.control {
    Control::Deploys { deployer, stats } => api::route(deployer, stats, req).await,
    Control::Relayed(relay) => relay.route(req).await,
  }
}

/// The bearer token, compared in constant time (only its length can leak).
fn authorized(req: &Request<Incoming>, token: &[u8]) -> bool {
  let Some(given) = req
    .headers()
    .get(http::header::AUTHORIZATION)
    .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
  else {
    return false;
  };
  constant_time_eq(given, token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
  if a.len() != b.len() {
    return false;
  }
  let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
  // Keep the comparison from being short-circuited by the optimiser.
  std::hint::black_box(diff) == 0
}
