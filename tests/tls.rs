//! TLS: the certificate is chosen by SNI, Host must be covered by it, and
//! HTTP/2 is negotiated by ALPN.

use crate::support::{self_signed, tls_connect, Fixture, H1, H2};

/// Two hosts with their own certificates and workers, a wildcard, and no
/// default certificate.
fn two_hosts(f: &Fixture) -> (edge::Engine, String, String, String) {
  let (a_cert, a_key, _) = self_signed(&["a.test"]);
  let (b_cert, b_key, _) = self_signed(&["b.test"]);
  let (w_cert, w_key, _) = self_signed(&["*.w.test"]);
  f.file("a.pem", &a_cert).file("a.key", &a_key);
  f.file("b.pem", &b_cert).file("b.key", &b_key);
  f.file("w.pem", &w_cert).file("w.key", &w_key);
  for n in ["a", "b", "w"] {
    f.file(
      &format!("{n}.js"),
      format!("export default {{ fetch(req) {{ return new Response('{n}:' + new URL(req.url).href) }} }}"),
    );
  }
  let engine = f.start(
    r#"
[listen]
https = "127.0.0.1:0"
[[tls]]
hosts = ["a.test"]
cert = "a.pem"
key = "a.key"
[[tls]]
hosts = ["b.test"]
cert = "b.pem"
key = "b.key"
[[tls]]
hosts = ["*.w.test"]
cert = "w.pem"
key = "w.key"
[[worker]]
name = "a"
main = "a.js"
routes = ["a.test"]
[[worker]]
name = "b"
main = "b.js"
routes = ["b.test"]
[[worker]]
name = "w"
main = "w.js"
routes = ["*.w.test"]
"#,
  );
  (engine, a_cert, b_cert, w_cert)
}

/// The error of a handshake that must fail, as text.
async fn refused(addr: std::net::SocketAddr, sni: Option<&str>, trusted: &str) -> String {
  match tls_connect(addr, sni, &[trusted.to_string()], &[]).await {
    Ok(_) => panic!("the handshake for {sni:?} must fail"),
    Err(e) => e.to_string(),
  }
}

#[tokio::test]
async fn sni_picks_the_certificate_and_host_the_worker() {
  let f = Fixture::new();
  let (engine, a_cert, b_cert, w_cert) = two_hosts(&f);
  let addr = engine.https_addr().unwrap();

  let tls = tls_connect(addr, Some("a.test"), std::slice::from_ref(&a_cert), &[])
    .await
    .expect("a.test handshake");
  let r = H1::over(tls).await.get("a.test", "/x?y=1").await;
  assert_eq!((r.status, r.body.as_str()), (200, "a:https://a.test/x?y=1"));

  let tls = tls_connect(addr, Some("b.test"), std::slice::from_ref(&b_cert), &[])
    .await
    .expect("b.test handshake");
  let r = H1::over(tls).await.get("b.test", "/").await;
  assert_eq!(r.body, "b:https://b.test/");

  // b.test is not served with a.test's certificate.
  let e = refused(addr, Some("b.test"), &a_cert).await;
  assert!(e.contains("invalid peer certificate"), "{e}");

  let tls = tls_connect(addr, Some("shop.w.test"), &[w_cert], &[])
    .await
    .expect("wildcard handshake");
  let r = H1::over(tls).await.get("shop.w.test", "/").await;
  assert_eq!(r.body, "w:https://shop.w.test/");
}

#[tokio::test]
async fn unknown_server_name_fails_the_handshake_with_unrecognized_name() {
  let f = Fixture::new();
  let (engine, a_cert, ..) = two_hosts(&f);
  let addr = engine.https_addr().unwrap();
  let e = refused(addr, Some("nobody.test"), &a_cert).await;
  assert!(e.contains("UnrecognisedName"), "{e}");
  // Without SNI and without a default certificate: the same.
  let e = refused(addr, None, &a_cert).await;
  assert!(e.contains("UnrecognisedName"), "{e}");
  // And the server still serves others.
  let tls = tls_connect(addr, Some("a.test"), &[a_cert], &[])
    .await
    .expect("a.test still served");
  assert_eq!(H1::over(tls).await.get("a.test", "/").await.status, 200);
}

#[tokio::test]
async fn host_not_covered_by_the_connection_certificate_is_421() {
  let f = Fixture::new();
  let (engine, a_cert, ..) = two_hosts(&f);
  let tls = tls_connect(engine.https_addr().unwrap(), Some("a.test"), &[a_cert], &[])
    .await
    .unwrap();
  let mut c = H1::over(tls).await;
  let r = c.get("b.test", "/").await;
  assert_eq!(r.status, 421);
  assert!(r.body.contains("not covered by the TLS certificate"), "{}", r.body);
  // The connection stays usable for its own host.
  assert_eq!(c.get("a.test", "/").await.status, 200);
}

#[tokio::test]
async fn default_certificate_serves_clients_without_sni() {
  let f = Fixture::new();
  f.file(
    "h.js",
    "export default { fetch() { return new Response('default ok') } }",
  );
  let engine = f.start(
    r#"
[listen]
https = "127.0.0.1:0"
[[tls]]
hosts = ["localhost"]
self_signed = true
default = true
[[worker]]
name = "h"
main = "h.js"
routes = ["localhost"]
"#,
  );
  let pems = engine.certificates_pem();
  let tls = tls_connect(engine.https_addr().unwrap(), None, &pems, &[])
    .await
    .expect("no-SNI handshake");
  assert_eq!(H1::over(tls).await.get("localhost", "/").await.body, "default ok");
}

#[tokio::test]
async fn http2_by_alpn() {
  let f = Fixture::new();
  let (engine, a_cert, ..) = two_hosts(&f);
  let mut h2 = H2::connect(engine.https_addr().unwrap(), "a.test", &[a_cert]).await;
  let (r1, r2) = tokio::join!(async { h2.clone_handle().get("https://a.test/one").await }, async {
    h2.clone_handle().get("https://a.test/two").await
  });
  assert_eq!(r1.version, http::Version::HTTP_2);
  assert_eq!(r1.body, "a:https://a.test/one");
  assert_eq!(r2.body, "a:https://a.test/two");
  assert_eq!(h2.get("https://a.test/three").await.status, 200);
}
