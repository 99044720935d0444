//! The link between a supervisor and one of its server processes (a
//! socket pair): admin API requests one way, their answers the other, in
//! [`edge_core::frames`]. Each request has a number its answer repeats,
//! so an answer that came after its request timed out is skipped.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_core::frames::{encode, Frames, Head};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};

use super::api::{self, Reply, MAX_UPLOAD};
use super::deploy::Deployer;
use crate::obs::stats::Stats;

/// The largest head of a frame.
const MAX_HEAD: usize = 64 << 10;
/// The largest body of a frame: an upload, or a process's metrics.
const MAX_BODY: usize = if MAX_UPLOAD > (64 << 20) { MAX_UPLOAD } else { 64 << 20 };

/// An admin request sent over a link.
#[derive(Clone, Debug)]
pub struct Asked {
  pub method: http::Method,
  /// The path and query.
  pub path: String,
  pub content_type: Option<String>,
  pub body: Bytes,
}

/// A process's answer to an [`Asked`].
#[derive(Clone, Debug)]
pub struct Answer {
  pub status: StatusCode,
  pub content_type: Option<String>,
  pub body: Bytes,
}

impl Answer {
  /// As the admin API's response.
  pub fn into_reply(self) -> Reply {
    let mut res = http::Response::new(Full::new(self.body));
    *res.status_mut() = self.status;
    if let Some(ct) = self.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
      res.headers_mut().insert(http::header::CONTENT_TYPE, ct);
    }
    res
  }
}

fn frame_error(e: edge_core::frames::FrameError) -> std::io::Error {
  std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// The supervisor's end of one process's link.
pub struct Link {
  stream: UnixStream,
  frames: Frames,
  seq: u64,
}

impl Link {
  pub fn new(stream: UnixStream) -> Self {
    Self {
      stream,
      frames: Frames::new(MAX_HEAD, MAX_BODY),
      seq: 0,
    }
  }

  /// Sends `asked` and waits up to `wait` for its answer. After an error
  /// other than a timeout while waiting, the link may be out of step (a
  /// frame half written): drop it.
  pub fn ask(&mut self, asked: &Asked, wait: Duration) -> std::io::Result<Answer> {
    let until = Instant::now() + wait;
    self.seq += 1;
    let head = Head::format(
      self.seq,
      asked.method.as_str(),
      &asked.path,
      asked.content_type.as_deref(),
    );
    self.stream.set_write_timeout(Some(wait))?;
    self.stream.write_all(&encode(&head, &asked.body))?;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
      while let Some((head, body)) = self.frames.next_frame().map_err(frame_error)? {
        let h = Head::parse(&head).map_err(frame_error)?;
        if h.seq != self.seq {
          // The answer to an earlier request that timed out.
          continue;
        }
        let status = h
          .word
          .parse::<u16>()
          .ok()
          .and_then(|s| StatusCode::from_u16(s).ok())
          .ok_or_else(|| std::io::Error::other(format!("an answer's status is {:?}", h.word)))?;
        return Ok(Answer {
          status,
          content_type: h.content_type.map(str::to_string),
          body: Bytes::from(body),
        });
      }
      let left = until.saturating_duration_since(Instant::now());
      if left.is_zero() {
        return Err(std::io::Error::new(
          std::io::ErrorKind::TimedOut,
          format!("no answer in {wait:?}"),
        ));
      }
      self.stream.set_read_timeout(Some(left))?;
      match self.stream.read(&mut chunk) {
        Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => self.frames.push(&chunk[..n]),
        Err(e)
          if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
          ) => {}
        Err(e) => return Err(e),
      }
    }
  }
}

/// In a supervised process: answers the supervisor's admin requests on
/// `stream` (one at a time, on a thread of its own) with this process's
/// deployer and counters, until the supervisor goes.
pub fn serve(stream: UnixStream, deployer: Arc<Deployer>, stats: Arc<Stats>) -> std::io::Result<()> {
  std::thread::Builder::new().name("edge-link".into()).spawn(move || {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
      Ok(rt) => rt,
      Err(e) => {
        tracing::error!("the supervisor's link: cannot build its runtime: {e}");
        return;
      }
    };
    let mut stream = stream;
    let mut frames = Frames::new(MAX_HEAD, MAX_BODY);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
      let frame = match frames.next_frame() {
        Ok(Some(f)) => f,
        Ok(None) => match stream.read(&mut chunk) {
          // The supervisor is gone (its processes follow it).
          Ok(0) => return,
          Ok(n) => {
            frames.push(&chunk[..n]);
            continue;
          }
          Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
          Err(e) => {
            tracing::error!("the supervisor's link: {e}");
            return;
          }
        },
        Err(e) => {
          tracing::error!("the supervisor's link: {e}");
          return;
        }
      };
      if let Err(e) = answer(&rt, &deployer, &stats, &mut stream, frame) {
        tracing::error!("the supervisor's link: {e}");
        return;
      }
    }
  })?;
  Ok(())
}

/// Runs one request of the supervisor through this process's admin API.
fn answer(
  rt: &tokio::runtime::Runtime,
  deployer: &Deployer,
  stats: &Stats,
  stream: &mut UnixStream,
  (head, body): (String, Vec<u8>),
) -> std::io::Result<()> {
  let h = Head::parse(&head).map_err(frame_error)?;
  let mut req = Request::builder().method(h.word).uri(h.rest);
  if let Some(ct) = h.content_type {
    req = req.header(http::header::CONTENT_TYPE, ct);
  }
  let req = req.body(Full::new(Bytes::from(body))).map_err(std::io::Error::other)?;
  let (parts, body) = rt.block_on(async {
    let (parts, body) = api::route(deployer, stats, req).await.into_parts();
    (parts, body.collect().await.map(|b| b.to_bytes()).unwrap_or_default())
  });
  let ct = parts
    .headers
    .get(http::header::CONTENT_TYPE)
    .and_then(|v| v.to_str().ok());
  let head = Head::format(h.seq, parts.status.as_str(), "", ct);
  stream.write_all(&encode(&head, &body))
}
