//! A request body that must keep up a minimum rate (Kestrel's
//! `MinRequestBodyDataRate`): after a grace period, the bytes received must
//! average `min_body_bytes_per_s`; a client that trickles fails its body
//! (the request is answered 408) instead of holding a request slot until
//! the wall limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::exec::body::BoxError;

/// Set when the body came too slowly (`None` for a body with nothing to
/// come: no flag is made for it).
pub type TooSlow = Option<Arc<AtomicBool>>;

#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than {rate} bytes a second (server.min_body_bytes_per_s)")]
pub struct BodyTooSlow {
  rate: u64,
}

pub struct MinRate<B> {
  inner: B,
  rate: u64,
  /// When the body is due to have `seen` bytes at `rate`: its start plus
  /// the grace plus `seen / rate`.
  start: Instant,
  grace: Duration,
  seen: u64,
  timer: Option<Pin<Box<Sleep>>>,
  /// `None`: not judged (no minimum, or nothing to come).
  slow: TooSlow,
}

impl<B> MinRate<B> {
  /// `inner`, the body of a request taken at `start`, held to `rate`
  /// bytes a second after `grace` (a rate of 0: never judged).
  pub fn new(inner: B, rate: u64, grace: Duration, start: std::time::Instant) -> (Self, TooSlow)
  where
    B: Body,
  {
    let slow = (rate > 0 && !inner.is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
    let flag = slow.clone();
    let body = Self {
      inner,
      rate,
      start: Instant::from_std(start),
      grace,
      seen: 0,
      timer: None,
      slow,
    };
    (body, flag)
  }

  /// By when the next byte must have come.
  fn due(&self) -> Instant {
    self.start + self.grace + Duration::from_secs_f64((self.seen + 1) as f64 / self.rate as f64)
  }
}

impl<B> Body for MinRate<B>
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
        }
        Poll::Ready(Some(Ok(frame)))
      }
      Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
      Poll::Ready(None) => Poll::Ready(None),
      Poll::Pending => {
        let Some(slow) = &this.slow else {
          return Poll::Pending;
        };
        let due = this.due();
        let timer = this
          .timer
          .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() != due {
          timer.as_mut().reset(due);
        }
        if timer.as_mut().poll(cx).is_ready() {
          slow.store(true, Ordering::SeqCst);
          return Poll::Ready(Some(Err(Box::new(BodyTooSlow { rate: this.rate }))));
        }
        Poll::Pending
      }
    }
  }

  fn is_end_stream(&self) -> bool {
    self.inner.is_end_stream()
  }

  fn size_hint(&self) -> SizeHint {
    self.inner.size_hint()
  }
}
