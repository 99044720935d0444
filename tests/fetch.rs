//! Subrequests: fetch() over HTTP and HTTPS, the refusal of private,
//! special-use and the node's own addresses unless the worker's config
//! allows them, and the end of a loop through the front door.

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

/// An address of this node's that is not loopback (the one its route out
/// leaves from), if it has one.
fn interface_address() -> Option<std::net::IpAddr> {
  let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
  s.connect("8.8.8.8:53").ok()?;
  Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[tokio::test]
async fn special_use_and_the_nodes_own_addresses_are_refused() {
  let up = Upstream::start_on("0.0.0.0:0", None).await;
  let port = up.addr.port();
  let f = Fixture::new();
  let mut targets = vec![
    format!("http://[64:ff9b::7f00:1]:{port}/"),
    format!("http://[::127.0.0.1]:{port}/"),
    format!("http://[2002:7f00:1::1]:{port}/"),
    format!("http://198.18.0.1:{port}/"),
    format!("http://203.0.113.5:{port}/"),
    format!("http://240.0.0.1:{port}/"),
  ];
  match interface_address() {
    Some(ip) => targets.push(format!("http://{}/", std::net::SocketAddr::new(ip, port))),
    None => eprintln!("no interface address besides loopback: that case is not tried"),
  }
  for (i, target) in targets.iter().enumerate() {
    let engine = f.start(&proxy_config(target, false, ""));
    let r = get(engine.http_addr().unwrap(), "p.test", &format!("/probe{i}")).await;
    assert_eq!(r.status, 502, "{target}: {}", r.body);
    assert!(r.body.starts_with("TypeError: fetch() refused"), "{target}: {}", r.body);
    drop(engine);
  }
  assert!(up.seen().is_empty(), "the upstream was reached: {:?}", up.seen());
}

#[tokio::test]
async fn a_worker_fetching_its_own_host_ends_after_16_hops() {
  let f = Fixture::new();
  // Each hop fetches the front door again, saying edge-via: 0 itself (it
  // is overwritten), and reports its own hop count before the inner text.
  f.file(
    "loop.js",
    r#"export default { async fetch(req) {
      const port = new URL(req.url).searchParams.get("port");
      const r = await fetch(`http://127.0.0.1:${port}/?port=${port}`, { headers: { "edge-via": "0" } });
      return new Response(r.status + " " + (req.headers.get("edge-via") ?? "0") + " " + await r.text(), { status: r.status });
    } }"#,
  );
  let engine = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"loop\"\nmain = \"loop.js\"\nroutes = [\"*\"]\nallow_private_network = true\n",
  );
  let addr = engine.http_addr().unwrap();
  let r = get(addr, "loop.test", &format!("/?port={}", addr.port())).await;
  assert_eq!(r.status, 508, "{}", r.body);
  let want: String = (0..16).map(|h| format!("508 {h} ")).collect();
  assert!(r.body.starts_with(&want), "{}", r.body);
  assert!(
    r.body[want.len()..].starts_with("508 Loop Detected\nloop detected"),
    "{}",
    r.body
  );
  let metrics = engine.metrics_text();
  assert!(metrics.contains("edge_loops_refused_total 1"), "{metrics}");
}
