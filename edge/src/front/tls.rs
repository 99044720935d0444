//! Step 2 of a request: TLS. The certificate is chosen by SNI (exact name,
//! then a one-label wildcard, then the default entry); no match and no
//! default ends the handshake with an `unrecognized_name` alert.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::config::Config;
use crate::error::StartError;

/// One certificate and the names it covers.
pub struct CertEntry {
  pub hosts: Vec<String>,
  pub server_config: Arc<ServerConfig>,
  /// PEM of the certificate (for clients of a self-signed one in tests).
  pub cert_pem: String,
}

impl CertEntry {
  /// Whether a request for `host` may use a connection with this
  /// certificate (the rule clients apply: exact, or `*.` over one label).
  pub fn covers(&self, host: &str) -> bool {
    self.hosts.iter().any(|h| edge_core::host::cert_name_matches(h, host))
  }
}

/// All certificates of the server, indexed for SNI.
pub struct CertStore {
  entries: Vec<Arc<CertEntry>>,
  exact: HashMap<String, usize>,
  wildcard: HashMap<String, usize>,
  default: Option<usize>,
}

impl CertStore {
  pub fn from_config(config: &Config) -> Result<Self, StartError> {
    let mut store = Self {
      entries: Vec::new(),
      exact: HashMap::new(),
      wildcard: HashMap::new(),
      default: None,
    };
    for (i, t) in config.tls.iter().enumerate() {
      let err = |field: &str, message: String| StartError::Tls {
        file: config.origin.clone(),
        field: format!("tls[{i}].{field}"),
        message,
      };
      let (certs, key, cert_pem) = if t.self_signed {
        let ck = rcgen::generate_simple_self_signed(t.hosts.clone())
          .map_err(|e| err("self_signed", format!("cannot generate a certificate: {e}")))?;
        let pem = ck.cert.pem();
        let key =
          PrivateKeyDer::try_from(ck.key_pair.serialize_der()).map_err(|e| err("self_signed", e.to_string()))?;
        (vec![ck.cert.der().clone()], key, pem)
      } else {
        let cert_path = config.resolve(t.cert.as_deref().unwrap_or(std::path::Path::new("")));
        let key_path = config.resolve(t.key.as_deref().unwrap_or(std::path::Path::new("")));
        let cert_pem = std::fs::read_to_string(&cert_path)
          .map_err(|e| err("cert", format!("cannot read {}: {e}", cert_path.display())))?;
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
          .collect::<Result<_, _>>()
          .map_err(|e| err("cert", format!("{}: {e}", cert_path.display())))?;
        if certs.is_empty() {
          return Err(err(
            "cert",
            format!("{}: no PEM certificate in it", cert_path.display()),
          ));
        }
        let key_pem =
          std::fs::read(&key_path).map_err(|e| err("key", format!("cannot read {}: {e}", key_path.display())))?;
        let key = rustls_pemfile::private_key(&mut &key_pem[..])
          .map_err(|e| err("key", format!("{}: {e}", key_path.display())))?
          .ok_or_else(|| err("key", format!("{}: no PEM private key in it", key_path.display())))?;
        (certs, key, cert_pem)
      };
      let mut sc = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err("hosts", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err("key", format!("the key does not fit the certificate: {e}")))?;
      sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
      let idx = store.entries.len();
      for h in &t.hosts {
        let h = h.to_ascii_lowercase();
        match h.strip_prefix("*.") {
          Some(suffix) => store.wildcard.entry(suffix.to_string()).or_insert(idx),
          None => store.exact.entry(h.clone()).or_insert(idx),
        };
      }
      if t.default {
        store.default = Some(idx);
      }
      store.entries.push(Arc::new(CertEntry {
        hosts: t.hosts.clone(),
        server_config: Arc::new(sc),
        cert_pem,
      }));
    }
    Ok(store)
  }

  /// The certificate for a ClientHello's server name (or its absence).
  pub fn select(&self, sni: Option<&str>) -> Option<&Arc<CertEntry>> {
    let by_name = sni.and_then(|name| {
      let name = name.to_ascii_lowercase();
      self
        .exact
        .get(&name)
        .or_else(|| name.split_once('.').and_then(|(_, rest)| self.wildcard.get(rest)))
        .copied()
    });
    by_name.or(self.default).map(|i| &self.entries[i])
  }

  pub fn entries(&self) -> &[Arc<CertEntry>] {
    &self.entries
  }
}

/// Why a TLS connection did not get to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
  #[error("no certificate for server name {0:?}")]
  UnknownName(Option<String>),
  #[error("TLS handshake failed: {0}")]
  Tls(std::io::Error),
}

impl HandshakeError {
  /// The metrics' reason label.
  pub fn failure(&self) -> crate::obs::stats::HandshakeFailure {
    match self {
      Self::UnknownName(_) => crate::obs::stats::HandshakeFailure::UnknownName,
      Self::Tls(_) => crate::obs::stats::HandshakeFailure::Protocol,
    }
  }
}

/// A finished handshake.
pub struct Accepted {
  pub stream: TlsStream<TcpStream>,
  pub cert: Arc<CertEntry>,
  pub h2: bool,
  pub tls: super::client::TlsInfo,
}

/// Reads the ClientHello, picks the certificate, completes the handshake.
/// `on_hello` sees the server name first (to start warming its worker while
/// the handshake completes).
pub async fn accept(
  tcp: TcpStream,
  certs: &CertStore,
  on_hello: impl FnOnce(Option<&str>),
) -> Result<Accepted, HandshakeError> {
  let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
  let start = acceptor.await.map_err(HandshakeError::Tls)?;
  let sni = start.client_hello().server_name().map(str::to_string);
  on_hello(sni.as_deref());
  let Some(cert) = certs.select(sni.as_deref()).cloned() else {
    // TLS alert record: fatal (2), unrecognized_name (112).
    let mut io = start.io;
    let _ = io.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]).await;
    let _ = io.shutdown().await;
    return Err(HandshakeError::UnknownName(sni));
  };
  let stream = start
    .into_stream(cert.server_config.clone())
    .await
    .map_err(HandshakeError::Tls)?;
  let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
  let tls = super::client::TlsInfo::of(stream.get_ref().1);
  Ok(Accepted { stream, cert, h2, tls })
}
