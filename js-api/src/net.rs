//! Which addresses a worker's `fetch()` may reach. By default everything but
//! this node's own networks (loopback, private, link-local, unique-local,
//! CGNAT and unspecified), so that a worker cannot be used as a proxy into
//! them. deno_fetch checks the URL host and every address a name resolves to.

use std::sync::{Arc, OnceLock};

use deno_permissions::{Permissions, PermissionsContainer, PermissionsOptions, RuntimePermissionDescriptorParser};

/// Address ranges refused unless a worker opts in.
pub const PRIVATE_RANGES: &[&str] = &[
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "::/128",
  "::1/128",
  "fc00::/7",
  "fe80::/10",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetPolicy {
  /// Let the worker reach private and loopback addresses too.
  pub allow_private_network: bool,
}

type Parser = RuntimePermissionDescriptorParser<sys_traits::impls::RealSys>;

fn parser() -> Arc<Parser> {
  static P: OnceLock<Arc<Parser>> = OnceLock::new();
  P.get_or_init(|| Arc::new(RuntimePermissionDescriptorParser::new(sys_traits::impls::RealSys))).clone()
}

impl NetPolicy {
  /// The permissions deno_fetch consults for this policy.
  pub fn permissions(&self) -> PermissionsContainer {
    let parser = parser();
    let opts = PermissionsOptions {
      allow_net: Some(vec![]),
      deny_net: (!self.allow_private_network).then(|| PRIVATE_RANGES.iter().map(|s| s.to_string()).collect()),
      prompt: false,
      ..Default::default()
    };
    let perms = Permissions::from_options(&*parser, &opts).expect("static permission ranges parse");
    PermissionsContainer::new(parser, perms)
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
  fn get_or_try_init(&self) -> Result<&deno_tls::rustls::RootCertStore, deno_error::JsErrorBox> {
    Ok(&self.0)
  }
}
