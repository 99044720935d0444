//! Frames of the supervisor's link to a process: a head (text) and a body
//! (bytes), each length first. A head starts with a sequence number that
//! its answer repeats, so a reader can tell a late answer from the one it
//! waits for.
//!
//! On the wire: the head's length and the body's (4 bytes each,
//! big-endian), the head (UTF-8), the body.

use std::fmt;

/// A frame that cannot be read: the link is out of step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
  TooLarge { head: usize, body: usize },
  NotUtf8,
  BadHead(String),
}

impl fmt::Display for FrameError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Self::TooLarge { head, body } => write!(f, "a frame of {head} + {body} bytes is over the link's caps"),
      Self::NotUtf8 => f.write_str("a frame's head is not UTF-8"),
      Self::BadHead(h) => write!(f, "a frame's head is not `SEQ WORD ...`: {h:?}"),
    }
  }
}

impl std::error::Error for FrameError {}

/// The bytes of one frame.
pub fn encode(head: &str, body: &[u8]) -> Vec<u8> {
  let mut out = Vec::with_capacity(8 + head.len() + body.len());
  out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes());
  out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
  out.extend_from_slice(head.as_bytes());
  out.extend_from_slice(body);
  out
}

/// Frames out of bytes as they arrive, in any pieces.
#[derive(Debug)]
pub struct Frames {
  buf: Vec<u8>,
  max_head: usize,
  max_body: usize,
}

impl Frames {
  pub fn new(max_head: usize, max_body: usize) -> Self {
    Self {
      buf: Vec::new(),
      max_head,
      max_body,
    }
  }

  pub fn push(&mut self, bytes: &[u8]) {
    self.buf.extend_from_slice(bytes);
  }

  /// The next whole frame (head, body), if the bytes so far hold one.
  pub fn next_frame(&mut self) -> Result<Option<(String, Vec<u8>)>, FrameError> {
    if self.buf.len() < 8 {
      return Ok(None);
    }
    let len = |i: usize| u32::from_be_bytes([self.buf[i], self.buf[i + 1], self.buf[i + 2], self.buf[i + 3]]) as usize;
    let (head, body) = (len(0), len(4));
    if head > self.max_head || body > self.max_body {
      return Err(FrameError::TooLarge { head, body });
    }
    if self.buf.len() < 8 + head + body {
      return Ok(None);
    }
    let rest = self.buf.split_off(8 + head + body);
    let mut frame = std::mem::replace(&mut self.buf, rest);
    let body_bytes = frame.split_off(8 + head);
    let head = String::from_utf8(frame.split_off(8)).map_err(|_| FrameError::NotUtf8)?;
    Ok(Some((head, body_bytes)))
  }
}

/// A head `SEQ WORD REST\nCONTENT-TYPE`, taken apart: the sequence
/// number, the word (a method or a status), the rest of the first line
/// (a path, or nothing) and the content type (none if empty).
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
  pub seq: u64,
  pub word: &'a str,
  pub rest: &'a str,
  pub content_type: Option<&'a str>,
}

impl<'a> Head<'a> {
  pub fn parse(head: &'a str) -> Result<Self, FrameError> {
    let bad = || FrameError::BadHead(head.chars().take(200).collect());
    let (first, ct) = head.split_once('\n').unwrap_or((head, ""));
    let (seq, after) = first.split_once(' ').ok_or_else(bad)?;
    let seq = seq.parse().map_err(|_| bad())?;
    let (word, rest) = after.split_once(' ').unwrap_or((after, ""));
    if word.is_empty() {
      return Err(bad());
    }
    Ok(Self {
      seq,
      word,
      rest,
      content_type: (!ct.is_empty()).then_some(ct),
    })
  }

  /// The text of a head.
  pub fn format(seq: u64, word: &str, rest: &str, content_type: Option<&str>) -> String {
    let sep = if rest.is_empty() { "" } else { " " };
    format!("{seq} {word}{sep}{rest}\n{}", content_type.unwrap_or(""))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn frames_come_out_whole_from_any_pieces() {
    let mut wire = encode("1 PUT /workers/a\nmultipart/form-data; boundary=x", b"body bytes");
    wire.extend(encode("2 GET /metrics\n", b""));
    for cut in 0..=wire.len() {
      let mut f = Frames::new(1024, 1024);
      let mut got = Vec::new();
      for piece in [&wire[..cut], &wire[cut..]] {
        f.push(piece);
        while let Some(frame) = f.next_frame().unwrap() {
          got.push(frame);
        }
      }
      assert_eq!(got.len(), 2, "cut at {cut}");
      assert_eq!(got[0].1, b"body bytes");
      assert_eq!(got[1].0, "2 GET /metrics\n");
      assert!(got[1].1.is_empty());
    }
  }

  #[test]
  fn a_frame_over_the_caps_is_refused_from_its_lengths() {
    let mut f = Frames::new(16, 100);
    f.push(&encode("1 GET /", &[0u8; 101])[..8]);
    assert_eq!(f.next_frame(), Err(FrameError::TooLarge { head: 7, body: 101 }));
    let mut f = Frames::new(4, 100);
    f.push(&encode("1 GET /", b"")[..8]);
    assert!(f.next_frame().is_err());
  }

  #[test]
  fn heads_parse_and_format() {
    let h = Head::parse("7 PUT /workers/a?dry_run\ntext/plain").unwrap();
    assert_eq!(
      h,
      Head {
        seq: 7,
        word: "PUT",
        rest: "/workers/a?dry_run",
        content_type: Some("text/plain")
      }
    );
    let s = Head::format(8, "200", "", Some("application/json"));
    assert_eq!(s, "8 200\napplication/json");
    let h = Head::parse(&s).unwrap();
    assert_eq!(
      (h.seq, h.word, h.rest, h.content_type),
      (8, "200", "", Some("application/json"))
    );
    assert_eq!(Head::parse("9 204\n").unwrap().content_type, None);
    for bad in ["", "x GET /", "1", "1 ", "GET /"] {
      assert!(Head::parse(bad).is_err(), "{bad:?}");
    }
    let mut raw = encode("ab", b"");
    raw[8] = 0xff;
    let mut g = Frames::new(16, 16);
    g.push(&raw);
    assert_eq!(g.next_frame(), Err(FrameError::NotUtf8));
  }
}
