//! Which addresses a worker's `fetch()` may reach. By default everything but
//! this node's own networks and addresses (loopback, private, link-local,
//! unique-local, CGNAT, unspecified, the node's interfaces) and the
//! special-use ranges ([`edge_core::addr`]), so that a worker cannot be
//! used as a proxy into them: IP-literal URLs are checked before the
//! request is built (each redirect too), and host names are checked on
//! every address they resolve to, which are then the only addresses
//! connected to (no second lookup to race with).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use deno_error::JsErrorBox;
use deno_fetch::dns::{Resolve, Resolving};
use deno_permissions::{PermissionsContainer, RuntimePermissionDescriptorParser};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetPolicy {
  /// Let the worker reach private and loopback addresses too.
  pub allow_private_network: bool,
}

pub use edge_core::addr::is_private;

const REFUSED: &str =
  "fetch() refused: this worker may not reach private, loopback, link-local or special-use addresses, nor this node's own";

/// How long the node's interface addresses are taken as known.
const OWN_FOR: Duration = Duration::from_secs(5);

/// The addresses of this node's interfaces, looked up again every few
/// seconds (interfaces come and go).
fn own_addresses() -> Arc<Vec<IpAddr>> {
  static OWN: Mutex<Option<(Instant, Arc<Vec<IpAddr>>)>> = Mutex::new(None);
  let mut own = OWN.lock().unwrap_or_else(|e| e.into_inner());
  match &*own {
    Some((at, addrs)) if at.elapsed() < OWN_FOR => addrs.clone(),
    _ => {
      let addrs = Arc::new(interface_addresses());
      *own = Some((Instant::now(), addrs.clone()));
      addrs
    }
  }
}

/// Every IPv4 and IPv6 address on this node's interfaces (none if the
/// system will not say).
fn interface_addresses() -> Vec<IpAddr> {
  let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
  // SAFETY: getifaddrs writes a list it allocates to `head`.
  if unsafe { libc::getifaddrs(&mut head) } != 0 {
    return Vec::new();
  }
  let mut out = Vec::new();
  let mut at = head;
  while !at.is_null() {
    // SAFETY: `at` is a node of the list getifaddrs made, not yet freed.
    let ifa = unsafe { &*at };
    if !ifa.ifa_addr.is_null() {
      // SAFETY: a non-null ifa_addr points to a sockaddr whose family says
      // which sockaddr_* it is.
      let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
      if family == libc::AF_INET {
        // SAFETY: an AF_INET address is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        out.push(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()));
      } else if family == libc::AF_INET6 {
        // SAFETY: an AF_INET6 address is a sockaddr_in6.
        let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
      }
    }
    at = ifa.ifa_next;
  }
  // SAFETY: `head` came from getifaddrs and is freed once.
  unsafe { libc::freeifaddrs(head) };
  out
}

/// Whether a worker without `allow_private_network` may not reach `ip`.
pub fn is_refused(ip: IpAddr) -> bool {
  edge_core::addr::is_refused(ip, &own_addresses())
}

/// deno_fetch's hook on every outgoing request: refuses IP-literal hosts in
/// private ranges (names are handled by [`PublicOnlyResolver`]).
/// Set by the bootstrap's `fetch()` on a subrequest whose worker set no
/// `Accept-Language`: the one deno_fetch adds (`*`, which some servers
/// refuse; workerd adds none) is taken out again here, with this header.
pub const DEFAULTED_HEADER: &str = "edge-fetch-defaulted";

/// Takes out the headers deno_fetch added that the worker did not set.
fn drop_defaulted(req: &mut http::Request<deno_fetch::ReqBody>) {
  const NAME: http::HeaderName = http::HeaderName::from_static(DEFAULTED_HEADER);
  let Some(names) = req.headers_mut().remove(NAME) else {
    return;
  };
  for name in names.as_bytes().split(|b| *b == b',') {
    if let Ok(name) = http::HeaderName::from_bytes(name.trim_ascii()) {
      req.headers_mut().remove(name);
    }
  }
}

fn public_only(req: &mut http::Request<deno_fetch::ReqBody>) -> Result<(), JsErrorBox> {
  drop_defaulted(req);
  refuse_private_literal(req)
}

fn any_address(req: &mut http::Request<deno_fetch::ReqBody>) -> Result<(), JsErrorBox> {
  drop_defaulted(req);
  Ok(())
}

fn refuse_private_literal(req: &mut http::Request<deno_fetch::ReqBody>) -> Result<(), JsErrorBox> {
  let host = req.uri().host().unwrap_or("");
  let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
  match bare.parse::<IpAddr>() {
    Ok(ip) if is_refused(ip) => Err(JsErrorBox::type_error(format!("{REFUSED} ({ip})"))),
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
      let own = own_addresses();
      let public: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| !edge_core::addr::is_refused(a.ip(), &own))
        .collect();
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
    o.request_builder_hook = Some(any_address);
    if !self.allow_private_network {
      o.request_builder_hook = Some(public_only);
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
