//! The admin API's routes and what its answers are made of, for whoever
//! serves them: the admin listener (`admin.rs`), a supervised process
//! answering its supervisor's link (`link.rs`), and the supervisor
//! relaying to its processes (`relay.rs`).
//!
//! - `PUT /workers/{name}`: a `multipart/form-data` body with a `metadata`
//!   part (JSON: `main_module`, `routes`, `vars`, `limits`,
//!   `allow_private_network`) and one part per module, named by its path.
//! - `GET /workers`, `GET /workers/{name}`, `DELETE /workers/{name}`.
//! - `GET /workers/{name}/tail`: a live stream of JSON lines (served by
//!   `admin.rs` itself, from `obs::tail`).
//! - `GET /metrics`: Prometheus text format.
//!
//! A query `?dry_run` on `PUT` or `DELETE` checks everything (the upload,
//! its routes, its code loaded in an isolate) and changes nothing.

use std::collections::BTreeMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use super::deploy::{Deployer, WorkerInfo};
use crate::error::DeployError;
use crate::obs::stats::Stats;
use crate::worker::{Upload, UploadMeta};

/// The largest upload body accepted: the modules' cap and room for the
/// multipart framing.
pub const MAX_UPLOAD: usize = crate::worker::MAX_UPLOAD_BYTES + (1 << 20);

pub type Reply = Response<Full<Bytes>>;

/// Answers an admin request that was let in, with this process's
/// deployer and counters.
pub async fn route<B>(deployer: &Deployer, stats: &Stats, req: Request<B>) -> Reply
where
  B: http_body::Body<Data = Bytes> + Send + 'static,
  B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
  let path = req.uri().path().to_string();
  let method = req.method().clone();
  let dry_run = dry_run(req.uri());
  let res = match (method, path.as_str()) {
    (Method::GET, "/metrics") => metrics_reply(crate::obs::metrics::render(stats)),
    (Method::GET, "/workers") => {
      let list: Vec<WorkerInfo> = deployer.workers().await.iter().map(|w| WorkerInfo::of(w)).collect();
      json(StatusCode::OK, &list)
    }
    (method, p) if p.starts_with("/workers/") => {
      let name = &p["/workers/".len()..];
      match method {
        Method::GET => match deployer.workers().await.iter().find(|w| &*w.name == name) {
          Some(w) => json(StatusCode::OK, &WorkerInfo::of(w)),
          None => DeployError::NotFound { name: name.into() }.to_response(),
        },
        Method::PUT => match read_upload(name, req).await {
          Ok(upload) => {
            let done = match dry_run {
              true => deployer.check_deploy(upload).await,
              false => deployer.deploy(upload).await,
            };
            match done {
              Ok(d) => json(StatusCode::OK, &d),
              Err(e) => e.to_response(),
            }
          }
          Err(e) => e.to_response(),
        },
        Method::DELETE => match match dry_run {
          true => deployer.check_remove(name).await,
          false => deployer.remove(name).await,
        } {
          Ok(()) => {
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = StatusCode::NO_CONTENT;
            res
          }
          Err(e) => e.to_response(),
        },
        _ => text(
          StatusCode::METHOD_NOT_ALLOWED,
          "405 Method Not Allowed: use GET, PUT or DELETE\n",
        ),
      }
    }
    _ => text(
      StatusCode::NOT_FOUND,
      "404 Not Found: the admin API has /workers, /workers/{name} and /metrics\n",
    ),
  };
  res
}

/// Whether the query asks for a check only (`?dry_run`, `=1`, `=true`).
pub fn dry_run(uri: &http::Uri) -> bool {
  uri.query().is_some_and(|q| {
    q.split('&')
      .any(|p| matches!(p, "dry_run" | "dry_run=1" | "dry_run=true"))
  })
}

pub fn metrics_reply(text: String) -> Reply {
  let mut res = Response::new(Full::new(Bytes::from(text)));
  res.headers_mut().insert(
    http::header::CONTENT_TYPE,
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
  );
  res
}

/// Reads a multipart upload: the `metadata` part and the module parts.
async fn read_upload<B>(name: &str, req: Request<B>) -> Result<Upload, DeployError>
where
  B: http_body::Body<Data = Bytes> + Send + 'static,
  B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
  let content_type = req
    .headers()
    .get(http::header::CONTENT_TYPE)
    .and_then(|v| v.to_str().ok())
    .map(str::to_string);
  let body = read_body(req.into_body()).await?;
  parse_upload(name, content_type.as_deref(), body).await
}

/// A request body of at most [`MAX_UPLOAD`] bytes.
pub async fn read_body<B>(body: B) -> Result<Bytes, DeployError>
where
  B: http_body::Body<Data = Bytes> + Send + 'static,
  B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
  Limited::new(body, MAX_UPLOAD)
    .collect()
    .await
    .map(|b| b.to_bytes())
    .map_err(|e| DeployError::Invalid(format!("cannot read the upload (at most {} MB): {e}", MAX_UPLOAD >> 20)))
}

/// An upload out of its multipart body.
pub async fn parse_upload(name: &str, content_type: Option<&str>, body: Bytes) -> Result<Upload, DeployError> {
  let invalid = |m: String| DeployError::Invalid(m);
  let boundary = content_type
    .and_then(|ct| multer::parse_boundary(ct).ok())
    .ok_or_else(|| invalid("send the worker as multipart/form-data (a metadata part and module parts)".into()))?;
  let stream = futures::stream::once(async move { Ok::<Bytes, Infallible>(body) });
  let mut form = multer::Multipart::new(stream, boundary);
  let mut meta: Option<UploadMeta> = None;
  let mut modules = BTreeMap::new();
  while let Some(field) = form
    .next_field()
    .await
    .map_err(|e| invalid(format!("bad multipart body: {e}")))?
  {
    let part = field
      .name()
      .map(str::to_string)
      .ok_or_else(|| invalid("every part needs a name".into()))?;
    let bytes = field
      .bytes()
      .await
      .map_err(|e| invalid(format!("part {part:?}: {e}")))?;
    if part == "metadata" {
      meta = Some(serde_json::from_slice(&bytes).map_err(|e| invalid(format!("metadata: {e}")))?);
    } else if modules.insert(part.clone(), bytes).is_some() {
      return Err(invalid(format!("module {part:?} is in the upload twice")));
    }
  }
  let meta = meta.ok_or_else(|| invalid("the upload has no metadata part".into()))?;
  Ok(Upload {
    name: name.to_string(),
    meta,
    modules,
  })
}

pub fn text(status: StatusCode, body: &'static str) -> Reply {
  let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
  *res.status_mut() = status;
  res.headers_mut().insert(
    http::header::CONTENT_TYPE,
    HeaderValue::from_static("text/plain; charset=utf-8"),
  );
  res
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Reply {
  let body = serde_json::to_vec_pretty(v).unwrap_or_default();
  let mut res = Response::new(Full::new(Bytes::from(body)));
  *res.status_mut() = status;
  res
    .headers_mut()
    .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
  res
}
