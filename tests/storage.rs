//! Bindings as a worker sees them: KV namespaces on `env` (every method,
//! Cloudflare's limits and messages), kept in SQLite files under the
//! config's storage folder, surviving a restart, each worker reaching only
//! the namespaces its config names; secrets, on `env` and never listed.

use crate::support::{Fixture, H1};

/// Exercises every KV method and prints what it saw, a line each.
const KV_API: &str = r#"
const err = async (f) => { try { await f(); return "no error"; } catch (x) { return `${x.constructor.name}: ${x.message}`; } };
const enc = (t) => new TextEncoder().encode(t);
export default { async fetch(req, env) {
  const kv = env.KV;
  const out = [];
  out.push(`tag ${Object.prototype.toString.call(kv)} var ${env.NAME}`);
  out.push(`missing ${await kv.get("nope")} ${JSON.stringify(await kv.getWithMetadata("nope"))}`);
  await kv.put("text", "héllo");
  out.push(`text ${await kv.get("text")} ${await kv.get("text", "text")} ${await kv.get("text", { type: "text", cacheTtl: 60 })}`);
  await kv.put("json", JSON.stringify({ a: [1, 2] }), { metadata: { by: "test", n: 1 } });
  out.push(`json ${JSON.stringify(await kv.get("json", "json"))} ${JSON.stringify(await kv.getWithMetadata("json", { type: "json" }))}`);
  await kv.put("bytes", new Uint8Array([0, 1, 255]).buffer);
  const ab = await kv.get("bytes", "arrayBuffer");
  out.push(`arrayBuffer ${ab instanceof ArrayBuffer} ${Array.from(new Uint8Array(ab)).join(",")}`);
  await kv.put("view", new DataView(new Uint8Array([9, 8, 7, 6]).buffer, 1, 2));
  out.push(`view ${Array.from(new Uint8Array(await kv.get("view", "arrayBuffer"))).join(",")}`);
  const body = new ReadableStream({ start(c) { c.enqueue(enc("str")); c.enqueue(enc("eam")); c.close(); } });
  await kv.put("stream", body);
  const s = await kv.get("stream", "stream");
  out.push(`stream ${s instanceof ReadableStream} ${await new Response(s).text()}`);
  await kv.put("ttl", "x", { expirationTtl: 3600 });
  const now = Math.floor(Date.now() / 1000);
  const listed = (await kv.list({ prefix: "tt" })).keys[0];
  out.push(`ttl ${listed.name} ${Math.abs(listed.expiration - now - 3600) <= 2}`);
  await kv.delete("ttl");
  await kv.delete("never-there");
  out.push(`deleted ${await kv.get("ttl")}`);
  for (let i = 0; i < 5; i++) await kv.put(`page/${i}`, String(i), i === 2 ? { metadata: i } : undefined);
  let cursor, pages = [];
  do {
    const l = await kv.list({ prefix: "page/", limit: 2, cursor });
    pages.push(l.keys.map((k) => k.name.slice(5) + (k.metadata !== undefined ? "m" + k.metadata : "")).join("+") + (l.list_complete ? "." : ""));
    cursor = l.cursor;
  } while (cursor);
  out.push(`pages ${pages.join(" ")}`);
  const all = await kv.list();
  out.push(`all ${all.keys.map((k) => k.name).join(",")} ${all.list_complete} ${"cursor" in all}`);
  const bulk = await kv.get(["text", "nope", "json"], "json").catch((e) => e.message);
  out.push(`bulk ${bulk}`);
  const bulkText = await kv.get(["text", "nope"]);
  out.push(`bulk text ${[...bulkText].map(([k, v]) => k + "=" + v).join(",")}`);
  // Cloudflare's checks and messages.
  out.push(await err(() => kv.get("")));
  out.push(await err(() => kv.get("..")));
  out.push(await err(() => kv.put("k".repeat(513), "v")));
  out.push(await err(() => kv.get("k", { cacheTtl: 10 })));
  out.push(await err(() => kv.put("k", "v", { expirationTtl: 10 })));
  out.push(await err(() => kv.put("k", "v", { expiration: 1 })));
  out.push(await err(() => kv.put("k", "v", { metadata: "m".repeat(1100) })));
  out.push(await err(() => kv.put("k", new Uint8Array(25 * 1024 * 1024 + 1))));
  out.push(await err(() => kv.put("k", 42)));
  out.push(await err(() => kv.get("k", "blob")));
  out.push(await err(() => kv.list({ limit: 0 })));
  out.push(await err(() => kv.list({ limit: 1001 })));
  out.push(await err(() => kv.list({ cursor: "not a cursor!" })));
  out.push(`key as string ${await kv.put(12, "twelve")} ${await kv.get("12")}`);
  return new Response(out.join("\n"));
} };
"#;

const EXPECTED: &str = r#"tag [object KvNamespace] var n
missing null {"value":null,"metadata":null,"cacheStatus":null}
text héllo héllo héllo
json {"a":[1,2]} {"value":{"a":[1,2]},"metadata":{"by":"test","n":1},"cacheStatus":null}
arrayBuffer true 0,1,255
view 8,7
stream true stream
ttl ttl true
deleted null
pages 0+1 2m2+3 4.
all bytes,json,page/0,page/1,page/2,page/3,page/4,stream,text,view true false
bulk Unexpected token 'h', "héllo" is not valid JSON
bulk text text=héllo,nope=null
Error: KV GET failed: 400 Key names must not be empty
Error: KV GET failed: 400 Illegal key name "..". Please use a different name.
Error: KV PUT failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512.
Error: KV GET failed: 400 Invalid cache_ttl of 10. Cache TTL must be at least 30.
Error: KV PUT failed: 400 Invalid expiration_ttl of 10. Expiration TTL must be at least 60.
Error: KV PUT failed: 400 Invalid expiration of 1. Please specify integer greater than the current number of seconds since the UNIX epoch.
Error: KV PUT failed: 413 Metadata length of 1102 exceeds limit of 1024.
Error: KV PUT failed: 413 Value length of 26214401 exceeds limit of 26214400.
TypeError: KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as values.
TypeError: Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream".
Error: KV LIST failed: 400 Invalid key_count_limit of 0. Please specify an integer greater than 0.
Error: KV LIST failed: 400 Invalid key_count_limit of 1001. Please specify an integer less than 1000.
Error: KV LIST failed: 400 Invalid cursor
key as string undefined twelve"#;

fn config(workers: &str) -> String {
  format!("[listen]\nhttp = \"127.0.0.1:0\"\n[limits]\ncpu_ms = 30000\nwall_ms = 60000\nmemory_mb = 256\n{workers}")
}

const ONE: &str = "[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\nvars = { NAME = \"n\" }\nkv = [{ binding = \"KV\", namespace = \"things\" }]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_methods_as_on_workers() {
  let f = Fixture::new();
  f.file("w.js", KV_API);
  let e = f.start(&config(ONE));
  let got = H1::connect(e.http_addr().unwrap()).await.get("w.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert_eq!(got.body, EXPECTED);
  assert!(f.path(".edge-state/kv/things.sqlite3").is_file());
}

/// Writes `?put=` under the key `?key=`, reads `?get=`; answers the value
/// read (or `null`).
const RW: &str = r#"
export default { async fetch(req, env) {
  const q = new URL(req.url).searchParams;
  if (q.has("put")) await env.KV.put(q.get("key"), q.get("put"));
  return new Response(String(await env.KV.get(q.get("get") ?? q.get("key"))));
} };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_namespaces_are_the_workers_own_and_survive_a_restart() {
  let f = Fixture::new();
  f.file("rw.js", RW);
  let workers = "[[worker]]\nname = \"a\"\nmain = \"rw.js\"\nroutes = [\"a.test\"]\nkv = [{ binding = \"KV\", namespace = \"ns-a\" }]\n\
     [[worker]]\nname = \"b\"\nmain = \"rw.js\"\nroutes = [\"b.test\"]\nkv = [{ binding = \"KV\", namespace = \"ns-b\" }]\n\
     [[worker]]\nname = \"shares-a\"\nmain = \"rw.js\"\nroutes = [\"c.test\"]\nkv = [{ binding = \"KV\", namespace = \"ns-a\" }]\n\
     [[worker]]\nname = \"none\"\nmain = \"rw.js\"\nroutes = [\"d.test\"]\n";
  let toml = config(workers);
  {
    let e = f.start(&toml);
    let mut c = H1::connect(e.http_addr().unwrap()).await;
    assert_eq!(c.get("a.test", "/?key=k&put=from-a").await.body, "from-a");
    assert_eq!(
      c.get("b.test", "/?key=k").await.body,
      "null",
      "b's namespace is its own"
    );
    assert_eq!(c.get("b.test", "/?key=k&put=from-b").await.body, "from-b");
    assert_eq!(c.get("a.test", "/?key=k").await.body, "from-a");
    assert_eq!(
      c.get("c.test", "/?key=k").await.body,
      "from-a",
      "a namespace two workers name is shared"
    );
    let none = c.get("d.test", "/?key=k").await;
    assert_eq!(
      none.status, 500,
      "a worker with no binding has no env.KV: {}",
      none.body
    );
    e.shutdown();
  }
  let e = f.start(&toml);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  assert_eq!(c.get("a.test", "/?key=k").await.body, "from-a", "kept across a restart");
  assert_eq!(c.get("b.test", "/?key=k").await.body, "from-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_calls_per_request_are_bounded_and_belong_to_a_live_request() {
  let f = Fixture::new();
  f.file(
    "w.js",
    r#"
let late, wake;
export default { async fetch(req, env, ctx) {
  if (new URL(req.url).pathname === "/late") {
    // The continuation below belongs to the first request, which ended.
    wake();
    return new Response(String(await late));
  }
  let n = 0, message = "none";
  try { for (;;) { await env.KV.get("k"); n++; } } catch (e) { message = e.message; }
  late = new Promise((r) => { wake = r; }).then(() => env.KV.get("k")).then(() => "no error", (e) => e.message);
  return new Response(`${n} ${message}`);
} };
"#,
  );
  let e = f.start(&config(ONE));
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("w.test", "/").await;
  assert_eq!(
    got.body,
    "1000 KV GET failed: 429 Too many API requests by single worker invocation."
  );
  let got = c.get("w.test", "/late").await;
  assert!(got.body.contains("request has ended"), "{}", got.body);
}

#[test]
fn kv_bindings_are_checked_in_the_config() {
  let f = Fixture::new();
  f.file("w.js", "export default { fetch() { return new Response('') } }");
  let bad = |kv: &str| {
    let toml = config(&format!(
      "[[worker]]\nname = \"w\"\nmain = \"w.js\"\nvars = {{ A = \"a\" }}\nkv = {kv}\n"
    ));
    f.config(&toml).map(|_| ()).unwrap_err().to_string()
  };
  assert!(bad("[{ binding = \"A\" }]").contains("bound twice"));
  assert!(bad("[{ binding = \"K\" }, { binding = \"K\", namespace = \"x\" }]").contains("bound twice"));
  assert!(bad("[{ binding = \"1K\" }]").contains("is not a name"));
  assert!(bad("[{ binding = \"K\", namespace = \"../up\" }]").contains("namespace"));
  assert!(bad("[{ binding = \"K\", id = \"x\" }]").contains("unknown field"));
}

// The bundled example (workers/store), as README shows it with curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_notes_store_works_as_the_readme_says() {
  let f = Fixture::new();
  for name in ["store", "words"] {
    let src = std::fs::read_to_string(crate::support::examples_dir().join(format!("{name}/index.js"))).unwrap();
    f.file(&format!("{name}.js"), src);
  }
  let e = f.start(&config(
    "[[worker]]\nname = \"store\"\nmain = \"store.js\"\nroutes = [\"store.test\"]\n[[worker.kv]]\nbinding = \"NOTES\"\nnamespace = \"notes\"\n[[worker.d1]]\nbinding = \"LOG\"\ndatabase = \"log\"\n\
     [[worker.r2]]\nbinding = \"FILES\"\nbucket_name = \"files\"\n[[worker.services]]\nbinding = \"WORDS\"\nservice = \"words\"\n[[worker]]\nname = \"words\"\nmain = \"words.js\"\n",
  ));
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let send = |method: &str, path: &str, body: &str| {
    http::Request::builder()
      .method(method)
      .uri(format!("http://store.test{path}"))
      .header("host", "store.test")
      .body(crate::support::body(body.to_string()))
      .unwrap()
  };
  let put = crate::support::collect(c.send(send("PUT", "/notes/todo", "buy tea")).await).await;
  assert_eq!((put.status, put.body.as_str()), (201, "stored todo\n"));
  let got = c.get("store.test", "/notes/todo").await;
  assert_eq!((got.status, got.body.as_str()), (200, "buy tea"));
  assert!(got.headers.contains_key("x-note-written"));
  assert_eq!(got.headers.get("cf-cache-status"), None, "the first read is from KV");
  let mut hit = None;
  for _ in 0..50 {
    // The copy is put after the answer (ctx.waitUntil).
    let again = c.get("store.test", "/notes/todo").await;
    if again.headers.get("cf-cache-status").is_some_and(|v| v == "HIT") {
      hit = Some(again.body);
      break;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
  }
  assert_eq!(hit.as_deref(), Some("buy tea"), "the second read is a cache hit");
  let put = crate::support::collect(c.send(send("PUT", "/notes/todo", "buy milk")).await).await;
  assert_eq!(put.status, 201);
  assert_eq!(
    c.get("store.test", "/notes/todo").await.body,
    "buy milk",
    "a write drops the cached copy"
  );
  let stats = c.get("store.test", "/stats/todo").await;
  assert_eq!(
    (stats.status, stats.body.as_str()),
    (200, r#"{"words":2,"bytes":8}"#),
    "counted by the words worker through the service binding"
  );
  let stored = crate::support::collect(c.send(send("PUT", "/files/a.txt", "0123456789")).await).await;
  assert_eq!(stored.status, 201, "{}", stored.body);
  let file = c.get("store.test", "/files/a.txt").await;
  assert_eq!((file.status, file.body.as_str()), (200, "0123456789"));
  let etag = file.headers["etag"].to_str().unwrap().to_string();
  let mut ranged = send("GET", "/files/a.txt", "");
  ranged.headers_mut().insert("range", "bytes=2-4".parse().unwrap());
  let part = crate::support::collect(c.send(ranged).await).await;
  assert_eq!((part.status, part.body.as_str()), (206, "234"));
  assert_eq!(part.headers["content-range"], "bytes 2-4/10");
  let mut cached = send("GET", "/files/a.txt", "");
  cached.headers_mut().insert("if-none-match", etag.parse().unwrap());
  assert_eq!(crate::support::collect(c.send(cached).await).await.status, 304);
  let bad = crate::support::collect(c.send(send("PUT", "/notes/x?ttl=5", "y")).await).await;
  assert_eq!(bad.status, 400, "{}", bad.body);
  assert!(bad.body.contains("Expiration TTL must be at least 60"), "{}", bad.body);
  let list = c.get("store.test", "/notes?prefix=to").await;
  assert!(
    list.body.starts_with(r#"{"notes":[{"name":"todo","at":"#),
    "{}",
    list.body
  );
  let del = crate::support::collect(c.send(send("DELETE", "/notes/todo", "")).await).await;
  assert_eq!(del.status, 204);
  assert_eq!(c.get("store.test", "/notes/todo").await.status, 404);
  let log = c.get("store.test", "/log").await;
  let log: serde_json::Value = serde_json::from_str(&log.body).unwrap();
  let actions: Vec<String> = log
    .as_array()
    .unwrap()
    .iter()
    .map(|r| format!("{} {}", r["action"].as_str().unwrap(), r["name"].as_str().unwrap()))
    .collect();
  assert_eq!(actions, ["read log", "delete todo", "put todo", "put todo"]);
}

// Values read count in the isolate's memory, and so do values on their way
// to the store: holding ever more of them, or starting ever more puts of
// one buffer, ends the request at its memory limit (the node serves on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_read_count_against_the_memory_limit() {
  let f = Fixture::new();
  f.file(
    "w.js",
    r#"
const held = [];
export default { async fetch(req, env) {
  if (new URL(req.url).pathname === "/put") { await env.KV.put("big", new Uint8Array(4 << 20)); return new Response("ok"); }
  if (new URL(req.url).pathname === "/hoard") { for (let i = 0; i < 200; i++) held.push(await env.KV.get("big", "arrayBuffer")); }
  if (new URL(req.url).pathname === "/flood") {
    const big = new Uint8Array(4 << 20);
    await Promise.all(Array.from({ length: 200 }, (_, i) => env.KV.put("f" + i, big)));
    return new Response("flooded");
  }
  return new Response(`held ${held.length}`);
} };
"#,
  );
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[limits]\ncpu_ms = 30000\nwall_ms = 60000\nmemory_mb = 64\n\
     [[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\nkv = [{ binding = \"KV\" }]\n",
  );
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  assert_eq!(c.get("w.test", "/put").await.body, "ok");
  // 200 puts of one 4 MiB buffer started at once: Rust's copies count.
  let got = c.get("w.test", "/flood").await;
  assert_eq!((got.status, got.limit()), (503, Some("memory")), "{}", got.body);
  let got = c.get("w.test", "/hoard").await;
  assert_eq!((got.status, got.limit()), (503, Some("memory")), "{}", got.body);
  let after = H1::connect(e.http_addr().unwrap()).await.get("w.test", "/").await;
  assert_eq!(after.body, "held 0", "a fresh isolate serves the next request");
}

// An upload names its KV bindings in its metadata; the data directory
// keeps them, and the values stay in the storage folder across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_bind_kv_and_keep_it_across_a_restart() {
  use crate::support::{admin, upload, TOKEN};
  let f = Fixture::new();
  f.file("admin.token", format!("{TOKEN}\n"));
  let toml = "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\ndata_dir = \"data\"\n";
  let meta = r#"{"main_module":"index.js","routes":["u.test"],"kv":[{"binding":"KV","namespace":"up"}]}"#;
  {
    let e = f.start(toml);
    let bad = admin(
      e.admin_addr().unwrap(),
      "PUT",
      "/workers/u",
      Some(TOKEN),
      Some(upload(
        r#"{"main_module":"index.js","kv":[{"binding":"KV","namespace":"a/b"}]}"#,
        &[("index.js", RW.as_bytes())],
      )),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("namespace"), "{}", bad.body);
    let ok = admin(
      e.admin_addr().unwrap(),
      "PUT",
      "/workers/u",
      Some(TOKEN),
      Some(upload(meta, &[("index.js", RW.as_bytes())])),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let mut c = H1::connect(e.http_addr().unwrap()).await;
    assert_eq!(c.get("u.test", "/?key=k&put=kept").await.body, "kept");
    e.shutdown();
  }
  assert!(
    f.path("data/storage/kv/up.sqlite3").is_file(),
    "under admin.data_dir by default"
  );
  let e = f.start(toml);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  assert_eq!(c.get("u.test", "/?key=k").await.body, "kept");
}

/// Answers the env's keys and its `API_KEY` and `FROM_FILE`.
const SECRETS: &str = r#"
export default { fetch(req, env) {
  return new Response(`${Object.keys(env).sort().join(",")} ${env.API_KEY} ${env.FROM_FILE}`);
} };
"#;

// Secrets reach env as strings, from the config or a secrets file (an env
// file), and from an upload's metadata; the admin API counts them and
// names none, and the config's Debug form (what a log line could print)
// holds no value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_on_env_and_never_listed() {
  use crate::support::{admin, upload, TOKEN};
  let f = Fixture::new();
  f.file("w.js", SECRETS);
  f.file("admin.token", format!("{TOKEN}\n"));
  f.file(
    "w.secrets",
    "# the worker's secrets\nFROM_FILE=\"file-s3cret\"\nAPI_KEY=overridden\n",
  );
  let toml = "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\
     [[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\nvars = { PLAIN = \"p\" }\nsecrets_file = \"w.secrets\"\n\
     [worker.secrets]\nAPI_KEY = \"inline-s3cret\"\n";
  let config = f.config(toml).unwrap();
  let debug = format!("{config:?}");
  assert!(!debug.contains("s3cret"), "{debug}");
  let e = f.start(toml);
  let got = H1::connect(e.http_addr().unwrap()).await.get("w.test", "/").await;
  assert_eq!(got.body, "API_KEY,FROM_FILE,PLAIN inline-s3cret file-s3cret");

  let a = e.admin_addr().unwrap();
  let meta = r#"{"main_module":"index.js","routes":["u.test"],"secrets":{"API_KEY":"up-s3cret"}}"#;
  let up = admin(
    a,
    "PUT",
    "/workers/u",
    Some(TOKEN),
    Some(upload(meta, &[("index.js", SECRETS.as_bytes())])),
  )
  .await;
  assert_eq!(up.status, 200, "{}", up.body);
  assert!(
    !up.body.contains("s3cret") && !up.body.contains("API_KEY"),
    "{}",
    up.body
  );
  let got = H1::connect(e.http_addr().unwrap()).await.get("u.test", "/").await;
  assert_eq!(got.body, "API_KEY up-s3cret undefined");
  let list = admin(a, "GET", "/workers", Some(TOKEN), None).await;
  assert!(
    !list.body.contains("s3cret") && !list.body.contains("API_KEY") && !list.body.contains("FROM_FILE"),
    "{}",
    list.body
  );
  let list: serde_json::Value = serde_json::from_str(&list.body).unwrap();
  let of = |name: &str| {
    list
      .as_array()
      .unwrap()
      .iter()
      .find(|w| w["name"] == name)
      .unwrap()
      .clone()
  };
  assert_eq!(
    (of("w")["vars"].clone(), of("w")["secrets"].clone()),
    (serde_json::json!(["PLAIN"]), serde_json::json!(2))
  );
  assert_eq!(
    (of("u")["vars"].clone(), of("u")["secrets"].clone()),
    (serde_json::json!([]), serde_json::json!(1))
  );

  // A clash, a bad file line.
  let clash = toml.replace("vars = { PLAIN = \"p\" }", "vars = { API_KEY = \"p\" }");
  assert!(f.config(&clash).unwrap_err().to_string().contains("is a var too"));
  f.file("w.secrets", "FINE=1\nnot a pair\n");
  let bad = f.config(toml).unwrap_err().to_string();
  assert!(bad.contains("w.secrets:2"), "{bad}");
}

/// Exercises D1's API and prints what it saw, a line each.
const D1_API: &str = r#"
const err = async (f) => { try { await f(); return "no error"; } catch (x) { return `${x.constructor.name}: ${x.message}`; } };
export default { async fetch(req, env) {
  const db = env.DB;
  const out = [];
  out.push(`tag ${Object.prototype.toString.call(db)} ${Object.prototype.toString.call(db.prepare("SELECT 1"))}`);
  out.push(`exec ${(await db.exec("DROP TABLE IF EXISTS users;\nCREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, admin INTEGER, avatar BLOB, score REAL);")).count}`);
  const ins = db.prepare("INSERT INTO users (name, admin, avatar, score) VALUES (?1, ?2, ?3, ?4)");
  const r = await ins.bind("ada", true, new Uint8Array([1, 2, 3]), 9.5).run();
  out.push(`run ${r.success} ${r.meta.changes} ${r.meta.last_row_id} ${r.meta.changed_db} ${r.meta.size_after > 0} ${r.results.length}`);
  await ins.bind("bob", false, null, 3).run();
  const all = await db.prepare("SELECT * FROM users ORDER BY id").all();
  out.push(`all ${JSON.stringify(all.results)} ${all.meta.rows_read}`);
  out.push(`first ${JSON.stringify(await db.prepare("SELECT name FROM users WHERE id = ?").bind(2).first())}`);
  out.push(`first col ${await db.prepare("SELECT name FROM users WHERE id = ?").bind(1).first("name")}`);
  out.push(`first none ${await db.prepare("SELECT name FROM users WHERE id = 99").first()}`);
  out.push(await err(() => db.prepare("SELECT name FROM users").first("nope")));
  out.push(`raw ${JSON.stringify(await db.prepare("SELECT id, name FROM users ORDER BY id").raw())}`);
  out.push(`raw names ${JSON.stringify(await db.prepare("SELECT id, name FROM users ORDER BY id").raw({ columnNames: true }))}`);
  const batch = await db.batch([
    db.prepare("UPDATE users SET score = score + 1 WHERE name = ?").bind("bob"),
    db.prepare("SELECT score FROM users WHERE name = 'bob'"),
  ]);
  out.push(`batch ${batch.length} ${batch[0].meta.changes} ${batch[1].results[0].score}`);
  out.push(await err(() => db.batch([
    db.prepare("UPDATE users SET score = 100"),
    db.prepare("INSERT INTO users (id, name) VALUES (1, 'dup')"),
  ])));
  out.push(`rolled back ${(await db.prepare("SELECT max(score) AS m FROM users").first("m"))}`);
  out.push(await err(() => db.prepare("SELECT * FROM nope").all()));
  out.push(await err(() => db.prepare("SELECT ?1, ?2").bind(1).all()));
  out.push(await err(() => db.prepare("SELECT ?").bind(undefined)));
  out.push(await err(() => db.prepare("SELECT ?").bind({ a: 1 })));
  out.push(await err(() => db.prepare("INSERT INTO users (name) VALUES (NULL)").run()));
  out.push(await err(() => db.prepare("ATTACH DATABASE '/tmp/x.db' AS x").run()));
  out.push(await err(() => db.prepare("PRAGMA writable_schema = 1").run()));
  out.push(await err(() => db.exec("SELECT * FROM nope")));
  out.push(`big int ${await db.prepare("SELECT 9007199254740993 AS n").first("n")}`);
  out.push(`blob back ${JSON.stringify(await db.prepare("SELECT avatar FROM users WHERE id = ?").bind(1).first())}`);
  out.push(`array as blob ${JSON.stringify(await db.prepare("SELECT ? AS b, typeof(?1) AS t").bind([4, 5]).first())}`);
  return new Response(out.join("\n"));
} };
"#;

const D1_EXPECTED: &str = r#"tag [object D1Database] [object D1PreparedStatement]
exec 2
run true 1 1 true true 0
all [{"id":1,"name":"ada","admin":1,"avatar":[1,2,3],"score":9.5},{"id":2,"name":"bob","admin":0,"avatar":null,"score":3}] 2
first {"name":"bob"}
first col ada
first none null
Error: D1_COLUMN_NOTFOUND: Column not found
raw [[1,"ada"],[2,"bob"]]
raw names [["id","name"],[1,"ada"],[2,"bob"]]
batch 2 1 4
Error: D1_ERROR: UNIQUE constraint failed: users.id: SQLITE_CONSTRAINT
rolled back 9.5
Error: D1_ERROR: no such table: nope: SQLITE_ERROR
Error: D1_ERROR: Wrong number of parameter bindings for SQL query.
Error: D1_TYPE_ERROR: Type 'undefined' not supported for value 'undefined'
Error: D1_TYPE_ERROR: Type 'object' not supported for value '[object Object]'
Error: D1_ERROR: NOT NULL constraint failed: users.name: SQLITE_CONSTRAINT
Error: D1_ERROR: not authorized: SQLITE_AUTH
Error: D1_ERROR: not authorized: SQLITE_AUTH
Error: D1_EXEC_ERROR: Error in line 1: no such table: nope: SQLITE_ERROR
big int 9007199254740992
blob back {"avatar":[1,2,3]}
array as blob {"b":[4,5],"t":"blob"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_as_on_workers_and_each_workers_own() {
  let f = Fixture::new();
  f.file("w.js", D1_API);
  f.file(
    "other.js",
    r#"export default { async fetch(req, env) {
      try { return new Response(JSON.stringify(await env.DB.prepare("SELECT * FROM users").all())); }
      catch (e) { return new Response(e.message); } } };"#,
  );
  let e = f.start(&config(
    "[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\nd1 = [{ binding = \"DB\", database = \"app\" }]\n\
     [[worker]]\nname = \"other\"\nmain = \"other.js\"\nroutes = [\"o.test\"]\nd1 = [{ binding = \"DB\", database = \"other\" }]\n",
  ));
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("w.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert_eq!(got.body, D1_EXPECTED);
  assert!(f.path(".edge-state/d1/app.sqlite3").is_file());
  let other = c.get("o.test", "/").await;
  assert_eq!(
    other.body, "D1_ERROR: no such table: users: SQLITE_ERROR",
    "another database"
  );
}

/// Exercises the Cache API and prints what it saw, a line each.
const CACHE_API: &str = r#"
const err = async (f) => { try { await f(); return "no error"; } catch (x) { return `${x.constructor.name}: ${x.message}`; } };
const show = async (r) => r === undefined ? "miss" : `${r.status} ${r.headers.get("cf-cache-status")} ${r.headers.get("content-range") ?? "-"} ${await r.text()}`;
export default { async fetch(req) {
  const u = new URL(req.url);
  const c = caches.default;
  if (u.pathname === "/peek") return new Response(await show(await c.match("https://shared.test/item")));
  if (u.pathname === "/put") {
    await c.put("https://shared.test/item", new Response("from " + u.hostname, { headers: { "cache-control": "max-age=600" } }));
    return new Response("put");
  }
  const out = [];
  out.push(`globals ${typeof caches} ${Object.prototype.toString.call(caches)} ${Object.prototype.toString.call(c)} ${c === caches.default}`);
  const url = "https://cache.test/a";
  out.push(`empty ${await show(await c.match(url))}`);
  out.push(`put ${await c.put(url, new Response("0123456789", { headers: { "cache-control": "max-age=60", etag: '"e1"', "content-type": "text/plain" } }))}`);
  out.push(`hit ${await show(await c.match(url))}`);
  out.push(`request ${await show(await c.match(new Request(url)))}`);
  const r304 = await c.match(new Request(url, { headers: { "if-none-match": '"e1"' } }));
  out.push(`conditional ${r304.status} ${r304.body}`);
  out.push(`range ${await show(await c.match(new Request(url, { headers: { range: "bytes=2-5" } })))}`);
  out.push(`head ${await show(await c.match(new Request(url, { method: "HEAD" })))} ${await show(await c.match(new Request(url, { method: "HEAD" }), { ignoreMethod: true }))}`);
  const named = await caches.open("mine");
  out.push(`named ${await show(await named.match(url))} ${Object.prototype.toString.call(named)}`);
  await named.put(url, new Response("named value", { headers: { "cache-control": "max-age=60" } }));
  out.push(`named hit ${await show(await named.match(url))} default ${await show(await c.match(url))}`);
  await c.put("https://cache.test/nostore", new Response("x", { headers: { "cache-control": "no-store" } }));
  out.push(`no-store ${await show(await c.match("https://cache.test/nostore"))}`);
  await c.put("https://cache.test/vary", new Response("en", { headers: { "cache-control": "max-age=60", vary: "accept-language" } }));
  out.push(`vary ${await show(await c.match(new Request("https://cache.test/vary", { headers: { "accept-language": "fr" } })))}`);
  out.push(await err(() => c.put(new Request(url, { method: "POST" }), new Response("x"))));
  out.push(await err(() => c.put(url, new Response("x", { status: 206 }))));
  out.push(await err(() => c.put(url, new Response("x", { headers: { vary: "*" } }))));
  out.push(await err(() => c.put(url, "not a response")));
  out.push(`delete ${await c.delete(url)} ${await c.delete(url)} ${await show(await c.match(url))}`);
  return new Response(out.join("\n"));
} };
"#;

const CACHE_EXPECTED: &str = r#"globals object [object CacheStorage] [object Cache] true
empty miss
put undefined
hit 200 HIT - 0123456789
request 200 HIT - 0123456789
conditional 304 null
range 206 HIT bytes 2-5/10 2345
head miss 200 HIT - 0123456789
named miss [object Cache]
named hit 200 HIT - named value default 200 HIT - 0123456789
no-store miss
vary miss
TypeError: Cannot cache response to non-GET request.
TypeError: Cannot cache response to a range request (206 Partial Content).
TypeError: Cannot cache response with 'Vary: *' header.
TypeError: Cache.put() takes a Response
delete true false miss"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_api_as_on_workers_and_by_zone() {
  let f = Fixture::new();
  f.file("w.js", CACHE_API);
  let e = f.start(&config(
    "[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"*.cache.test\", \"cache.test\"]\n\
     [[worker]]\nname = \"x\"\nmain = \"w.js\"\nroutes = [\"other.test\"]\n",
  ));
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("cache.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert_eq!(got.body, CACHE_EXPECTED);
  // The same URL put from two zones: each reads its own.
  assert_eq!(c.get("a.cache.test", "/put").await.body, "put");
  assert_eq!(c.get("a.cache.test", "/peek").await.body, "200 HIT - from a.cache.test");
  assert_eq!(
    c.get("b.cache.test", "/peek").await.body,
    "miss",
    "another zone of the same worker"
  );
  assert_eq!(c.get("other.test", "/peek").await.body, "miss", "another worker");
  assert_eq!(c.get("other.test", "/put").await.body, "put");
  assert_eq!(c.get("other.test", "/peek").await.body, "200 HIT - from other.test");
  assert_eq!(c.get("a.cache.test", "/peek").await.body, "200 HIT - from a.cache.test");
}
