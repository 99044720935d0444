//! Who the client is and how it came: the forwarded headers a worker sees
//! (`CF-Connecting-IP`, `X-Real-IP`, `X-Forwarded-For`,
//! `X-Forwarded-Proto`, as Cloudflare sets them, trusting a client's own
//! only from `server.trusted_proxies`) and `request.cf` (what the node
//! knows: its colo, the HTTP protocol, the TLS version and cipher), made
//! once per connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use edge_core::client::{client_ip, is_trusted, Cidr};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// `[server]`'s client settings, as the front door reads them.
#[derive(Clone, Debug, Default)]
pub struct ClientSettings {
  /// This node's colo (`request.cf.colo`).
  pub colo: Option<String>,
  /// Proxies whose forwarded headers are believed.
  pub trusted: Vec<Cidr>,
  /// Geo databases for `request.cf`'s geo fields.
  pub geo: Option<Arc<super::geo::Geo>>,
}

/// What TLS a connection negotiated.
#[derive(Clone, Copy, Debug)]
pub struct TlsInfo {
  pub version: &'static str,
  pub cipher: &'static str,
}

impl TlsInfo {
  pub fn of(conn: &rustls::ServerConnection) -> Self {
    let version = match conn.protocol_version() {
      Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
      Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
      _ => "",
    };
    let cipher = conn.negotiated_cipher_suite().map_or("", |s| cipher_name(s.suite()));
    Self { version, cipher }
  }
}

/// Cloudflare's (BoringSSL's) name of a cipher suite.
fn cipher_name(s: rustls::CipherSuite) -> &'static str {
  use rustls::CipherSuite as C;
  match s {
    C::TLS13_AES_128_GCM_SHA256 => "AEAD-AES128-GCM-SHA256",
    C::TLS13_AES_256_GCM_SHA384 => "AEAD-AES256-GCM-SHA384",
    C::TLS13_CHACHA20_POLY1305_SHA256 => "AEAD-CHACHA20-POLY1305-SHA256",
    C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
    C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
    C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
    C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
    C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
    C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
    _ => "",
  }
}

/// `request.cf` of a connection's requests, as JSON (the bootstrap adds
/// what differs per request).
pub fn cf_json(settings: &ClientSettings, h2: bool, tls: Option<TlsInfo>) -> Arc<str> {
  let mut cf = serde_json::Map::new();
  if let Some(colo) = &settings.colo {
    cf.insert("colo".into(), colo.clone().into());
  }
  cf.insert("httpProtocol".into(), if h2 { "HTTP/2" } else { "HTTP/1.1" }.into());
  if let Some(t) = tls {
    cf.insert("tlsVersion".into(), t.version.into());
    cf.insert("tlsCipher".into(), t.cipher.into());
  }
  cf.insert("edgeRequestKeepAliveStatus".into(), 1.into());
  Arc::from(serde_json::Value::Object(cf).to_string())
}

const CONNECTING_IP: HeaderName = HeaderName::from_static("cf-connecting-ip");
const REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// `request.cf` of a request from `client`: the connection's, with the geo
/// fields of the client's address when databases are configured.
pub fn cf_with_geo(conn_cf: &Arc<str>, client: IpAddr, settings: &ClientSettings) -> Arc<str> {
  let Some(geo) = &settings.geo else {
    return conn_cf.clone();
  };
  let mut cf: serde_json::Map<String, serde_json::Value> = serde_json::from_str(conn_cf).unwrap_or_default();
  geo.fill(client, &mut cf);
  Arc::from(serde_json::Value::Object(cf).to_string())
}

/// Sets the forwarded headers on a request from `peer`: the client's
/// address (its own claim only from a trusted proxy), the chain of
/// proxies with the peer added, and the scheme. Returns the client's
/// address.
pub fn forwarded(headers: &mut HeaderMap, peer: SocketAddr, tls: bool, settings: &ClientSettings) -> IpAddr {
  let peer_ip = canonical(peer.ip());
  let chain: Option<String> = {
    let mut all = headers.get_all(&FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok());
    all
      .next()
      .map(|first| all.fold(first.to_string(), |acc, v| acc + ", " + v))
  };
  let trusted = is_trusted(peer_ip, &settings.trusted);
  let client = client_ip(
    peer_ip,
    headers.get(&CONNECTING_IP).and_then(|v| v.to_str().ok()),
    chain.as_deref(),
    &settings.trusted,
  );
  let ip = HeaderValue::from_str(&client.to_string()).expect("an address is a header value");
  headers.insert(CONNECTING_IP, ip.clone());
  headers.insert(REAL_IP, ip);
  let chain = match chain {
    Some(c) => format!("{c}, {peer_ip}"),
    None => peer_ip.to_string(),
  };
  if let Ok(v) = HeaderValue::from_str(&chain) {
    headers.insert(FORWARDED_FOR, v);
  }
  if !(trusted && headers.contains_key(&FORWARDED_PROTO)) {
    let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
    headers.insert(FORWARDED_PROTO, proto);
  }
  client
}

/// An IPv4 address as itself, not v4-mapped.
fn canonical(ip: IpAddr) -> IpAddr {
  match ip {
    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
    ip => ip,
  }
}
