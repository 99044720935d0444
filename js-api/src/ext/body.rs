//! Bodies crossing between hyper and JavaScript: the request body as a
//! resource JS reads from (`readableStreamForRid`), and a reader for the
//! resource a streamed response body is written into.

use std::borrow::Cow;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use deno_core::{AsyncRefCell, AsyncResult, BufView, CancelHandle, RcRef, Resource};
use deno_error::JsErrorBox;
use http_body::Body;

/// Error type of request bodies (whatever the transport's error was).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body from any source: hyper's `Incoming`, a test's `Full`, or a
/// channel from another thread.
pub type RequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Raised into JS when reading the request body fails; carries the limit
/// when a size cap ended it (the embedder sets it through `body_limit`).
#[derive(Debug, thiserror::Error, deno_error::JsError)]
pub enum BodyReadError {
  #[class(type)]
  #[error("The request body is larger than the limit of {limit} bytes")]
  TooLarge { limit: u64 },
  #[class(type)]
  #[error("Reading the request body failed: {0}")]
  Transport(String),
}

pub struct RequestBodyResource {
  body: AsyncRefCell<Pin<Box<RequestBody>>>,
  /// Part of the last chunk that did not fit the reader's buffer.
  leftover: std::cell::RefCell<Bytes>,
  cancel: CancelHandle,
  size_hint: (u64, Option<u64>),
}

impl RequestBodyResource {
  pub fn new(body: RequestBody) -> Self {
    let hint = body.size_hint();
    Self {
      body: AsyncRefCell::new(Box::pin(body)),
      leftover: Default::default(),
      cancel: CancelHandle::default(),
      size_hint: (hint.lower(), hint.upper()),
    }
  }
}

impl Resource for RequestBodyResource {
  fn name(&self) -> Cow<'_, str> {
    "requestBody".into()
  }

  fn read(self: Rc<Self>, limit: usize) -> AsyncResult<BufView> {
    Box::pin(async move {
      let limit = limit.max(1);
      {
        let mut left = self.leftover.borrow_mut();
        if !left.is_empty() {
          let n = left.len().min(limit);
          return Ok(BufView::from(left.split_to(n)));
        }
      }
      let mut body = RcRef::map(&self, |r| &r.body).borrow_mut().await;
      let cancel = RcRef::map(&self, |r| &r.cancel);
      let next = std::future::poll_fn(|cx| next_data(Pin::as_mut(&mut *body), cx));
      let chunk = deno_core::CancelFuture::or_cancel(next, cancel)
        .await
        .map_err(|_| JsErrorBox::generic("The request body read was cancelled"))?;
      match chunk {
        Ok(Some(mut bytes)) => {
          if bytes.len() > limit {
            *self.leftover.borrow_mut() = bytes.split_off(limit);
          }
          Ok(BufView::from(bytes))
        }
        Ok(None) => Ok(BufView::empty()),
        Err(e) => Err(JsErrorBox::from_err(classify(e))),
      }
    })
  }

  fn size_hint(&self) -> (u64, Option<u64>) {
    self.size_hint
  }

  fn close(self: Rc<Self>) {
    self.cancel.cancel();
  }
}

fn classify(e: BoxError) -> BodyReadError {
  match e.downcast::<BodyTooLarge>() {
    Ok(t) => BodyReadError::TooLarge { limit: t.limit },
    Err(e) => BodyReadError::Transport(e.to_string()),
  }
}

/// The error a size-capped body yields past its cap.
#[derive(Debug, thiserror::Error)]
#[error("body larger than {limit} bytes")]
pub struct BodyTooLarge {
  pub limit: u64,
}

/// Next data frame of a body, skipping trailers.
pub fn next_data<B>(mut body: Pin<&mut B>, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, B::Error>>
where
  B: Body<Data = Bytes> + ?Sized,
{
  loop {
    match body.as_mut().poll_frame(cx) {
      Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
        Ok(data) if data.is_empty() => continue,
        Ok(data) => return Poll::Ready(Ok(Some(data))),
        Err(_trailers) => continue,
      },
      Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
      Poll::Ready(None) => return Poll::Ready(Ok(None)),
      Poll::Pending => return Poll::Pending,
    }
  }
}
