//! Response bodies: [`EdgeBody`] on the isolate's own thread (it may read a
//! stream the isolate is still writing), and [`SendBody`] for embedders on
//! other threads, fed through a channel.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use js_api::{BodyTooLarge, RequestBody, ResponseStream};
use tokio::sync::mpsc;

use super::encode::{Coding, Encoder, PIECE};
use crate::obs::logging::AccessLine;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body served on the thread that runs the worker.
pub struct EdgeBody(Kind);

enum Kind {
  Full(Option<Bytes>),
  Stream(Box<ResponseStream>, Option<Box<StreamEnd>>),
  /// Made on another thread (the quarantine lane).
  Sent(SendBody, Option<Box<StreamEnd>>),
  /// Compressed by the server on the way out.
  Encoded(Box<Encoded>),
}

/// A body and its compressor: the input is taken a piece at a time.
struct Encoded {
  inner: EdgeBody,
  /// `None` once the encoded body has ended.
  encoder: Option<Encoder>,
  pending: Bytes,
  budget: EncodeBudget,
  /// Armed while the worker's compression budget refills.
  wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The worker's compression budget (`server.encode_bytes_per_s`, over all
/// its responses): compressing costs the node ~10 ns a byte, a worker
/// almost nothing to ask for, so past the budget its compressed bodies
/// slow down instead of taking the thread from other tenants.
pub struct EncodeBudget {
  pub stats: Arc<crate::obs::stats::WorkerStats>,
  pub per_s: u64,
}

/// Written when a streamed body ends (or is dropped unfinished): the access
/// line, with the bytes sent.
struct StreamEnd {
  line: AccessLine,
  bytes: u64,
}

impl Drop for StreamEnd {
  fn drop(&mut self) {
    self.line.emit(self.bytes);
  }
}

impl EdgeBody {
  pub fn empty() -> Self {
    Self(Kind::Full(None))
  }

  pub fn full(b: Bytes) -> Self {
    Self(Kind::Full((!b.is_empty()).then_some(b)))
  }

  pub fn stream(s: ResponseStream) -> Self {
    Self(Kind::Stream(Box::new(s), None))
  }

  /// This body compressed with `coding` as it is sent, within `budget`.
  pub fn encoded(self, coding: Coding, budget: EncodeBudget) -> Self {
    Self(Kind::Encoded(Box::new(Encoded {
      inner: self,
      encoder: Some(Encoder::new(coding)),
      pending: Bytes::new(),
      budget,
      wait: None,
    })))
  }

  /// Writes `line` once the body is sent: now for a whole body, at its end
  /// for a stream (the bytes counted are the worker's, before the server
  /// compresses them).
  pub fn log_access(&mut self, line: AccessLine) {
    match &mut self.0 {
      Kind::Full(b) => line.emit(b.as_ref().map_or(0, |b| b.len() as u64)),
      Kind::Stream(_, end) | Kind::Sent(_, end) => *end = Some(Box::new(StreamEnd { line, bytes: 0 })),
      Kind::Encoded(e) => e.inner.log_access(line),
    }
  }

  /// A body made on another thread.
  pub fn from_send(b: SendBody) -> Self {
    match b.0 {
      SendKind::Full(b) => Self(Kind::Full(b)),
      other => Self(Kind::Sent(SendBody(other), None)),
    }
  }

  /// Moves the body to another thread: a task on this thread pumps it into
  /// a channel. Whole bodies move without a task.
  pub fn into_send(self) -> SendBody {
    match self.0 {
      Kind::Full(b) => SendBody(SendKind::Full(b)),
      Kind::Stream(mut s, _) => pump(move |cx| {
        s.poll_chunk(cx)
          .map(|o| o.map(|r| r.map_err(|e| Box::new(e) as BoxError)))
      }),
      Kind::Sent(b, _) => b,
      Kind::Encoded(mut e) => pump(move |cx| {
        // (Only data frames come out of the encoder.)
        e.poll_frame(cx)
          .map(|o| o.map(|r| r.map(|f| f.into_data().unwrap_or_default())))
      }),
    }
  }
}

/// A task on this thread that sends what `next` yields into a channel, and
/// the body reading that channel on another thread.
fn pump(mut next: impl FnMut(&mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>> + 'static) -> SendBody {
  let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(4);
  tokio::task::spawn_local(async move {
    while let Some(chunk) = std::future::poll_fn(&mut next).await {
      if tx.send(chunk).await.is_err() {
        break;
      }
    }
  });
  SendBody(SendKind::Channel(rx))
}

impl Encoded {
  fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    loop {
      let Some(encoder) = self.encoder.as_mut() else {
        return Poll::Ready(None);
      };
      if !self.pending.is_empty() {
        let n = self.pending.len().min(PIECE);
        if let Some(wait) = self.wait.as_mut() {
          if wait.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
          }
          // Refilled: take the tokens now.
          self.wait = None;
          continue;
        }
        if self.budget.per_s > 0 {
          if let Some(d) = self.budget.stats.encode_wait(self.budget.per_s, n as u64) {
            self.wait = Some(Box::pin(tokio::time::sleep(d)));
            continue;
          }
        }
        let piece = self.pending.split_to(n);
        match encoder.piece(&piece) {
          Ok(out) if out.is_empty() => continue,
          Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
          Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
        }
      }
      match Pin::new(&mut self.inner).poll_frame(cx) {
        Poll::Pending => return Poll::Pending,
        Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
        // (A trailer frame: the server sends none of a worker's.)
        Poll::Ready(Some(Ok(frame))) => self.pending = frame.into_data().unwrap_or_default(),
        Poll::Ready(None) => {
          let end = self.encoder.take().map(Encoder::finish);
          return match end {
            Some(Ok(b)) if !b.is_empty() => Poll::Ready(Some(Ok(Frame::data(b)))),
            Some(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
            _ => Poll::Ready(None),
          };
        }
      }
    }
  }
}

impl Body for EdgeBody {
  type Data = Bytes;
  type Error = BoxError;

  fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    match &mut self.get_mut().0 {
      Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
      Kind::Stream(s, end) => {
        let chunk = s.poll_chunk(cx);
        if let (Some(end), Poll::Ready(Some(Ok(b)))) = (end.as_mut(), &chunk) {
          end.bytes += b.len() as u64;
        }
        chunk.map(|o| o.map(|r| r.map(Frame::data).map_err(|e| Box::new(e) as BoxError)))
      }
      Kind::Sent(b, end) => {
        let frame = Pin::new(b).poll_frame(cx);
        if let (Some(end), Poll::Ready(Some(Ok(f)))) = (end.as_mut(), &frame) {
          end.bytes += f.data_ref().map_or(0, |d| d.len() as u64);
        }
        frame
      }
      Kind::Encoded(e) => e.poll_frame(cx),
    }
  }

  fn is_end_stream(&self) -> bool {
    matches!(self.0, Kind::Full(None))
  }

  fn size_hint(&self) -> SizeHint {
    match &self.0 {
      Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
      Kind::Stream(..) | Kind::Encoded(_) => SizeHint::default(),
      Kind::Sent(b, _) => b.size_hint(),
    }
  }
}

/// A response body that may cross threads.
pub struct SendBody(SendKind);

enum SendKind {
  Full(Option<Bytes>),
  Channel(mpsc::Receiver<Result<Bytes, BoxError>>),
}

impl Body for SendBody {
  type Data = Bytes;
  type Error = BoxError;

  fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    match &mut self.get_mut().0 {
      SendKind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
      SendKind::Channel(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
    }
  }

  fn is_end_stream(&self) -> bool {
    matches!(self.0, SendKind::Full(None))
  }

  fn size_hint(&self) -> SizeHint {
    match &self.0 {
      SendKind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
      SendKind::Channel(_) => SizeHint::default(),
    }
  }
}

/// Set by a request body when it grew past its limit.
pub type BodyOverLimit = Arc<AtomicBool>;

/// A request body that fails once it passes `limit` bytes, and says so in
/// `over` (the request then gets 413 whatever the worker did).
pub struct LimitedBody<B> {
  inner: B,
  seen: u64,
  limit: u64,
  over: BodyOverLimit,
}

impl<B> Body for LimitedBody<B>
where
  B: Body<Data = Bytes> + Unpin,
  B::Error: Into<BoxError>,
{
  type Data = Bytes;
  type Error = BoxError;

  fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    let this = self.get_mut();
    match Pin::new(&mut this.inner).poll_frame(cx) {
      Poll::Ready(Some(Ok(frame))) => {
        if let Some(d) = frame.data_ref() {
          this.seen += d.len() as u64;
          if this.seen > this.limit {
            this.over.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit: this.limit }))));
          }
        }
        Poll::Ready(Some(Ok(frame)))
      }
      Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
      Poll::Ready(None) => Poll::Ready(None),
      Poll::Pending => Poll::Pending,
    }
  }

  fn is_end_stream(&self) -> bool {
    self.inner.is_end_stream()
  }

  fn size_hint(&self) -> SizeHint {
    self.inner.size_hint()
  }
}

/// The request body as the isolate takes it: `None` for an empty body;
/// refused at once when its declared length is over `limit`.
#[allow(clippy::type_complexity)]
pub fn request_body<B>(body: B, limit: u64) -> Result<(Option<RequestBody>, Option<BodyOverLimit>), BodyTooLarge>
where
  B: Body<Data = Bytes> + Unpin + Send + 'static,
  B::Error: Into<BoxError>,
{
  if body.is_end_stream() {
    return Ok((None, None));
  }
  if body.size_hint().lower() > limit {
    return Err(BodyTooLarge { limit });
  }
  let over = Arc::new(AtomicBool::new(false));
  let limited = LimitedBody {
    inner: body,
    seen: 0,
    limit,
    over: over.clone(),
  };
  Ok((Some(http_body_util::BodyExt::boxed_unsync(limited)), Some(over)))
}
