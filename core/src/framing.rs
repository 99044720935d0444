//! Strict line endings on an HTTP/1.1 connection: follows the bytes a
//! client sends (heads, `Content-Length` and chunked bodies, trailers) the
//! way hyper frames them and finds the first bare LF in a head or a
//! trailer, which httparse accepts (RFC 9112 2.2 lets a recipient accept
//! it; a strict server refuses it, so that no hop behind a lenient one
//! reads a different request). An HTTP/2 connection (its preface) is left
//! alone.

/// The HTTP/2 connection preface's first line: a connection that starts
/// with it is not HTTP/1.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// How much of a header line is kept to read the framing headers from; a
/// `Content-Length` or `Transfer-Encoding` line longer than this is
/// refused (no client sends one).
const LINE_KEPT: usize = 128;

/// What the bytes fed so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
  /// Nothing wrong; feed the next bytes.
  Go,
  /// Not HTTP/1 (the HTTP/2 preface): nothing more to check.
  Other,
  /// The byte at this index of the bytes just fed is a bare LF (or ends a
  /// framing header too long to read): the request must be refused.
  Refuse(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
  /// Connection start: this many bytes matched the HTTP/2 preface.
  Preface(usize),
  /// In a request head (lines so far in `lines`).
  Head,
  /// In a `Content-Length` body: bytes left.
  Body(u64),
  /// In a chunk-size line.
  ChunkSize,
  /// In chunk data: bytes left.
  ChunkData(u64),
  /// After chunk data: the CR (0) and the LF (1) due.
  ChunkEnd(u8),
  /// After the last chunk: trailer lines until an empty one.
  Trailers,
  /// A refusal or an error the server closes on: nothing more to check.
  Done,
}

/// The follower of one connection's client bytes.
#[derive(Debug, Clone)]
pub struct StrictLines {
  state: State,
  /// Bytes of the current line so far.
  line_len: usize,
  /// The line's last byte so far was CR.
  prev_cr: bool,
  /// Lines of the head so far (not counting empty lines before it).
  lines: u32,
  /// The line may be `Content-Length` or `Transfer-Encoding` (it starts
  /// with `c` or `t`): its first bytes are kept in `kept`.
  keeping: bool,
  kept: [u8; LINE_KEPT],
  /// Chunk size so far (`None` after an overflow) and whether its digits
  /// ended.
  chunk: Option<u64>,
  digits_done: bool,
  /// Framing headers of the head so far.
  content_length: Option<u64>,
  te: bool,
  te_chunked: bool,
}

impl Default for StrictLines {
  fn default() -> Self {
    Self::new()
  }
}

impl StrictLines {
  /// For a connection that has sent nothing yet.
  pub fn new() -> Self {
    Self {
      state: State::Preface(0),
      line_len: 0,
      prev_cr: false,
      lines: 0,
      keeping: false,
      kept: [0; LINE_KEPT],
      chunk: Some(0),
      digits_done: false,
      content_length: None,
      te: false,
      te_chunked: false,
    }
  }

  /// Follows the next bytes the client sent.
  pub fn feed(&mut self, bytes: &[u8]) -> Feed {
    let mut at = 0;
    while at < bytes.len() {
      let rest = &bytes[at..];
      let used = match self.state {
        State::Done => return Feed::Other,
        State::Preface(n) => {
          let take = rest.len().min(PREFACE.len() - n);
          if rest[..take] == PREFACE[n..n + take] {
            if n + take == PREFACE.len() {
              self.state = State::Done;
              return Feed::Other;
            }
            self.state = State::Preface(n + take);
            return Feed::Go;
          }
          // HTTP/1: what matched has no LF; follow it as a head.
          self.state = State::Head;
          let matched = self.line_bytes(&PREFACE[..n]);
          debug_assert!(matches!(matched, Ok(m) if m == n));
          0
        }
        State::Body(left) => {
          let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
          self.state = match left - take as u64 {
            0 => State::Head,
            left => State::Body(left),
          };
          take
        }
        State::ChunkData(left) => {
          let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
          self.state = match left - take as u64 {
            0 => State::ChunkEnd(0),
            left => State::ChunkData(left),
          };
          take
        }
        State::ChunkEnd(n) => {
          let want = if n == 0 { b'\r' } else { b'\n' };
          if rest[0] != want {
            // hyper refuses the body ("Invalid chunk body CR/LF").
            self.state = State::Done;
            return Feed::Other;
          }
          self.state = if n == 0 { State::ChunkEnd(1) } else { State::ChunkSize };
          1
        }
        State::Head | State::ChunkSize | State::Trailers => match self.line_bytes(rest) {
          Ok(used) => used,
          Err(i) => {
            self.state = State::Done;
            return Feed::Refuse(at + i);
          }
        },
      };
      at += used;
    }
    Feed::Go
  }

  /// Follows line bytes up to the end of the first line; the bytes used,
  /// or the index of a bare LF.
  fn line_bytes(&mut self, bytes: &[u8]) -> Result<usize, usize> {
    let Some(lf) = memchr::memchr(b'\n', bytes) else {
      self.keep(bytes);
      if let Some(last) = bytes.last() {
        self.prev_cr = *last == b'\r';
        self.line_len += bytes.len();
      }
      return Ok(bytes.len());
    };
    let cr = if lf > 0 { bytes[lf - 1] == b'\r' } else { self.prev_cr };
    if !cr {
      return Err(lf);
    }
    self.keep(&bytes[..lf]);
    let len = self.line_len + lf;
    self.line_len = 0;
    self.prev_cr = false;
    // The line without its CR.
    if self.line_done(len - 1) {
      Ok(lf + 1)
    } else {
      Err(lf)
    }
  }

  fn keep(&mut self, part: &[u8]) {
    if self.state != State::Head {
      if self.state == State::ChunkSize {
        self.chunk_digits(part);
      }
      return;
    }
    if self.line_len == 0 {
      // Most lines are neither framing header: nothing is copied.
      self.keeping = matches!(part.first(), Some(b'c' | b'C' | b't' | b'T'));
    }
    if !self.keeping {
      return;
    }
    let from = self.line_len.min(LINE_KEPT);
    let n = part.len().min(LINE_KEPT - from);
    self.kept[from..from + n].copy_from_slice(&part[..n]);
  }

  fn chunk_digits(&mut self, part: &[u8]) {
    for &b in part {
      if self.digits_done {
        return;
      }
      let Some(d) = (b as char).to_digit(16) else {
        self.digits_done = true;
        return;
      };
      self.chunk = self
        .chunk
        .and_then(|c| c.checked_mul(16))
        .and_then(|c| c.checked_add(d as u64));
    }
  }

  /// A whole line of `len` bytes (CRLF not counted) ended; false when it
  /// must be refused.
  fn line_done(&mut self, len: usize) -> bool {
    match self.state {
      State::Head if len == 0 => {
        if self.lines > 0 {
          self.state = if self.te {
            if self.te_chunked {
              State::ChunkSize
            } else {
              // hyper refuses it (400) and closes.
              State::Done
            }
          } else {
            match self.content_length {
              Some(n) if n > 0 => State::Body(n),
              _ => State::Head,
            }
          };
          self.lines = 0;
          self.content_length = None;
          self.te = false;
          self.te_chunked = false;
        }
        true
      }
      State::Head => {
        self.lines += 1;
        self.lines == 1 || !std::mem::take(&mut self.keeping) || self.header(len)
      }
      State::ChunkSize => {
        self.state = match self.chunk {
          Some(0) => State::Trailers,
          Some(n) => State::ChunkData(n),
          // hyper refuses an overflowing size.
          None => State::Done,
        };
        self.chunk = Some(0);
        self.digits_done = false;
        true
      }
      State::Trailers => {
        if len == 0 {
          self.state = State::Head;
        }
        true
      }
      _ => true,
    }
  }

  /// A header line of `len` bytes: notes the framing headers; false for
  /// one too long to read.
  fn header(&mut self, len: usize) -> bool {
    let kept = &self.kept[..len.min(LINE_KEPT)];
    let Some(colon) = kept.iter().position(|b| *b == b':') else {
      return true;
    };
    let (name, value) = (&kept[..colon], &kept[colon + 1..]);
    let cl = name.eq_ignore_ascii_case(b"content-length");
    let te = name.eq_ignore_ascii_case(b"transfer-encoding");
    if !(cl || te) {
      return true;
    }
    if len > LINE_KEPT {
      return false;
    }
    let value = value.trim_ascii();
    if te {
      self.te = true;
      let last = value.rsplit(|b| *b == b',').next().unwrap_or_default();
      self.te_chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
    } else if !self.te {
      // Values hyper refuses (400, then it closes) leave the length as it
      // was: nothing after them is read.
      for n in value.split(|b| *b == b',') {
        if let Some(n) = digits(n.trim_ascii()) {
          self.content_length.get_or_insert(n);
        }
      }
    }
    true
  }
}

fn digits(s: &[u8]) -> Option<u64> {
  if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
    return None;
  }
  s.iter()
    .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
  use super::*;

  /// Feeds `data` whole and in every two-way split; the verdicts agree
  /// and the refusal (as an index into `data`) is returned.
  fn verdict(data: &[u8]) -> Option<usize> {
    let whole = {
      let mut s = StrictLines::new();
      match s.feed(data) {
        Feed::Refuse(i) => Some(i),
        _ => None,
      }
    };
    for cut in 0..=data.len() {
      let mut s = StrictLines::new();
      let got = match s.feed(&data[..cut]) {
        Feed::Refuse(i) => Some(i),
        Feed::Other => None,
        Feed::Go => match s.feed(&data[cut..]) {
          Feed::Refuse(i) => Some(cut + i),
          _ => None,
        },
      };
      assert_eq!(got, whole, "split at {cut} of {:?}", String::from_utf8_lossy(data));
    }
    whole
  }

  fn at(data: &str, needle: &str) -> Option<usize> {
    Some(data.find(needle).unwrap() + needle.len() - 1)
  }

  #[test]
  fn crlf_requests_pass() {
    for ok in [
      "GET / HTTP/1.1\r\nhost: a\r\n\r\n",
      "\r\nGET / HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n\r\n",
      // Bodies hold any bytes.
      "POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\na\nb\n\nGET / HTTP/1.1\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length:  3 , 3\r\n\r\n\n\n\nGET / HTTP/1.1\r\n\r\n",
      "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\n\n\n\n\r\n0\r\nt: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\ncontent-length: 2\r\n\r\nA\r\n0123456789\n\n\n\n\n\r\n0\r\n\r\n",
    ] {
      assert_eq!(verdict(ok.as_bytes()), None, "{ok:?}");
    }
  }

  #[test]
  fn bare_lf_in_a_head_or_trailer_is_found() {
    for (bad, needle) in [
      ("GET / HTTP/1.1\nhost: a\r\n\r\n", "1.1\n"),
      ("GET / HTTP/1.1\r\nhost: a\n\r\n", "a\n"),
      ("GET / HTTP/1.1\r\nhost: a\r\n\n", "\r\n\n"),
      ("\nGET / HTTP/1.1\r\n\r\n", "\n"),
      (
        "POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n\n\nGET / HTTP/1.1\nx: y\r\n\r\n",
        "1.1\n",
      ),
      (
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1\r\n\n\r\n0\r\nt: 1\n\r\n",
        "t: 1\n",
      ),
      ("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1\n", "1\n"),
    ] {
      assert_eq!(verdict(bad.as_bytes()), at(bad, needle), "{bad:?}");
    }
  }

  #[test]
  fn an_unreadable_framing_header_is_refused_at_its_end() {
    let long = format!("GET / HTTP/1.1\r\ntransfer-encoding: {:>200}\r\n\r\n", "chunked");
    assert_eq!(verdict(long.as_bytes()), Some(long.find("chunked\r\n").unwrap() + 8));
    let other = format!("GET / HTTP/1.1\r\nx-long: {}\r\n\r\n", "v".repeat(300));
    assert_eq!(verdict(other.as_bytes()), None);
  }

  #[test]
  fn http2_is_left_alone() {
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend_from_slice(b"\x00\x00\n\x04\n\n\n");
    assert_eq!(verdict(&h2), None);
    let mut s = StrictLines::new();
    assert_eq!(s.feed(&h2), Feed::Other);
    // A head that starts like the preface is HTTP/1.
    assert_eq!(verdict(b"PRI * HTTP/1.1\r\nx: y\n\r\n"), Some(20));
    assert_eq!(verdict(b"PR\n"), Some(2));
  }

  #[test]
  fn sizes_that_hyper_refuses_end_the_check() {
    let mut s = StrictLines::new();
    let big = "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffff\r\n\n\n";
    assert_eq!(s.feed(big.as_bytes()), Feed::Other);
    assert_eq!(digits(b"18446744073709551615"), None);
    assert_eq!(digits(b"1844674407370955161"), Some(1844674407370955161));
    assert_eq!(digits(b"+1"), None);
  }
}
