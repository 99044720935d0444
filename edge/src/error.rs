//! Errors of the server, and the one place ([`RequestError::to_response`])
//! that turns a failed request into an HTTP response.

use bytes::Bytes;
use edge_core::limits::{LimitHit, LimitKind};
use edge_core::request_id::RequestId;
use http::{HeaderValue, Response, StatusCode};
use js_api::{JsApiError, JsException};

/// A configuration that cannot be used; names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
  #[error("{file}: cannot read the config: {source}")]
  Read { file: String, source: std::io::Error },
  #[error("{file}: {message}")]
  Parse { file: String, message: String },
  #[error("{file}: {field}: {message}")]
  Invalid {
    file: String,
    field: String,
    message: String,
  },
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
  #[error(transparent)]
  Config(#[from] ConfigError),
  #[error("{file}: {field}: {message}")]
  Tls {
    file: String,
    field: String,
    message: String,
  },
  #[error("cannot listen on {addr}: {source}")]
  Bind {
    addr: std::net::SocketAddr,
    source: std::io::Error,
  },
  #[error("cannot start executor threads: {0}")]
  Threads(std::io::Error),
  /// A worker of the config file failed to load or evaluate.
  #[error("{file}: worker {worker:?} ({main}) does not start: {message}")]
  Worker {
    file: String,
    worker: String,
    main: String,
    message: String,
  },
}

/// Why a request got no response from its worker.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
  #[error("no Host header and no authority in the request")]
  NoHost,
  /// A Host or authority that is not one host and port, or two that differ.
  #[error("bad Host: {why}")]
  BadHost { why: String },
  /// A line of the request head over `server.max_header_line_kb`.
  #[error("{what} is longer than the server accepts")]
  HeadTooLarge { what: &'static str, status: StatusCode },
  /// A request that has come through `hops` workers' `fetch()` (a worker
  /// fetching its own host, or two fetching each other).
  #[error(
    "loop detected: this request has come through {hops} workers' fetch() (edge-via); Cloudflare calls this error 1019"
  )]
  Loop { hops: u32 },
  /// The request body came slower than `server.min_body_bytes_per_s`.
  #[error("the request body arrived too slowly (under server.min_body_bytes_per_s after its grace)")]
  BodyTooSlow,
  /// A method or framing the server does not implement.
  #[error("this server does not implement {what}")]
  Unsupported { what: &'static str },
  #[error("no worker serves the host {host:?}")]
  NoRoute { host: String },
  #[error("the host {host:?} is not covered by the TLS certificate of this connection")]
  Misdirected { host: String },
  #[error("no worker is named {name:?}")]
  NoWorker { name: String },
  #[error("worker {worker:?} failed to start: {error}")]
  Startup { worker: String, error: JsApiError },
  #[error("worker {worker:?}: {error}")]
  Worker { worker: String, error: JsApiError },
  #[error("worker {worker:?}: {hit}")]
  Limit { worker: String, hit: LimitHit },
  #[error("the server is shutting down")]
  ShuttingDown,
  #[error("worker {worker:?} is busy: no isolate became free within {} ms; retry", waited.as_millis())]
  Busy {
    worker: String,
    waited: std::time::Duration,
  },
  /// The isolate the request shared was stopped for another request's
  /// limit (or lost its state) after this request's code had run.
  #[error("worker {worker:?}: the isolate this request ran in was stopped by another request's {cause}; retry")]
  IsolateLost { worker: String, cause: &'static str },
  /// The worker's response cannot be sent as it is (a status outside
  /// 200-599).
  #[error("worker {worker:?} returned a response the server cannot send: {why}")]
  BadResponse { worker: String, why: String },
  #[error("internal error: {0}")]
  Internal(String),
}

impl RequestError {
  pub fn status(&self) -> StatusCode {
    match self {
      Self::NoHost | Self::BadHost { .. } => StatusCode::BAD_REQUEST,
      Self::HeadTooLarge { status, .. } => *status,
      Self::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
      Self::Loop { .. } => StatusCode::LOOP_DETECTED,
      Self::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
      Self::NoRoute { .. } | Self::NoWorker { .. } => StatusCode::NOT_FOUND,
      Self::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
      Self::Startup { .. } | Self::Worker { .. } | Self::BadResponse { .. } | Self::Internal(_) => {
        StatusCode::INTERNAL_SERVER_ERROR
      }
      Self::ShuttingDown | Self::Busy { .. } | Self::IsolateLost { .. } => StatusCode::SERVICE_UNAVAILABLE,
      Self::Limit { hit, .. } => match hit.kind {
        LimitKind::Cpu | LimitKind::Memory => StatusCode::SERVICE_UNAVAILABLE,
        LimitKind::Wall => StatusCode::GATEWAY_TIMEOUT,
        LimitKind::Body => StatusCode::PAYLOAD_TOO_LARGE,
        LimitKind::Subrequests => StatusCode::INTERNAL_SERVER_ERROR,
      },
    }
  }

  /// The limit that ended the request, if one did.
  pub fn limit_kind(&self) -> Option<LimitKind> {
    match self {
      Self::Limit { hit, .. } => Some(hit.kind),
      _ => None,
    }
  }

  /// Where the worker's exception was thrown (the first frame of its
  /// stack: `file:///w/index.js:3:9`), if known.
  pub fn thrown_at(&self) -> Option<String> {
    let stack = self.exception()?.stack.as_deref()?;
    let frame = stack.lines().map(str::trim).find(|l| l.starts_with("at "))?;
    let place = frame.trim_start_matches("at ");
    // `at f (file:///x.js:1:2)` or `at file:///x.js:1:2`.
    let place = place.rsplit_once('(').map_or(place, |(_, p)| p.trim_end_matches(')'));
    Some(place.to_string())
  }

  fn exception(&self) -> Option<&JsException> {
    match self {
      Self::Startup {
        error: JsApiError::Startup(e) | JsApiError::Threw(e),
        ..
      } => Some(e),
      Self::Worker {
        error: JsApiError::Threw(e) | JsApiError::Startup(e),
        ..
      } => Some(e),
      _ => None,
    }
  }

  /// Logs the failure: worker errors with their stack, limit hits with the
  /// figure reached, the rest (a client's mistake) at debug level.
  pub fn log(&self, request_id: RequestId) {
    match self {
      Self::Worker { error, .. } | Self::Startup { error, .. } => {
        let stack = match error {
          JsApiError::Threw(x) | JsApiError::Startup(x) => x.stack.as_deref().unwrap_or(""),
          _ => "",
        };
        tracing::error!(%request_id, "{self}\n{stack}");
      }
      Self::Limit { .. } | Self::Busy { .. } | Self::IsolateLost { .. } | Self::BadResponse { .. } => {
        tracing::warn!(%request_id, "{self}")
      }
      _ => tracing::debug!(%request_id, "{self}"),
    }
  }

  /// The client's view: a plain-text status and explanation. In `dev`
  /// mode the worker's stack trace is included; otherwise it only goes to
  /// the log. (The one place a failed request becomes a response.)
  pub fn to_response(&self, dev: bool) -> Response<Bytes> {
    let status = self.status();
    let mut text = format!("{} {}\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
    match self {
      Self::Worker {
        worker,
        error: JsApiError::Threw(e),
      } => {
        text.push_str(&format!("Worker {worker:?} threw an exception: {}\n", e.message));
      }
      Self::Startup {
        worker,
        error: JsApiError::Startup(e),
      } => {
        text.push_str(&format!("Worker {worker:?} threw while starting: {}\n", e.message));
      }
      other => text.push_str(&format!("{other}\n")),
    }
    if dev {
      if let Some(stack) = self.exception().and_then(|e| e.stack.as_deref()) {
        text.push('\n');
        text.push_str(stack);
        text.push('\n');
      }
    }
    let mut res = Response::new(Bytes::from(text));
    *res.status_mut() = status;
    if let Self::Limit { hit, .. } = self {
      res
        .headers_mut()
        .insert("edge-limit", HeaderValue::from_static(hit.kind.as_str()));
    }
    if let Self::Busy { .. } | Self::IsolateLost { .. } = self {
      res
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Self::IsolateLost { .. } = self {
      res
        .headers_mut()
        .insert("edge-isolate", HeaderValue::from_static("lost"));
    }
    res.headers_mut().insert(
      http::header::CONTENT_TYPE,
      HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
  }
}

/// Why a deploy, removal or reload was refused (the running workers are
/// unchanged).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
  #[error("{0}")]
  Invalid(String),
  #[error("the worker failed to load: {0}")]
  Startup(Box<RequestError>),
  #[error("{0}")]
  Conflict(String),
  #[error("worker {name:?} is defined in the config file; change it there")]
  ConfigOwned { name: String },
  #[error("no worker named {name:?} was deployed")]
  NotFound { name: String },
  #[error("cannot store the worker: {0}")]
  Storage(String),
  #[error("{0}")]
  Config(String),
  #[error("the server is shutting down")]
  ShuttingDown,
  #[error("{0}")]
  Unavailable(String),
}

impl DeployError {
  pub fn status(&self) -> StatusCode {
    match self {
      Self::Invalid(_) | Self::Startup(_) | Self::Config(_) => StatusCode::BAD_REQUEST,
      Self::Conflict(_) | Self::ConfigOwned { .. } => StatusCode::CONFLICT,
      Self::NotFound { .. } => StatusCode::NOT_FOUND,
      Self::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
      Self::ShuttingDown | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
  }

  /// The admin API's answer: `{"error": "...", "stack": "..."}`. The stack
  /// of a worker that threw while loading goes to whoever deployed it.
  pub fn to_response(&self) -> Response<http_body_util::Full<Bytes>> {
    let stack = match self {
      Self::Startup(e) => e.exception().and_then(|x| x.stack.clone()),
      _ => None,
    };
    let body = serde_json::json!({ "error": self.to_string(), "stack": stack });
    let mut res = Response::new(http_body_util::Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = self.status();
    res
      .headers_mut()
      .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
  }
}
