//! Which addresses a worker's `fetch()` may reach. By default everything but
//! this node's own networks (loopback, private, link-local, unique-local,
//! CGNAT, unspecified), so that a worker cannot be used as a proxy into
//! them: IP-literal URLs are checked before the request is built, and host
//! names are checked on every address they resolve to, which are then the
//! only addresses connected to (no second lookup to race with).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use deno_error::JsErrorBox;
use deno_fetch::dns::{Resolve, Resolving};
use deno_permissions::{PermissionsContainer, RuntimePermissionDescriptorParser};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetPolicy {
  /// Let the worker reach private and loopback addresses too.
  pub allow_private_network: bool,
}

pub use edge_core::addr::is_private;

const REFUSED: &str = "fetch() refused: this worker may not reach private, loopback or link-local addresses";

/// deno_fetch's hook on every outgoing request: refuses IP-literal hosts in
/// private ranges (names are handled by [`PublicOnlyResolver`]).
fn refuse_private_literal(req: &mut http::Request<deno_fetch::ReqBody>) -> Result<(), JsErrorBox> {
  let host = req.uri().host().unwrap_or("");
  let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
  match bare.parse::<IpAddr>() {
    Ok(ip) if is_private(ip) => Err(JsErrorBox::type_error(format!("{REFUSED} ({ip})"))),
    _ => Ok(()),
  }
}

/// Resolves names with the system resolver and drops private addresses;
/// a name with only private addresses fails to resolve.
#[derive(Debug)]
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
  fn resolve(&self, name: hyper_util::client::legacy::connect::dns::Name) -> Resolving {
    Box::pin(async move {
      let host = name.as_str().to_string();
      let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
      let public: Vec<SocketAddr> = addrs.iter().copied().filter(|a| !is_private(a.ip())).collect();
      if public.is_empty() && !addrs.is_empty() {
        return Err(std::io::Error::new(
          std::io::ErrorKind::PermissionDenied,
          format!("{REFUSED} ({host} resolves to {})", addrs[0].ip()),
        ));
      }
      Ok(public.into_iter())
    })
  }
}

impl NetPolicy {
  /// deno_fetch options enforcing this policy, on top of `base`.
  pub fn fetch_options(&self, base: &crate::runtime::IsolateConfig) -> deno_fetch::Options {
    let mut o = deno_fetch::Options {
      user_agent: base.user_agent.clone(),
      root_cert_store_provider: base.root_certs.clone(),
      ..Default::default()
    };
    if !self.allow_private_network {
      o.request_builder_hook = Some(refuse_private_literal);
      o.resolver = deno_fetch::dns::Resolver::custom(Arc::new(PublicOnlyResolver));
    }
    o
  }

  /// deno_fetch reads permissions from OpState; the net policy above does
  /// the checking, so these allow everything (with no prompts).
  pub fn permissions(&self) -> PermissionsContainer {
    type Parser = RuntimePermissionDescriptorParser<sys_traits::impls::RealSys>;
    static P: OnceLock<Arc<Parser>> = OnceLock::new();
    let parser = P.get_or_init(|| Arc::new(RuntimePermissionDescriptorParser::new(sys_traits::impls::RealSys)));
    PermissionsContainer::allow_all(parser.clone())
  }
}

/// Root certificates for subrequests over HTTPS: the Mozilla roots plus any
/// extra PEM certificates (a private CA, or a test's).
pub struct RootCerts(deno_tls::rustls::RootCertStore);

impl RootCerts {
  pub fn with_extra_pem(pems: &[Vec<u8>]) -> Result<Self, String> {
    let mut store = deno_tls::create_default_root_cert_store();
    for pem in pems {
      let mut reader = std::io::BufReader::new(&pem[..]);
      for cert in deno_tls::rustls_pemfile::certs(&mut reader) {
        let cert = cert.map_err(|e| format!("bad PEM certificate: {e}"))?;
        store.add(cert).map_err(|e| format!("unusable CA certificate: {e}"))?;
      }
    }
    Ok(Self(store))
  }
}

impl deno_tls::RootCertStoreProvider for RootCerts {
  fn get_or_try_init(&self) -> Result<&deno_tls::rustls::RootCertStore, JsErrorBox> {
    Ok(&self.0)
  }
}
