//! Service bindings: `env.NAME.fetch()` runs a request through another
//! worker of the node in process. Bodies stream both ways; the call counts
//! against the caller's subrequest limit and the node's loop limit; a
//! callee's failure is an answer, a missing callee a rejection; uploads
//! bind services too.

use crate::support::{admin, collect, streamed_body, upload, Fixture, H1, TOKEN};

/// The callee: answers what it saw, echoes bodies as they come, fails or
/// streams 4 MiB on request.
const AUTH: &str = r#"
export default { async fetch(req, env) {
  const url = new URL(req.url);
  if (url.pathname === "/throw") throw new Error("auth is down");
  if (url.pathname === "/big") {
    let n = 0;
    const piece = new Uint8Array(64 * 1024).fill(97);
    return new Response(new ReadableStream({ pull(c) { if (n++ === 64) c.close(); else c.enqueue(piece); } }));
  }
  const seen = {
    "x-seen-method": req.method,
    "x-seen-url": req.url,
    "x-seen-via": req.headers.get("edge-via") ?? "none",
    "x-seen-ae": req.headers.get("accept-encoding") ?? "none",
    "x-seen-length": req.headers.get("content-length") ?? "none",
    "x-seen-token": req.headers.get("x-token") ?? "none",
    "x-callee-env": env.WHO,
  };
  return new Response(req.body, { status: 201, headers: seen });
} };
"#;

/// The caller: one route per property.
const FRONT: &str = r#"
export default { async fetch(req, env) {
  const url = new URL(req.url);
  const out = [];
  if (url.pathname === "/") {
    out.push(`tag ${Object.prototype.toString.call(env.AUTH)} keys ${Object.keys(env).sort().join(",")}`);
    const r = await env.AUTH.fetch("https://auth.internal/echo?x=1", {
      method: "POST", body: "hello", headers: { "accept-encoding": "gzip", "x-token": "t0" },
    });
    out.push(`status ${r.status} url ${r.url}`);
    for (const h of ["x-seen-method", "x-seen-url", "x-seen-via", "x-seen-ae", "x-seen-length", "x-seen-token", "x-callee-env"]) {
      out.push(`${h} ${r.headers.get(h)}`);
    }
    out.push(`body ${await r.text()}`);
    out.push(`immutable ${(() => { try { r.headers.set("a", "b"); return "no"; } catch { return "yes"; } })()}`);
    const thrown = await env.AUTH.fetch("https://auth.internal/throw");
    out.push(`callee threw ${thrown.status}`);
    out.push(`connect ${(() => { try { env.AUTH.connect("x:1"); return "ok"; } catch (e) { return e.constructor.name; } })()}`);
    return new Response(out.join("\n"));
  }
  if (url.pathname === "/pingpong") {
    // Each piece must come back before the next is written: a body
    // buffered either way would never answer.
    let ctl;
    const body = new ReadableStream({ start(c) { ctl = c; } });
    const enc = new TextEncoder();
    ctl.enqueue(enc.encode("ping-1;"));
    const r = await env.AUTH.fetch("https://auth.internal/echo", { method: "POST", body, duplex: "half" });
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    for (let i = 2; i <= 4; i++) {
      const { value } = await reader.read();
      out.push(dec.decode(value));
      ctl.enqueue(enc.encode(`ping-${i};`));
    }
    ctl.close();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out.push(dec.decode(value));
    }
    return new Response(out.join(" "));
  }
  if (url.pathname === "/forward") {
    // The incoming request passed on whole: its streamed body and length.
    return env.AUTH.fetch(new Request("https://auth.internal/echo", req));
  }
  if (url.pathname === "/big") return env.AUTH.fetch("https://auth.internal/big");
  if (url.pathname === "/limit") {
    for (let i = 0; i < 5; i++) {
      try { await env.AUTH.fetch("https://auth.internal/echo"); out.push("ok"); } catch (e) { out.push(e.message); }
    }
    return new Response(out.join("\n"));
  }
  return new Response("no route", { status: 404 });
} };
"#;

/// Calls itself one level deeper until the node says no.
const LOOP: &str = r#"
export default { async fetch(req, env) {
  const n = Number(new URL(req.url).searchParams.get("n") ?? 0);
  const r = await env.SELF.fetch(`https://loop.internal/?n=${n + 1}`);
  if (r.status !== 200) return new Response(`stopped at ${n} with ${r.status}`, { status: 200 });
  return r;
} };
"#;

/// Calls itself twice per call, ten levels deep (2,046 calls if nothing
/// stopped it); answers "<invocations> <refused calls>" of its subtree.
const FAN: &str = r#"
export default { async fetch(req, env) {
  const n = Number(new URL(req.url).searchParams.get("n") ?? 0);
  if (n === 10) return new Response("1 0");
  let calls = 1, refused = 0;
  await Promise.all([0, 1].map(async () => {
    try {
      const [c, r] = (await (await env.SELF.fetch(`https://fan.internal/?n=${n + 1}`)).text()).split(" ").map(Number);
      calls += c; refused += r;
    } catch (e) {
      if (!e.message.startsWith("Too many service binding calls")) throw e;
      refused++;
    }
  }));
  return new Response(`${calls} ${refused}`);
} };
"#;

const CONFIG: &str = r#"
[listen]
http = "127.0.0.1:0"
[limits]
cpu_ms = 30000
wall_ms = 20000
[[worker]]
name = "auth"
main = "auth.js"
vars = { WHO = "auth" }
[[worker]]
name = "front"
main = "front.js"
routes = ["front.test"]
vars = { WHO = "front" }
services = [{ binding = "AUTH", service = "auth" }]
[[worker]]
name = "limited"
main = "front.js"
routes = ["limited.test"]
services = [{ binding = "AUTH", service = "auth" }]
limits = { subrequests = 3 }
[[worker]]
name = "loop"
main = "loop.js"
routes = ["loop.test"]
services = [{ binding = "SELF", service = "loop" }]
[[worker]]
name = "fan"
main = "fan.js"
routes = ["fan.test"]
services = [{ binding = "SELF", service = "fan" }]
"#;

fn fixture() -> Fixture {
  let f = Fixture::new();
  f.file("auth.js", AUTH)
    .file("front.js", FRONT)
    .file("loop.js", LOOP)
    .file("fan.js", FAN);
  f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_bindings_call_another_worker_in_process() {
  let f = fixture();
  let e = f.start(CONFIG);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("front.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert_eq!(
    got.body,
    "tag [object Fetcher] keys AUTH,WHO\n\
     status 201 url https://auth.internal/echo?x=1\n\
     x-seen-method POST\n\
     x-seen-url https://auth.internal/echo?x=1\n\
     x-seen-via 1\n\
     x-seen-ae none\n\
     x-seen-length 5\n\
     x-seen-token t0\n\
     x-callee-env auth\n\
     body hello\n\
     immutable yes\n\
     callee threw 500\n\
     connect TypeError"
  );
  // The callee has no route: only its callers reach it.
  let direct = c.get("auth", "/echo").await;
  assert_eq!(direct.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_binding_bodies_stream_both_ways() {
  let f = fixture();
  let e = f.start(CONFIG);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("front.test", "/pingpong").await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert_eq!(got.body, "ping-1; ping-2; ping-3; ping-4;");

  // 4 MiB from the callee, streamed through the caller to the client.
  let big = c.get("front.test", "/big").await;
  assert_eq!(big.status, 200);
  assert_eq!(big.body.len(), 64 * 64 * 1024);
  assert!(big.body.bytes().all(|b| b == b'a'));

  // 3 MiB from the client, through the caller to the callee and back.
  let req = http::Request::post("/forward")
    .header("host", "front.test")
    .header("content-length", (48 * 65536).to_string())
    .body(streamed_body(48, 65536, b'z'))
    .unwrap();
  let got = collect(c.send(req).await).await;
  assert_eq!(got.status, 201, "{}", got.body);
  assert_eq!(got.headers["x-seen-length"], (48 * 65536).to_string().as_str());
  assert_eq!(got.body.len(), 48 * 65536);
  assert!(got.body.bytes().all(|b| b == b'z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_calls_count_as_subrequests_and_loops_end() {
  let f = fixture();
  let e = f.start(CONFIG);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("limited.test", "/limit").await;
  let too_many =
    "Too many subrequests: a request of this worker may make at most 3 fetch() calls (edge-limit: subrequests)";
  assert_eq!(got.body, format!("ok\nok\nok\n{too_many}\n{too_many}"));
  let got = c.get("loop.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert_eq!(got.body, "stopped at 15 with 508");
  // The node still serves after the loop.
  assert_eq!(c.get("front.test", "/limit").await.body, "ok\nok\nok\nok\nok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_chain_makes_at_most_32_service_calls_however_wide() {
  let f = fixture();
  let e = f.start(CONFIG);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  for _ in 0..2 {
    // Each client request is a chain of its own, with a budget of its own.
    let got = c.get("fan.test", "/").await;
    assert_eq!(got.status, 200, "{}", got.body);
    let (calls, refused) = got.body.split_once(' ').unwrap();
    assert_eq!(calls, (js_api::MAX_SERVICE_CALLS + 1).to_string(), "{}", got.body);
    assert!(refused.parse::<u32>().unwrap() > 0, "{}", got.body);
  }
}

#[test]
fn service_bindings_are_checked_in_the_config() {
  let f = fixture();
  let bad = |services: &str| {
    let toml = format!(
      "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"auth\"\nmain = \"auth.js\"\n\
       [[worker]]\nname = \"w\"\nmain = \"front.js\"\nkv = [{{ binding = \"KV\" }}]\nservices = [{services}]\n"
    );
    f.config(&toml).err().map(|e| e.to_string()).unwrap_or_default()
  };
  assert!(bad("{ binding = \"A\", service = \"auth\" }").is_empty());
  assert!(bad("{ binding = \"A\", service = \"ghost\" }").contains("no worker named \"ghost\" in this config"));
  assert!(bad("{ binding = \"KV\", service = \"auth\" }").contains("bound twice"));
  assert!(bad("{ binding = \"a-b\", service = \"auth\" }").contains("is not a name"));
  assert!(bad("{ binding = \"A\", service = \"../x\" }").contains("services: A:"));
  assert!(bad("{ binding = \"A\", worker = \"auth\" }").contains("unknown field"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_bind_services_and_a_missing_callee_rejects() {
  let f = fixture();
  f.file("admin.token", format!("{TOKEN}\n"));
  // With an admin API, a config may name a worker it will deploy later.
  let toml = format!(
    "{CONFIG}[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\
     [[worker]]\nname = \"early\"\nmain = \"front.js\"\nroutes = [\"early.test\"]\nservices = [{{ binding = \"AUTH\", service = \"later\" }}]\n"
  );
  let e = f.start(&toml);
  let a = e.admin_addr().unwrap();
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("early.test", "/limit").await;
  let missing = "service binding: no worker named \"later\" is deployed";
  assert_eq!(got.body, [missing; 5].join("\n"));

  let meta = r#"{"main_module":"index.js","vars":{"WHO":"later"}}"#;
  let up = upload(meta, &[("index.js", AUTH.as_bytes())]);
  assert_eq!(
    admin(a, "PUT", "/workers/later", Some(TOKEN), Some(up)).await.status,
    200
  );
  assert_eq!(c.get("early.test", "/limit").await.body, "ok\nok\nok\nok\nok");

  // An uploaded caller of a config worker.
  let meta = r#"{"main_module":"index.js","routes":["up.test"],"services":[{"binding":"AUTH","service":"auth"}]}"#;
  let up = upload(meta, &[("index.js", FRONT.as_bytes())]);
  let put = admin(a, "PUT", "/workers/up", Some(TOKEN), Some(up)).await;
  assert_eq!(put.status, 200, "{}", put.body);
  let got = c.get("up.test", "/").await;
  assert!(got.body.contains("x-callee-env auth\nbody hello"), "{}", got.body);
  let bad = r#"{"main_module":"index.js","services":[{"binding":"AUTH","service":"no such"}]}"#;
  let up = upload(bad, &[("index.js", FRONT.as_bytes())]);
  let refused = admin(a, "PUT", "/workers/bad", Some(TOKEN), Some(up)).await;
  assert_eq!(refused.status, 400, "{}", refused.body);
}
