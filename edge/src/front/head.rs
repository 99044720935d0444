//! The request head, checked before routing: no line of it over
//! `server.max_header_line_kb` (the whole head is capped by hyper's buffer,
//! `server.max_header_kb`), `chunked` as the only transfer coding, no
//! `CONNECT` and no method workerd does not know (501), and `*` as a
//! target only for `OPTIONS`, which the server answers itself; and the hop
//! count that ends a loop of workers.

use bytes::Bytes;
use http::request::Parts;
use http::{header, Method, Response, StatusCode};

use crate::config::DoorLimits;
use crate::error::RequestError;
use crate::exec::body::EdgeBody;

/// A request that has come through this many workers' `fetch()` (the
/// count in [`js_api::HOP_HEADER`]) is a loop.
pub const MAX_HOPS: u32 = 16;

/// The common methods, `http`'s own: no string compare for them.
const STANDARD_METHODS: [Method; 7] = [
  Method::GET,
  Method::POST,
  Method::HEAD,
  Method::PUT,
  Method::DELETE,
  Method::OPTIONS,
  Method::PATCH,
];

/// What a checked head asks for.
pub enum Head {
  /// A request for the host's worker.
  Worker,
  /// `OPTIONS *`: the server's own answer.
  ServerOptions,
}

pub fn check(parts: &Parts, limits: &DoorLimits) -> Result<Head, RequestError> {
  let line = limits.max_header_line_bytes;
  // The request line: method, target, version.
  let target =
    parts.uri.path_and_query().map_or(0, |p| p.as_str().len()) + parts.uri.authority().map_or(0, |a| a.as_str().len());
  if parts.method.as_str().len() + target + 10 > line {
    return Err(RequestError::HeadTooLarge {
      what: "the request line",
      status: StatusCode::URI_TOO_LONG,
    });
  }
  if parts
    .headers
    .iter()
    .any(|(name, value)| name.as_str().len() + value.len() + 2 > line)
  {
    return Err(RequestError::HeadTooLarge {
      what: "a header line",
      status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    });
  }
  // RFC 9112 6.1: a transfer coding the server does not understand is
  // 501. hyper takes `gzip, chunked` as chunked and would hand the worker
  // gzip it never decodes.
  let mut codings = parts.headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
  if codings.peek().is_some() && !edge_core::head::only_chunked(codings.map(|v| v.as_bytes())) {
    return Err(RequestError::Unsupported {
      what: "a transfer coding other than chunked",
    });
  }
  if parts.method == Method::CONNECT {
    return Err(RequestError::Unsupported { what: "CONNECT" });
  }
  if !STANDARD_METHODS.contains(&parts.method) && !edge_core::head::known_method(parts.method.as_str()) {
    return Err(RequestError::Unsupported {
      what: "this request method",
    });
  }
  if parts.uri.path() == "*" && parts.uri.authority().is_none() {
    return if parts.method == Method::OPTIONS {
      Ok(Head::ServerOptions)
    } else {
      Err(RequestError::Unsupported {
        what: "the target * other than with OPTIONS",
      })
    };
  }
  Ok(Head::Worker)
}

/// The answer to `OPTIONS *` (RFC 9110 9.3.7): the methods a worker may
/// be asked with.
pub fn server_options() -> Response<EdgeBody> {
  let mut res = Response::new(EdgeBody::full(Bytes::new()));
  res.headers_mut().insert(
    header::ALLOW,
    header::HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
  );
  res
}
