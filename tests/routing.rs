//! Routing by host: exact before wildcard, longest wildcard first, port
//! ignored, unknown hosts get 404.

use crate::support::{get, Fixture};

fn worker(name: &str) -> String {
  format!("export default {{ fetch(req) {{ return new Response('{name} ' + new URL(req.url).host) }} }}")
}

#[tokio::test]
async fn exact_then_longest_wildcard_then_catch_all() {
  let f = Fixture::new();
  for n in ["exact", "wide", "narrow", "fallback"] {
    f.file(&format!("{n}.js"), worker(n));
  }
  let engine = f.start(
    r#"
[listen]
http = "127.0.0.1:0"
[[worker]]
name = "exact"
main = "exact.js"
routes = ["api.shop.test"]
[[worker]]
name = "wide"
main = "wide.js"
routes = ["*.test"]
[[worker]]
name = "narrow"
main = "narrow.js"
routes = ["*.shop.test"]
[[worker]]
name = "fallback"
main = "fallback.js"
routes = ["*"]
"#,
  );
  let a = engine.http_addr().unwrap();
  assert_eq!(get(a, "api.shop.test", "/").await.body, "exact api.shop.test");
  assert_eq!(get(a, "API.Shop.test:8080", "/").await.body, "exact api.shop.test:8080");
  assert_eq!(get(a, "cart.shop.test", "/").await.body, "narrow cart.shop.test");
  assert_eq!(get(a, "x.cart.shop.test", "/").await.body, "narrow x.cart.shop.test");
  assert_eq!(get(a, "blog.test", "/").await.body, "wide blog.test");
  assert_eq!(get(a, "other.example", "/").await.body, "fallback other.example");
}

#[tokio::test]
async fn unknown_host_is_404_with_an_explanation() {
  let f = Fixture::new();
  f.file("a.js", worker("a"));
  let engine =
    f.start("[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"a\"\nmain = \"a.js\"\nroutes = [\"a.test\"]\n");
  let r = get(engine.http_addr().unwrap(), "nobody.test:9999", "/").await;
  assert_eq!(r.status, 404);
  assert!(
    r.body.contains("no worker serves the host \"nobody.test\""),
    "{}",
    r.body
  );
  // The server keeps serving.
  assert_eq!(get(engine.http_addr().unwrap(), "a.test", "/").await.status, 200);
}
