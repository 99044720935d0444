//! What a connection may hold of the node: caps on open connections (in
//! all and per client address) checked at accept, and the timeouts of a
//! connection that does nothing (a TLS handshake that never ends, a client
//! that never sends its request or its next one, or that stops reading
//! what it is sent), and strict HTTP/1.1 line endings.

use std::cell::Cell;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use dashmap::DashMap;
use edge_core::framing::{Feed, StrictLines};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

pub use crate::config::DoorLimits;
use crate::obs::stats::Stats;

/// Open connections, counted from every executor thread.
#[derive(Default)]
pub struct Connections {
  open: AtomicUsize,
  per_ip: DashMap<IpAddr, usize>,
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
  Total,
  PerIp,
}

/// One open connection's hold on the counts; released on drop.
pub struct Slot {
  conns: Arc<Connections>,
  ip: IpAddr,
}

impl Connections {
  /// Takes a slot for a connection from `ip`, or says which cap is full.
  pub fn admit(self: &Arc<Self>, ip: IpAddr, limits: &DoorLimits) -> Result<Slot, Refused> {
    if self.open.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
      self.open.fetch_sub(1, Ordering::SeqCst);
      return Err(Refused::Total);
    }
    let mut n = self.per_ip.entry(ip).or_insert(0);
    if *n >= limits.max_connections_per_ip {
      drop(n);
      self.open.fetch_sub(1, Ordering::SeqCst);
      return Err(Refused::PerIp);
    }
    *n += 1;
    Ok(Slot {
      conns: self.clone(),
      ip,
    })
  }
}

impl Drop for Slot {
  fn drop(&mut self) {
    self.conns.open.fetch_sub(1, Ordering::SeqCst);
    self.conns.per_ip.remove_if_mut(&self.ip, |_, n| {
      *n -= 1;
      *n == 0
    });
  }
}

/// Counts and logs a refused connection (a line a second at most per
/// thread: a flood must not flood the log too).
pub fn note_refused(stats: &Stats, why: Refused, ip: IpAddr, last_log: &Cell<Option<Instant>>) {
  match why {
    Refused::Total => stats.connections_refused_total.inc(),
    Refused::PerIp => stats.connections_refused_per_ip.inc(),
  }
  let now = Instant::now();
  if last_log
    .get()
    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
  {
    last_log.set(Some(now));
    match why {
      Refused::Total => tracing::warn!(%ip, "connection refused: server.max_connections open"),
      Refused::PerIp => tracing::warn!(%ip, "connection refused: server.max_connections_per_ip open from this address"),
    }
  }
}

/// The activity of one connection: a count of its reads, writes and ended
/// requests (no clock is read per I/O), and its requests in flight.
#[derive(Default)]
pub struct Activity {
  events: Cell<u64>,
  pub in_flight: Cell<usize>,
}

/// How many looks at a connection's activity make one idle timeout: it is
/// closed after between 1 and 1.25 idle timeouts of quiet.
const LOOKS: u32 = 4;

impl Activity {
  fn touch(&self) {
    self.events.set(self.events.get().wrapping_add(1));
  }

  /// Resolves when the connection has had no request in flight and no
  /// activity for `timeout` (looked at every quarter of it).
  pub async fn idle(&self, timeout: Duration) {
    let step = timeout / LOOKS;
    let mut seen = self.events.get();
    let mut quiet = 0;
    let mut next = Instant::now() + step;
    loop {
      tokio::time::sleep_until(next).await;
      next += step;
      let now = self.events.get();
      if now != seen || self.in_flight.get() > 0 {
        seen = now;
        quiet = 0;
        continue;
      }
      quiet += 1;
      if quiet >= LOOKS {
        return;
      }
    }
  }

  /// A request on the connection started (its guard ends it).
  pub fn request(self: &Rc<Self>) -> InFlight {
    self.in_flight.set(self.in_flight.get() + 1);
    InFlight(self.clone())
  }
}

/// A request in flight on a connection.
pub struct InFlight(Rc<Activity>);

impl Drop for InFlight {
  fn drop(&mut self) {
    self.0.in_flight.set(self.0.in_flight.get() - 1);
    self.0.touch();
  }
}

/// A connection's stream, noting its activity.
pub struct Watched<I> {
  inner: I,
  activity: Rc<Activity>,
  /// A write that makes no progress for this long fails the connection.
  send_timeout: Duration,
  /// Armed when a write could not go on, disarmed when one did.
  stall: Option<Pin<Box<tokio::time::Sleep>>>,
  stats: Arc<Stats>,
  /// Follows an HTTP/1.1 client's bytes for bare LFs.
  lines: Lines,
}

/// The line-ending check of a connection.
enum Lines {
  /// HTTP/2, or `server.allow_bare_lf`.
  Off,
  On(Box<StrictLines>),
  /// A bare LF was found: this much of [`REFUSED`] was handed to hyper in
  /// its place; the client's bytes after it never are.
  Refused(usize),
}

/// What hyper reads in place of a bare LF and all that follows: a NUL,
/// which no request line, header or trailer may hold (httparse refuses it:
/// hyper answers 400 and closes), and an end of head, so that hyper parses
/// at once instead of waiting for one.
const REFUSED: &[u8] = b"\0\r\n\r\n";

impl<I> Watched<I> {
  pub fn new(inner: I, activity: Rc<Activity>, send_timeout: Duration, stats: Arc<Stats>) -> Self {
    Self {
      inner,
      activity,
      send_timeout,
      stall: None,
      stats,
      lines: Lines::Off,
    }
  }

  /// Refuses HTTP/1.1 heads and trailers with a bare LF (400, see
  /// [`REFUSED`]). HTTP/2 (its preface) is left alone.
  pub fn strict_lines(mut self) -> Self {
    self.lines = Lines::On(Box::default());
    self
  }

  /// A write's (or flush's) outcome, with the send timeout: pending ones
  /// arm the stall timer (the clock is read only then), and past it they
  /// fail; one that went on disarms it.
  fn sending<T>(&mut self, cx: &mut Context<'_>, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
    if r.is_pending() {
      let timeout = self.send_timeout;
      let stall = self.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
      if stall.as_mut().poll(cx).is_ready() {
        self.stats.send_timeouts.inc();
        return Poll::Ready(Err(std::io::Error::new(
          std::io::ErrorKind::TimedOut,
          "the client read nothing for server.send_timeout_s",
        )));
      }
    } else {
      self.stall = None;
    }
    r
  }

  fn wrote(&mut self, cx: &mut Context<'_>, r: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
    if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
      self.activity.touch();
    }
    self.sending(cx, r)
  }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
  fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
    if let Lines::Refused(sent) = &mut self.lines {
      // The rest of the stand-in, then the end of the stream.
      let n = (REFUSED.len() - *sent).min(buf.remaining());
      buf.put_slice(&REFUSED[*sent..*sent + n]);
      *sent += n;
      return Poll::Ready(Ok(()));
    }
    let before = buf.filled().len();
    let r = Pin::new(&mut self.inner).poll_read(cx, buf);
    if buf.filled().len() > before {
      self.activity.touch();
      if let Lines::On(lines) = &mut self.lines {
        match lines.feed(&buf.filled()[before..]) {
          Feed::Go => {}
          Feed::Other => self.lines = Lines::Off,
          Feed::Refuse(i) => {
            buf.set_filled(before + i);
            let n = REFUSED.len().min(buf.remaining());
            buf.put_slice(&REFUSED[..n]);
            self.lines = Lines::Refused(n);
            self.stats.bare_lf.inc();
          }
        }
      }
    }
    r
  }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
  fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
    let r = Pin::new(&mut self.inner).poll_write(cx, data);
    self.wrote(cx, r)
  }

  fn poll_write_vectored(
    mut self: Pin<&mut Self>,
    cx: &mut Context<'_>,
    bufs: &[std::io::IoSlice<'_>],
  ) -> Poll<std::io::Result<usize>> {
    let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
    self.wrote(cx, r)
  }

  fn is_write_vectored(&self) -> bool {
    self.inner.is_write_vectored()
  }

  fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
    let r = Pin::new(&mut self.inner).poll_flush(cx);
    self.sending(cx, r)
  }

  fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
    Pin::new(&mut self.inner).poll_shutdown(cx)
  }
}
