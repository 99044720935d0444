//! Subrequests: fetch() over HTTP and HTTPS, and the refusal of private
//! addresses unless the worker's config allows them.

use crate::support::{examples_dir, get, self_signed, Fixture, Upstream};

fn proxy_config(up: &str, allow: bool, extra: &str) -> String {
  format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n{extra}\n[[worker]]\nname = \"proxy\"\nmain = \"{}\"\nroutes = [\"p.test\"]\nallow_private_network = {allow}\n[worker.vars]\nUPSTREAM = \"{up}\"\n",
    examples_dir().join("proxy/index.js").display()
  )
}

#[tokio::test]
async fn subrequest_over_http_to_a_local_upstream() {
  let up = Upstream::start(None).await;
  let f = Fixture::new();
  let engine = f.start(&proxy_config(&format!("http://{}/", up.addr), true, ""));
  let r = get(engine.http_addr().unwrap(), "p.test", "/hello?x=1").await;
  assert_eq!(r.status, 200, "{}", r.body);
  assert_eq!(r.body, "upstream saw /hello via edge");
  assert_eq!(r.headers["x-upstream"], "yes");
  assert_eq!(r.headers["x-proxied-by"], "edge");
}

#[tokio::test]
async fn subrequest_over_https_with_a_configured_ca() {
  let (cert, _key, tls) = self_signed(&["localhost"]);
  let up = Upstream::start(Some(tls)).await;
  let f = Fixture::new();
  f.file("upstream-ca.pem", &cert);
  let engine = f.start(&proxy_config(
    &format!("https://localhost:{}/", up.addr.port()),
    true,
    "[fetch]\nca_files = [\"upstream-ca.pem\"]",
  ));
  let r = get(engine.http_addr().unwrap(), "p.test", "/secure").await;
  assert_eq!(r.status, 200, "{}", r.body);
  assert_eq!(r.body, "upstream saw /secure via edge");
}

#[tokio::test]
async fn private_addresses_are_refused_with_a_type_error() {
  let up = Upstream::start(None).await;
  let f = Fixture::new();
  for (i, target) in [
    format!("http://127.0.0.1:{}/", up.addr.port()),
    format!("http://localhost:{}/", up.addr.port()),
    "http://[::1]/".to_string(),
    "http://169.254.169.254/".to_string(),
    "http://10.1.2.3/".to_string(),
  ]
  .iter()
  .enumerate()
  {
    let engine = f.start(&proxy_config(target, false, ""));
    let r = get(engine.http_addr().unwrap(), "p.test", &format!("/probe{i}")).await;
    assert_eq!(r.status, 502, "{target}: {}", r.body);
    assert!(r.body.starts_with("TypeError:"), "{target}: {}", r.body);
    assert!(
      r.body.contains("private") || r.body.contains("fetch failed"),
      "{target}: {}",
      r.body
    );
    drop(engine);
  }
  assert!(up.seen().is_empty(), "the upstream was never reached: {:?}", up.seen());
}
