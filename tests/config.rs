//! A broken config stops the start with a message naming file and field.

use crate::support::Fixture;

fn err(f: &Fixture, toml: &str) -> String {
  f.file("w.js", "export default { fetch() { return new Response('x') } }");
  f.config(toml).expect_err("config must be refused").to_string()
}

#[test]
fn missing_file_is_named() {
  let e = edge::Config::load(std::path::Path::new("/nonexistent/edge.toml"))
    .unwrap_err()
    .to_string();
  assert!(e.contains("/nonexistent/edge.toml") && e.contains("cannot read"), "{e}");
}

#[test]
fn bad_toml_names_the_file_and_line() {
  let f = Fixture::new();
  let e = err(&f, "[listen\nhttp = 1");
  assert!(e.contains("edge.toml") && e.contains("line 1"), "{e}");
}

#[test]
fn unknown_field_is_named() {
  let f = Fixture::new();
  let e = err(&f, "[listen]\nhttp = \"127.0.0.1:0\"\nhtps = \"127.0.0.1:0\"\n");
  assert!(e.contains("edge.toml") && e.contains("unknown field `htps`"), "{e}");
}

#[test]
fn duplicate_route_names_both_workers() {
  let f = Fixture::new();
  let e = err(
    &f,
    r#"
[listen]
http = "127.0.0.1:0"
[[worker]]
name = "a"
main = "w.js"
routes = ["x.test"]
[[worker]]
name = "b"
main = "w.js"
routes = ["X.test"]
"#,
  );
  assert!(
    e.contains("edge.toml") && e.contains("worker[1].routes") && e.contains("\"a\"") && e.contains("\"b\""),
    "{e}"
  );
}

#[test]
fn unreadable_certificate_is_named() {
  let f = Fixture::new();
  let e = err(
    &f,
    r#"
[listen]
https = "127.0.0.1:0"
[[tls]]
hosts = ["a.test"]
cert = "missing.pem"
key = "missing.key"
"#,
  );
  assert!(
    e.contains("edge.toml") && e.contains("tls[0].cert") && e.contains("missing.pem"),
    "{e}"
  );
}

#[test]
fn garbage_certificate_is_refused_at_start() {
  let f = Fixture::new();
  f.file("bad.pem", "not a certificate").file("bad.key", "not a key");
  let c = f
    .config(
      r#"
[listen]
https = "127.0.0.1:0"
[[tls]]
hosts = ["a.test"]
cert = "bad.pem"
key = "bad.key"
"#,
    )
    .expect("files exist, so the config parses");
  let e = edge::Engine::start(c).err().expect("start must fail").to_string();
  assert!(
    e.contains("edge.toml") && e.contains("tls[0].cert") && e.contains("no PEM certificate"),
    "{e}"
  );
}

#[test]
fn missing_worker_main_is_named() {
  let f = Fixture::new();
  let e = err(
    &f,
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"a\"\nmain = \"nope.js\"\n",
  );
  assert!(e.contains("worker[0].main") && e.contains("nope.js"), "{e}");
}

#[test]
fn the_bundled_example_config_is_valid() {
  let c = edge::Config::load(&crate::support::examples_dir().join("edge.toml"));
  assert!(c.is_ok(), "{:?}", c.err());
}

#[test]
fn a_worker_from_a_wrangler_config_names_what_it_ignores() {
  let f = crate::support::Fixture::new();
  f.file(
    "app/src/index.js",
    "export default { fetch(req, env) { return new Response(env.GREETING); } };",
  );
  f.file(
    "app/wrangler.jsonc",
    r#"{
      // comments and trailing commas, as wrangler reads them
      "name": "app", "main": "src/index.js", "compatibility_date": "2025-01-01",
      "vars": { "GREETING": "hi", "N": 3 },
      "routes": [{ "pattern": "app.example/*", "zone_name": "example" }, "*shop.example/*"],
      "kv_namespaces": [{ "binding": "CACHE", "id": "abc123", "preview_id": "x" }],
      "queues": { "producers": [{ "binding": "JOBS", "queue": "jobs" }] },
      "durable_objects": { "bindings": [] },
      "env": { "staging": { "vars": { "GREETING": "staging" } } },
    }"#,
  );
  let text = std::fs::read_to_string(f.path("app/wrangler.jsonc")).unwrap();
  let from = edge::config::wrangler::load(&f.path("app/wrangler.jsonc"), None).unwrap();
  let w = &from.worker;
  assert_eq!(w.name, "app");
  assert!(w.main.ends_with("app/src/index.js"));
  assert_eq!(w.vars["N"], "3");
  assert_eq!(w.routes, ["app.example", "shop.example", "*.shop.example"]);
  assert_eq!(w.kv[0].namespace(), "abc123");
  assert_eq!(w.queues.producers[0].queue, "jobs");
  let notes = from.notes.join("\n");
  for n in ["vars.N", "kv_namespaces[0].preview_id", "durable_objects: not provided"] {
    assert!(notes.contains(n), "{n} not in {notes}");
  }
  assert!(!notes.contains("compatibility_date"), "{notes}");
  let staging = edge::config::wrangler::load(&f.path("app/wrangler.jsonc"), Some("staging")).unwrap();
  assert_eq!(staging.worker.name, "app-staging");
  assert_eq!(staging.worker.vars["GREETING"], "staging");
  assert!(staging.worker.kv.is_empty(), "bindings are not inherited");
  assert!(text.contains("//"));
  // In edge.toml: the wrangler config fills the worker; edge.toml's routes win.
  let c = f
    .config("[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nwrangler = \"app\"\nroutes = [\"local.test\"]\n")
    .unwrap();
  assert_eq!(
    (c.workers[0].name.as_str(), c.workers[0].routes.clone()),
    ("app", vec!["local.test".to_string()])
  );
}
