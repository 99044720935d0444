//! Response bodies the server compresses: a worker's answer that says
//! `Content-Encoding: gzip` or `br` over a body that is not encoded yet is
//! encoded on the way out, as workerd does (`encodeBody: "automatic"`, its
//! default; `"manual"` and a fetch() response passed on undecoded are sent
//! as they are), if the client accepts that coding; otherwise it is sent
//! unencoded without the header, as Cloudflare's edge does. The body is
//! compressed in pieces of at most [`PIECE`] bytes, each flushed, so that a
//! streamed body reaches the client as it comes and no piece holds the
//! thread long.

use std::io::Write;

use bytes::Bytes;
use http::HeaderMap;

/// Input compressed at once.
pub const PIECE: usize = 64 << 10;

/// A content coding the server can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
  Gzip,
  Brotli,
}

impl Coding {
  /// Its `Content-Encoding` token.
  pub fn token(self) -> &'static str {
    match self {
      Self::Gzip => "gzip",
      Self::Brotli => "br",
    }
  }

  /// Whether the request's `Accept-Encoding` takes it.
  pub fn accepted(self, accept_encoding: Option<&http::HeaderValue>) -> bool {
    edge_core::head::accepts_coding(accept_encoding.map(|v| v.as_bytes()), self.token())
  }

  /// The one coding a response's `Content-Encoding` names, if the server
  /// applies it (`gzip, br` or an unknown coding: none).
  pub fn of(headers: &HeaderMap) -> Option<Self> {
    let mut values = headers.get_all(http::header::CONTENT_ENCODING).iter();
    let v = values.next()?;
    if values.next().is_some() {
      return None;
    }
    let v = v.as_bytes().trim_ascii();
    if v.eq_ignore_ascii_case(b"gzip") {
      Some(Self::Gzip)
    } else if v.eq_ignore_ascii_case(b"br") {
      Some(Self::Brotli)
    } else {
      None
    }
  }
}

/// Says that the answer depends on `Accept-Encoding` (for caches), unless
/// `Vary` says so already.
pub fn vary_on_accept_encoding(headers: &mut HeaderMap) {
  let said = headers.get_all(http::header::VARY).iter().any(|v| {
    v.as_bytes()
      .split(|b| *b == b',')
      .any(|t| t.trim_ascii() == b"*" || t.trim_ascii().eq_ignore_ascii_case(b"accept-encoding"))
  });
  if !said {
    headers.append(http::header::VARY, http::HeaderValue::from_static("accept-encoding"));
  }
}

/// A compressor of one body.
pub enum Encoder {
  Gzip(flate2::write::GzEncoder<Vec<u8>>),
  Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl Encoder {
  pub fn new(coding: Coding) -> Self {
    match coding {
      // Level 5 and quality 5: about what a CDN uses on the fly.
      Coding::Gzip => Self::Gzip(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5))),
      Coding::Brotli => Self::Brotli(Box::new(brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22))),
    }
  }

  /// Compresses one piece (at most [`PIECE`] bytes) and flushes it: the
  /// bytes to send now.
  pub fn piece(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
    let out = match self {
      Self::Gzip(e) => {
        e.write_all(data)?;
        e.flush()?;
        e.get_mut()
      }
      Self::Brotli(e) => {
        e.write_all(data)?;
        e.flush()?;
        e.get_mut()
      }
    };
    Ok(Bytes::from(std::mem::take(out)))
  }

  /// The end of the encoded body.
  pub fn finish(self) -> std::io::Result<Bytes> {
    Ok(Bytes::from(match self {
      Self::Gzip(e) => e.finish()?,
      Self::Brotli(e) => e.into_inner(),
    }))
  }
}
