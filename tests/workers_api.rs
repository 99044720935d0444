//! What a worker sees: module and service-worker syntax, env, ctx.waitUntil,
//! imports, console, the globals, and errors that leave the server serving.

use std::time::Duration;

use crate::support::{examples_dir, get, logs, Fixture, Upstream, H1};

fn one_worker(f: &Fixture, name: &str, main: &str, extra: &str) -> edge::Engine {
  f.start(&format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"{name}\"\nmain = \"{main}\"\nroutes = [\"{name}.test\"]\n{extra}"
  ))
}

#[tokio::test]
async fn throwing_worker_gets_500_without_stack_and_server_keeps_serving() {
  let f = Fixture::new();
  let src = std::fs::read_to_string(examples_dir().join("throws/index.js")).unwrap();
  f.file("throws.js", src);
  let engine = one_worker(&f, "throws", "throws.js", "");
  let a = engine.http_addr().unwrap();
  let mut c = H1::connect(a).await;

  let r = c.get("throws.test", "/sync").await;
  assert_eq!(r.status, 500);
  assert!(r.body.contains("threw an exception: Error: boom (sync)"), "{}", r.body);
  assert!(!r.body.contains("at Object.fetch"), "no stack for clients: {}", r.body);

  let r = c.get("throws.test", "/async").await;
  assert_eq!(r.status, 500);
  assert!(r.body.contains("TypeError: boom (async)"), "{}", r.body);

  let r = c.get("throws.test", "/never").await;
  assert_eq!(r.status, 500);
  assert!(r.body.contains("can never settle"), "{}", r.body);

  let r = c.get("throws.test", "/not-a-response").await;
  assert_eq!(r.status, 500);
  assert!(r.body.contains("did not return a Response"), "{}", r.body);

  assert_eq!(c.get("throws.test", "/fine").await.body, "still serving\n");
  // The stack went to the log.
  assert!(logs().contains("at Object.fetch"), "stack trace is logged");
}

// A worker of the config file that cannot start stops the node's start,
// naming the worker, its file and where it failed (as a deploy is refused).
#[test]
fn a_config_worker_that_does_not_start_stops_the_start() {
  let f = Fixture::new();
  f.file("good.js", "export default { fetch() { return new Response('good') } }");
  let toml = "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"bad\"\nmain = \"bad.js\"\nroutes = [\"bad.test\"]\n[[worker]]\nname = \"good\"\nmain = \"good.js\"\nroutes = [\"good.test\"]\n";
  let start = |source: &str| {
    f.file("bad.js", source);
    let config = f.config(toml).unwrap();
    match edge::Engine::start(config) {
      Ok(_) => panic!("started with {source:?}"),
      Err(e) => e.to_string(),
    }
  };
  let threw = start("const x = 1;\nthrow new Error('cannot start');\nexport default {}");
  assert!(
    threw.contains("worker \"bad\"") && threw.contains("cannot start") && threw.contains("bad.js:2:"),
    "{threw}"
  );
  let syntax = start("export default { fetch( { }");
  assert!(syntax.contains("SyntaxError") && syntax.contains("bad.js"), "{syntax}");
  let builtin = start("import { Buffer } from 'node:buffer';\nexport default { fetch() { return new Response('') } }");
  assert!(
    builtin.contains("cannot import \"node:buffer\"") && builtin.contains("compatibility_flags = [\"nodejs_compat\"]"),
    "{builtin}"
  );
  let package = start("import { Hono } from 'hono';\nexport default { fetch() { return new Response('') } }");
  assert!(
    package.contains("is a package, not a file; bundle the worker"),
    "{package}"
  );
  let handler = start("export default {}");
  assert!(handler.contains("no fetch handler"), "{handler}");
}

#[tokio::test]
async fn service_worker_syntax_with_vars_as_globals() {
  let f = Fixture::new();
  f.file(
    "sw.js",
    std::fs::read_to_string(examples_dir().join("sw/index.js")).unwrap(),
  );
  let engine = one_worker(&f, "sw", "sw.js", "[worker.vars]\nGREETING = \"ahoy\"\n");
  let r = get(engine.http_addr().unwrap(), "sw.test", "/").await;
  assert_eq!(r.body, "service worker says ahoy to GET\n");
}

#[tokio::test]
async fn env_vars_reach_the_handler() {
  let f = Fixture::new();
  f.file(
    "e.js",
    "export default { fetch(req, env) { return Response.json({ env, frozen: Object.isFrozen(env) }) } }",
  );
  let engine = one_worker(&f, "e", "e.js", "[worker.vars]\nA = \"1\"\nB = \"two\"\n");
  let r = get(engine.http_addr().unwrap(), "e.test", "/").await;
  assert_eq!(r.body, r#"{"env":{"A":"1","B":"two"},"frozen":true}"#);
  assert_eq!(r.headers["content-type"], "application/json");
}

#[tokio::test]
async fn wait_until_runs_after_the_response() {
  let up = Upstream::start(None).await;
  let f = Fixture::new();
  f.file(
    "w.js",
    r#"export default {
  fetch(req, env, ctx) {
    ctx.waitUntil((async () => {
      await new Promise((r) => setTimeout(r, 20));
      await (await fetch(env.UP + "/after-response")).text();
    })());
    return new Response("sent first");
  },
};"#,
  );
  let engine = one_worker(
    &f,
    "w",
    "w.js",
    &format!(
      "allow_private_network = true\n[worker.vars]\nUP = \"http://{}\"\n",
      up.addr
    ),
  );
  let r = get(engine.http_addr().unwrap(), "w.test", "/").await;
  assert_eq!(r.body, "sent first");
  for _ in 0..100 {
    if up.seen().contains(&"/after-response".to_string()) {
      return;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
  panic!("waitUntil work never reached the upstream: {:?}", up.seen());
}

#[tokio::test]
async fn relative_js_json_and_wasm_imports() {
  let f = Fixture::new();
  let engine = f.start(&format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"imports\"\nmain = \"{}\"\nroutes = [\"i.test\"]\n",
    examples_dir().join("imports/index.js").display()
  ));
  let r = get(engine.http_addr().unwrap(), "i.test", "/").await;
  assert_eq!(r.body, r#"{"shout":"EDGE!","sum":42,"wasmIsModule":true}"#);
}

#[tokio::test]
async fn imports_outside_the_worker_folder_are_refused() {
  let f = Fixture::new();
  f.file("secret.js", "export const s = 1;");
  f.file(
    "w/main.js",
    "import { s } from '../secret.js'; export default { fetch() { return new Response(String(s)) } }",
  );
  // At start it stops the start; as a request sees it (checked later):
  let toml =
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"w\"\nmain = \"w/main.js\"\nroutes = [\"w.test\"]\n";
  let refused = edge::Engine::start(f.config(toml).unwrap())
    .err()
    .map(|e| e.to_string());
  assert!(refused.is_some_and(|e| e.contains("outside the worker's folder")));
  let engine = f.start(&toml.replace("[[worker]]", "[runtime]\ncheck_at_start = false\n[[worker]]"));
  let r = get(engine.http_addr().unwrap(), "w.test", "/").await;
  assert_eq!(r.status, 500);
  assert!(r.body.contains("outside the worker's folder"), "{}", r.body);
}

#[tokio::test]
async fn console_goes_to_the_log_with_worker_and_request_id() {
  let f = Fixture::new();
  f.file("c.js", "export default { fetch() { console.log('hello from', 'console-worker', 42); console.error(new Error('logged error')); return new Response('ok') } }");
  let engine = one_worker(&f, "consoletest", "c.js", "");
  let r = get(engine.http_addr().unwrap(), "consoletest.test", "/").await;
  assert_eq!(r.body, "ok");
  let id = r.headers["edge-request-id"].to_str().unwrap().to_string();
  // 128 bits: unique across threads, restarts and nodes.
  assert_eq!(id.len(), 32, "{id}");
  assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
  let logs = logs();
  let line = logs
    .lines()
    .find(|l| l.contains("hello from console-worker 42"))
    .unwrap_or_else(|| panic!("console.log line in the log:\n{logs}"));
  assert!(
    line.contains("worker=\"consoletest\"") && line.contains(&format!("request_id={id}")),
    "{line}"
  );
  assert!(line.contains("INFO"), "{line}");
  assert!(
    logs.lines().any(|l| l.contains("logged error") && l.contains("ERROR")),
    "console.error is an error"
  );
}

#[tokio::test]
async fn globals_persist_between_warm_requests_and_stay_per_worker() {
  let f = Fixture::new();
  let src = "let n = 0; globalThis.shared = (globalThis.shared ?? 0) + 1;\nexport default { fetch() { n++; return Response.json({ n, shared: globalThis.shared, other: typeof globalThis.otherMark }) } }";
  f.file("a.js", format!("globalThis.otherMark = 'a';\n{src}"));
  f.file("b.js", src);
  let engine = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n[[worker]]\nname = \"a\"\nmain = \"a.js\"\nroutes = [\"a.test\"]\n[[worker]]\nname = \"b\"\nmain = \"b.js\"\nroutes = [\"b.test\"]\n",
  );
  let mut c = H1::connect(engine.http_addr().unwrap()).await;
  assert_eq!(
    c.get("a.test", "/").await.body,
    r#"{"n":1,"shared":1,"other":"string"}"#
  );
  assert_eq!(
    c.get("a.test", "/").await.body,
    r#"{"n":2,"shared":1,"other":"string"}"#
  );
  assert_eq!(
    c.get("b.test", "/").await.body,
    r#"{"n":1,"shared":1,"other":"undefined"}"#
  );
  assert_eq!(
    c.get("a.test", "/").await.body,
    r#"{"n":3,"shared":1,"other":"string"}"#
  );
}

#[tokio::test]
async fn the_workers_globals_are_there_and_deno_is_not() {
  let f = Fixture::new();
  f.file(
    "g.js",
    r#"
const names = ["Request", "Response", "Headers", "fetch", "URL", "URLSearchParams", "URLPattern",
  "TextEncoder", "TextDecoder", "ReadableStream", "WritableStream", "TransformStream",
  "AbortController", "AbortSignal", "Event", "EventTarget", "DOMException", "Blob", "FormData",
  "setTimeout", "clearTimeout", "setInterval", "clearInterval", "queueMicrotask", "structuredClone",
  "atob", "btoa", "console", "crypto", "performance", "navigator", "self", "WebAssembly"];
export default {
  async fetch(request) {
    const missing = names.filter((n) => typeof globalThis[n] === "undefined");
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode("abc"));
    const hex = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 5));
    return Response.json({
      missing,
      deno: typeof Deno, bootstrap: typeof __bootstrap, process: typeof process, require: typeof require,
      hex,
      uuid: /^[0-9a-f-]{36}$/.test(crypto.randomUUID()),
      random: crypto.getRandomValues(new Uint8Array(8)).length,
      elapsed: performance.now() - t0 >= 4,
      ua: navigator.userAgent,
      self: self === globalThis,
      pattern: new URLPattern({ pathname: "/items/:id" }).exec(request.url)?.pathname.groups.id ?? null,
      clone: structuredClone({ a: [1, 2] }),
      b64: btoa("hi") + atob("aGk="),
      wasm: typeof WebAssembly.instantiate,
    });
  },
};"#,
  );
  let engine = one_worker(&f, "g", "g.js", "");
  let r = get(engine.http_addr().unwrap(), "g.test", "/items/17").await;
  let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
  assert_eq!(v["missing"], serde_json::json!([]), "{}", r.body);
  assert_eq!(v["deno"], "undefined");
  assert_eq!(v["bootstrap"], "undefined");
  assert_eq!(v["process"], "undefined");
  assert_eq!(v["require"], "undefined");
  assert_eq!(
    v["hex"],
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
  );
  assert_eq!(v["uuid"], true);
  assert_eq!(v["random"], 8);
  assert_eq!(v["elapsed"], true);
  assert_eq!(v["ua"], "edge-worker");
  assert_eq!(v["self"], true);
  assert_eq!(v["pattern"], "17");
  assert_eq!(v["clone"], serde_json::json!({ "a": [1, 2] }));
  assert_eq!(v["b64"], "aGk=hi");
  assert_eq!(v["wasm"], "function");
}

#[tokio::test]
async fn request_headers_method_and_json_body_reach_the_worker() {
  let f = Fixture::new();
  f.file(
    "api.js",
    std::fs::read_to_string(examples_dir().join("api/index.js")).unwrap(),
  );
  let engine = one_worker(&f, "api", "api.js", "");
  let mut c = H1::connect(engine.http_addr().unwrap()).await;
  let req = http::Request::post("/")
    .header("host", "api.test")
    .header("content-type", "application/json")
    .body(crate::support::body(
      r#"{"id":7,"items":[{"name":"a","price":2,"qty":3},{"name":"b","price":1}]}"#,
    ))
    .unwrap();
  let r = crate::support::collect(c.send(req).await).await;
  assert_eq!(r.body, r#"{"id":7,"count":2,"total":7,"names":["A","B"]}"#);
  assert_eq!(c.get("api.test", "/").await.status, 405);
}

#[tokio::test]
async fn long_json_texts_parse_in_parts_exactly_as_v8_parses_them() {
  // workers/json checks values, key order, __proto__, duplicates, nesting,
  // error messages, revivers and Request/Response.json() on texts long
  // enough to be parsed in parts; it answers the checks that failed.
  let f = Fixture::new();
  f.file(
    "json.js",
    std::fs::read_to_string(examples_dir().join("json/index.js")).unwrap(),
  );
  let engine = one_worker(&f, "json", "json.js", "[worker.limits]\ncpu_ms = 30000");
  let r = get(engine.http_addr().unwrap(), "json.test", "/").await;
  assert_eq!((r.status, r.body.as_str()), (200, r#"{"failed":[]}"#));
}
