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
