//! The `cloudflare:workers` module: a `WorkerEntrypoint` class as the
//! default export (a fresh instance per request, `this.env`, `this.ctx`),
//! `env` and `waitUntil` imported, named entrypoints reached by service
//! bindings, and RPC calls over them (values structured-cloned both ways,
//! errors rethrown in the caller, the chain's call budget kept).

use crate::support::{Fixture, H1};

/// The callee: a class default export, a named entrypoint and RPC methods.
const API: &str = r#"
import { WorkerEntrypoint, DurableObject, RpcTarget, env, waitUntil } from "cloudflare:workers";

// Read at the top level, before any request.
const greeting = `hello from ${env.WHO}`;
let instances = 0;

export default class Api extends WorkerEntrypoint {
  constructor(ctx, env) {
    super(ctx, env);
    this.n = ++instances;
  }
  async fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === "/later") {
      // The module's waitUntil: the response goes first, the KV write
      // after, within the request.
      waitUntil(new Promise((r) => setTimeout(r, 50)).then(() => this.env.KV.put("later", "done")));
      return new Response("scheduled");
    }
    if (url.pathname === "/later/read") return new Response(String(await this.env.KV.get("later")));
    return new Response(`${greeting}; instance ${this.n > 0}; ctx ${typeof this.ctx.waitUntil}; same env ${this.env === env}; ` +
      `classes ${typeof DurableObject} ${typeof RpcTarget}`);
  }
  add(a, b) { return a + b; }
  async shape(value) {
    await new Promise((r) => setTimeout(r, 5));
    return { kind: value.constructor.name, size: value.size, when: new Date(0), big: 2n ** 70n, bytes: new Uint8Array([1, 2]) };
  }
  fail(kind) {
    if (kind === "range") throw new RangeError("out of range: " + this.env.WHO);
    throw "a string";
  }
  fn() { return () => 1; }
  async deep(n) { return n === 0 ? 0 : 1 + await this.env.SELF.deep(n - 1); }
}

export class Admin extends WorkerEntrypoint {
  fetch(req) { return new Response(`admin of ${this.env.WHO} at ${new URL(req.url).pathname}`); }
  whoami() { return "admin"; }
}

export class NotAnEntrypoint { fetch() { return new Response("no"); } }
"#;

/// A plain object default export: fetch works, RPC is refused.
const PLAIN: &str = r#"
export default { fetch() { return new Response("plain"); }, add(a, b) { return a + b; } };
"#;

/// The caller: one route per property.
const FRONT: &str = r#"
export default { async fetch(req, env) {
  const url = new URL(req.url);
  const out = [];
  const attempt = async (f) => {
    try { return `ok ${JSON.stringify(await f(), (k, v) => typeof v === "bigint" ? `${v}n` : v)}`; }
    catch (e) { return typeof e === "object" ? `${e.name}: ${e.message}` : `${typeof e}: ${e}`; }
  };
  if (url.pathname === "/rpc") {
    out.push(await attempt(() => env.API.add(2, 3)));
    out.push(await attempt(async () => {
      const r = await env.API.shape(new Map([[1, 2], [3, 4]]));
      return [r.kind, r.size, r.when instanceof Date, r.big, r.bytes instanceof Uint8Array, r.bytes.length];
    }));
    out.push(await attempt(() => env.API.fail("range")));
    out.push(await attempt(() => env.API.fail("string")));
    out.push(await attempt(() => env.API.nope()));
    out.push(await attempt(() => env.API.constructor.name));
    out.push(await attempt(() => env.API.fn()));
    out.push(await attempt(() => env.API.add(() => 1)));
    out.push(await attempt(() => env.ADMIN.whoami()));
    out.push(await attempt(() => env.PLAIN.add(1, 2)));
    out.push(await attempt(() => env.GHOST.whoami()));
    out.push(`thenable ${typeof env.API.then}`);
    return new Response(out.join("\n"));
  }
  if (url.pathname === "/deep") return new Response(await attempt(() => env.API.deep(Number(url.searchParams.get("n")))));
  if (url.pathname === "/admin") return env.ADMIN.fetch("https://api.internal/x/y");
  if (url.pathname === "/ghost") return env.GHOST.fetch("https://api.internal/");
  return new Response("front");
} };
"#;

const CONFIG: &str = r#"
[listen]
http = "127.0.0.1:0"
[limits]
cpu_ms = 30000
wall_ms = 20000
[[worker]]
name = "api"
main = "api.js"
routes = ["api.test"]
vars = { WHO = "api" }
kv = [{ binding = "KV" }]
services = [{ binding = "SELF", service = "api" }]
[[worker]]
name = "plain"
main = "plain.js"
[[worker]]
name = "front"
main = "front.js"
routes = ["front.test"]
services = [
  { binding = "API", service = "api" },
  { binding = "ADMIN", service = "api", entrypoint = "Admin" },
  { binding = "PLAIN", service = "plain" },
  { binding = "GHOST", service = "api", entrypoint = "NotAnEntrypoint" },
]
"#;

fn fixture() -> Fixture {
  let f = Fixture::new();
  f.file("api.js", API).file("plain.js", PLAIN).file("front.js", FRONT);
  f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_entrypoint_class_serves_with_env_and_wait_until_imported() {
  let f = fixture();
  let e = f.start(CONFIG);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("api.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert_eq!(
    got.body,
    "hello from api; instance true; ctx function; same env true; classes function function"
  );
  assert_eq!(c.get("api.test", "/later").await.body, "scheduled");
  let mut read = String::new();
  for _ in 0..50 {
    read = c.get("api.test", "/later/read").await.body;
    if read == "done" {
      break;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
  }
  assert_eq!(read, "done", "the waitUntil work ran after the response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_bindings_reach_named_entrypoints_and_call_methods_over_rpc() {
  let f = fixture();
  let e = f.start(CONFIG);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let admin = c.get("front.test", "/admin").await;
  assert_eq!(admin.status, 200, "{}", admin.body);
  assert_eq!(admin.body, "admin of api at /x/y");
  let ghost = c.get("front.test", "/ghost").await;
  assert_eq!(ghost.status, 500);
  let got = c.get("front.test", "/rpc").await;
  assert_eq!(got.status, 200, "{}", got.body);
  let lines: Vec<&str> = got.body.lines().collect();
  assert_eq!(lines[0], "ok 5");
  assert_eq!(lines[1], r#"ok ["Map",2,true,"1180591620717411303424n",true,2]"#);
  assert_eq!(lines[2], "RangeError: out of range: api");
  assert_eq!(lines[3], "string: a string");
  assert_eq!(
    lines[4],
    r#"TypeError: The RPC receiver does not implement the method "nope"."#
  );
  // Members of the binding itself are not RPC calls.
  assert_eq!(lines[5], r#"ok "Fetcher""#);
  assert!(
    lines[6].starts_with("TypeError: The value returned by fn() cannot be sent over RPC"),
    "{}",
    lines[6]
  );
  assert!(
    lines[7].starts_with("DataCloneError: RPC add(): an argument cannot be sent"),
    "{}",
    lines[7]
  );
  assert_eq!(lines[8], r#"ok "admin""#);
  assert!(
    lines[9].contains("not a class that extends WorkerEntrypoint"),
    "{}",
    lines[9]
  );
  assert!(
    lines[10].contains(r#"no entrypoint named "NotAnEntrypoint""#),
    "{}",
    lines[10]
  );
  assert_eq!(lines[11], "thenable undefined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_recursion_stops_at_the_chains_call_budget() {
  let f = fixture();
  let e = f.start(CONFIG);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  assert_eq!(c.get("front.test", "/deep?n=5").await.body, "ok 5");
  // Each level is one more hop of the chain: it ends at the loop limit,
  // the error passed back up through every level, not with a hung node.
  let got = c.get("front.test", "/deep?n=1000").await;
  assert!(
    got.body.starts_with("Error: RPC deep() failed: 508 Loop Detected"),
    "{}",
    got.body
  );
  assert_eq!(c.get("api.test", "/").await.status, 200);
}

#[test]
fn entrypoints_are_checked_in_the_config_and_at_start() {
  let f = fixture();
  f.file(
    "class.js",
    "export default class { fetch() { return new Response('x'); } }",
  );
  f.file(
    "sockets.js",
    "import { connect } from 'cloudflare:sockets';\nexport default { fetch() { return new Response('x'); } };",
  );
  let config = |main: &str, services: &str| {
    format!(
      "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"api\"\nmain = \"api.js\"\n\
       [[worker]]\nname = \"w\"\nmain = \"{main}\"\nservices = [{services}]\n"
    )
  };
  let refused = |toml: String| f.config(&toml).err().map(|e| e.to_string()).unwrap_or_default();
  assert!(refused(config(
    "front.js",
    "{ binding = \"A\", service = \"api\", entrypoint = \"Admin\" }"
  ))
  .is_empty());
  assert!(refused(config(
    "front.js",
    "{ binding = \"A\", service = \"api\", entrypoint = \"no-pe\" }"
  ))
  .contains("entrypoint \"no-pe\" is not the name of an export"));
  assert!(refused(config(
    "front.js",
    "{ binding = \"A\", service = \"api\", entrypoint = \"default\" }"
  ))
  .contains("leave it out for the default export"));
  // Workers are evaluated at start: these refuse it, naming why.
  let start_err = |main: &str| {
    let toml = config(main, "");
    let cfg = f.config(&toml).expect("config");
    match edge::Engine::start(cfg) {
      Ok(_) => panic!("started with {main}"),
      Err(e) => e.to_string(),
    }
  };
  let class = start_err("class.js");
  assert!(class.contains("does not extend WorkerEntrypoint"), "{class}");
  let sockets = start_err("sockets.js");
  assert!(
    sockets.contains("\"cloudflare:sockets\" is not available here"),
    "{sockets}"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_bank_calls_its_accounts_over_rpc() {
  let f = Fixture::new();
  let dir = crate::support::examples_dir();
  let toml = format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[storage]\ndir = \"state\"\n\
     [[worker]]\nname = \"accounts\"\nmain = \"{}\"\nvars = {{ CURRENCY = \"EUR\" }}\nkv = [{{ binding = \"BALANCES\" }}]\n\
     [[worker]]\nname = \"bank\"\nmain = \"{}\"\nroutes = [\"bank.test\"]\n\
     services = [{{ binding = \"ACCOUNTS\", service = \"accounts\" }}, {{ binding = \"AUDIT\", service = \"accounts\", entrypoint = \"Audit\" }}]\n",
    dir.join("accounts/index.js").display(),
    dir.join("bank/index.js").display()
  );
  let e = f.start(&toml);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("bank.test", "/balance/ada").await;
  assert_eq!(got.body, r#"{"name":"ada","balance":0,"currency":"EUR"}"#);
  let post = |path: &str| {
    http::Request::post(path)
      .header("host", "bank.test")
      .body(crate::support::empty())
      .unwrap()
  };
  let got = crate::support::collect(c.send(post("/deposit/ada?amount=5")).await).await;
  assert_eq!(got.body, r#"{"name":"ada","balance":5,"currency":"EUR"}"#);
  let got = crate::support::collect(c.send(post("/deposit/ada?amount=-1")).await).await;
  assert_eq!(
    (got.status, got.body.as_str()),
    (400, "a deposit must be a positive number, not -1\n")
  );
  let got = c.get("bank.test", "/audit").await;
  assert_eq!(got.body, r#"{"path":"/audit","accounts":["ada"]}"#);
}

/// A WorkerEntrypoint class's scheduled() and queue() are its handlers too,
/// each on an instance of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_entrypoint_class_takes_cron_runs_and_queue_batches() {
  let f = Fixture::new();
  f.file(
    "jobs.js",
    r#"
import { WorkerEntrypoint } from "cloudflare:workers";
export default class Jobs extends WorkerEntrypoint {
  async scheduled(controller) {
    await this.env.KV.put("cron", controller.cron);
  }
  // A class field: found on the instance, not the prototype.
  queue = async (batch) => {
    for (const m of batch.messages) await this.env.KV.put(`job-${m.body.n}`, "done");
  };
  async fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === "/send") {
      await this.env.JOBS.send({ n: 7 });
      return new Response("sent");
    }
    return new Response(`${await this.env.KV.get("cron")} ${await this.env.KV.get("job-7")}`);
  }
}
"#,
  );
  let toml = "[listen]\nhttp = \"127.0.0.1:0\"\n[storage]\ndir = \"state\"\n[[worker]]\nname = \"jobs\"\nmain = \"jobs.js\"\n\
    routes = [\"jobs.test\"]\nkv = [{ binding = \"KV\" }]\nqueues.producers = [{ binding = \"JOBS\", queue = \"jobs\" }]\n\
    [[worker.queues.consumers]]\nqueue = \"jobs\"\nmax_batch_timeout = 0\n";
  let mut config = f.config(toml).unwrap();
  config.test_scheduled = true;
  let e = edge::Engine::start(config).unwrap();
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  assert_eq!(c.get("jobs.test", "/__scheduled?cron=5+4+*+*+*").await.status, 200);
  assert_eq!(c.get("jobs.test", "/send").await.body, "sent");
  let mut seen = String::new();
  for _ in 0..100 {
    seen = c.get("jobs.test", "/").await.body;
    if seen == "5 4 * * * done" {
      break;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
  }
  assert_eq!(seen, "5 4 * * * done");
  // Requests from inside the node (the queue's delivery) write access
  // lines too.
  let logs = crate::support::logs();
  assert!(
    logs.lines().any(|l| l.contains("access")
      && l.contains("worker=\"jobs\"")
      && l.contains("path=/__queue?queue=jobs")
      && l.contains("status=200")),
    "no access line for the delivery"
  );
}
