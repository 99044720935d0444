//! Node built-ins behind `compatibility_flags`: `node:async_hooks`
//! (AsyncLocalStorage on V8's continuation data, kept apart between
//! requests interleaved in one isolate, with CPU still charged to the
//! request) and `node:events`; imports without the flag, or of built-ins
//! not there, refused naming why.

use crate::support::{Fixture, H1};

const ALS: &str = r#"
import { AsyncLocalStorage, AsyncResource } from "node:async_hooks";
import defaultHooks from "async_hooks";

const als = new AsyncLocalStorage();
const other = new AsyncLocalStorage();
// Taken at the top level, run inside requests: the stores of then, the
// request of now.
const runLater = AsyncLocalStorage.snapshot();
const resource = new AsyncResource("top");
const tick = (ms) => new Promise((r) => setTimeout(r, ms));

export default { async fetch(req, env) {
  const url = new URL(req.url);
  if (url.pathname === "/spin") {
    // After an await: in a turn of the event loop, where CPU is charged
    // by sampling which request's code runs.
    return als.run("spinning", async () => { await tick(1); for (;;) {} });
  }
  if (url.pathname === "/top") {
    // The request is still this one inside them: storage calls work.
    const a = await runLater(async () => { await env.KV.put("a", "1"); return `${als.getStore()}`; });
    const b = await resource.runInAsyncScope(async () => { await env.KV.put("b", "2"); return `${als.getStore()}`; });
    return new Response(`${a} ${b} ${await env.KV.get("a")}${await env.KV.get("b")} ${defaultHooks.AsyncLocalStorage === AsyncLocalStorage}`);
  }
  const id = url.searchParams.get("id");
  return als.run({ id }, async () => {
    const seen = [];
    seen.push(als.getStore().id);
    await tick(Number(url.searchParams.get("wait")));
    seen.push(als.getStore().id);
    await new Promise((r) => setTimeout(() => { seen.push(als.getStore().id); r(); }, 5));
    const inner = await other.run("o", async () => { await tick(1); return `${als.getStore().id}/${other.getStore()}`; });
    seen.push(inner);
    seen.push(`${other.getStore()}`);
    seen.push(als.exit(() => `${als.getStore()}`));
    const bound = AsyncLocalStorage.bind(() => als.getStore().id);
    seen.push(await als.run({ id: "elsewhere" }, async () => bound()));
    return new Response(seen.join(" "));
  });
} };
"#;

const EVENTS: &str = r#"
import { EventEmitter, once, on } from "node:events";
import EE from "events";

class Clock extends EventEmitter {}

export default { async fetch() {
  const out = [];
  const c = new Clock();
  c.on("tick", (n) => out.push(`a${n}`));
  c.prependListener("tick", (n) => out.push(`p${n}`));
  c.once("tick", (n) => out.push(`o${n}`));
  out.push(String(c.emit("tick", 1)));
  c.emit("tick", 2);
  out.push(`count ${c.listenerCount("tick")} names ${c.eventNames().join(",")}`);
  try { c.emit("error", new RangeError("boom")); } catch (e) { out.push(`threw ${e.name}`); }
  setTimeout(() => c.emit("ready", "x", "y"), 1);
  out.push(`once ${(await once(c, "ready")).join("+")}`);
  setTimeout(() => { c.emit("n", 1); c.emit("n", 2); }, 1);
  const seen = [];
  for await (const [n] of on(c, "n")) { seen.push(n); if (n === 2) break; }
  out.push(`on ${seen.join(",")} left ${c.listenerCount("n")}`);
  out.push(`default ${EE === EventEmitter} ${EventEmitter.defaultMaxListeners}`);
  return new Response(out.join(" "));
} };
"#;

fn config(flags: &str) -> String {
  format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[limits]\ncpu_ms = 50\nwall_ms = 10000\n\
     [[worker]]\nname = \"storage-als\"\nmain = \"als.js\"\nroutes = [\"als.test\"]\ncompatibility_flags = {flags}\nkv = [{{ binding = \"KV\" }}]\n\
     [[worker]]\nname = \"events\"\nmain = \"events.js\"\nroutes = [\"events.test\"]\ncompatibility_flags = [\"nodejs_compat\"]\n"
  )
}

fn fixture() -> Fixture {
  let f = Fixture::new();
  f.file("als.js", ALS).file("events.js", EVENTS);
  f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_local_storage_keeps_each_interleaved_request_its_own_store() {
  let f = fixture();
  let e = f.start(&config("[\"nodejs_als\"]"));
  let addr = e.http_addr().unwrap();
  // Twenty requests at once, in the same isolate, each waking in another
  // order than it started.
  let runs = (0..20).map(|i| async move {
    let got = H1::connect(addr)
      .await
      .get("als.test", &format!("/?id=r{i}&wait={}", (20 - i) * 3))
      .await;
    (i, got)
  });
  for (i, got) in futures::future::join_all(runs).await {
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body, format!("r{i} r{i} r{i} r{i}/o undefined undefined r{i}"));
  }
  let top = H1::connect(addr).await.get("als.test", "/top").await;
  assert_eq!(top.body, "undefined undefined 12 true", "{}", top.body);
  // Code inside als.run is still charged to its request: it is stopped
  // at its CPU limit, and a request waiting in the same isolate meanwhile
  // is not charged for it.
  let bystander = tokio::spawn(async move { H1::connect(addr).await.get("als.test", "/?id=b&wait=300").await });
  tokio::time::sleep(std::time::Duration::from_millis(50)).await;
  let spin = H1::connect(addr).await.get("als.test", "/spin").await;
  assert_eq!((spin.status, spin.limit()), (503, Some("cpu")), "{}", spin.body);
  let bystander = bystander.await.unwrap();
  assert_eq!(bystander.body, "b b b b/o undefined undefined b");
  // Charged to the spinning request, not to code of no request.
  let logs = crate::support::logs();
  let unowned = logs
    .lines()
    .filter(|l| l.contains("storage-als") && l.contains("code of an ended request ran out of CPU"))
    .count();
  assert_eq!(unowned, 0, "{logs}");
  let after = H1::connect(addr).await.get("als.test", "/?id=z&wait=0").await;
  assert_eq!(after.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_events_emit_in_order_with_once_and_on() {
  let f = fixture();
  let e = f.start(&config("[\"nodejs_compat\"]"));
  let got = H1::connect(e.http_addr().unwrap()).await.get("events.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert_eq!(
    got.body,
    "p1 a1 o1 true p2 a2 count 2 names tick threw RangeError once x+y on 1,2 left 0 default true 10"
  );
}

#[test]
fn node_imports_need_the_flag_and_name_what_is_missing() {
  let f = fixture();
  f.file(
    "fs.js",
    "import { readFile } from 'node:fs';\nexport default { fetch() { return new Response('') } };",
  );
  let start = |main: &str, flags: &str| {
    let toml = format!(
      "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"w\"\nmain = \"{main}\"\ncompatibility_flags = {flags}\n"
    );
    match f.config(&toml) {
      Err(e) => e.to_string(),
      Ok(c) => edge::Engine::start(c).err().map(|e| e.to_string()).unwrap_or_default(),
    }
  };
  let none = start("als.js", "[]");
  assert!(
    none.contains("Node.js built-ins need compatibility_flags = [\"nodejs_compat\"]") && none.contains("nodejs_als"),
    "{none}"
  );
  // nodejs_als gives async_hooks only.
  let als_only = start("events.js", "[\"nodejs_als\"]");
  assert!(als_only.contains("\"node:events\""), "{als_only}");
  let fs = start("fs.js", "[\"nodejs_compat\"]");
  assert!(
    fs.contains(
      "the Node.js built-in \"fs\" is not available here yet (there are node:async_hooks, node:buffer, node:events, node:path, node:process, node:util)"
    ),
    "{fs}"
  );
  let unknown = start("als.js", "[\"streams_enable_constructors\"]");
  assert!(
    unknown.contains("\"streams_enable_constructors\" is not a flag edge knows"),
    "{unknown}"
  );
}

/// `process` with nodejs_compat: a global and `node:process`, its env the
/// worker's text vars and secrets; no global without the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_env_and_next_tick_with_nodejs_compat() {
  let f = Fixture::new();
  f.file(
    "p.js",
    r#"
import proc, { env } from "node:process";
export default { async fetch() {
  const order = [];
  await new Promise((done) => { process.nextTick((x) => { order.push(x); done(); }, "tick"); order.push("sync"); });
  let exit;
  try { process.exit(1); } catch (e) { exit = e.constructor.name; }
  return new Response(`${process.env.NAME} ${env.TOKEN} ${proc === process} ${order.join(",")} ${exit} ${typeof process.version}`);
} };
"#,
  );
  f.file(
    "plain.js",
    "export default { fetch() { return new Response(typeof process); } };",
  );
  f.file("secrets.env", "TOKEN=s3cret\n");
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"p\"\nmain = \"p.js\"\nroutes = [\"p.test\"]\n\
     compatibility_flags = [\"nodejs_compat\"]\nvars = { NAME = \"edge\" }\nsecrets_file = \"secrets.env\"\n\
     [[worker]]\nname = \"plain\"\nmain = \"plain.js\"\nroutes = [\"plain.test\"]\n",
  );
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("p.test", "/").await;
  assert_eq!(
    got.body, "edge s3cret true sync,tick TypeError undefined",
    "{}",
    got.body
  );
  assert_eq!(c.get("plain.test", "/").await.body, "undefined");
}

/// `node:buffer` (and the `Buffer` global) with nodejs_compat: encodings
/// both ways, views that share memory, integers and floats, concat,
/// compare, JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_encodes_slices_and_reads_as_node_does() {
  let f = Fixture::new();
  f.file(
    "b.js",
    r#"
import { Buffer as B } from "node:buffer";
export default { fetch() {
  const out = [];
  const b = Buffer.from("héllo wörld", "utf8");
  out.push(B === Buffer, b instanceof Uint8Array, b.length, b.toString("hex"), b.toString("base64"));
  out.push(Buffer.from("aGk/Pz4+", "base64").toString(), Buffer.from("aGk_Pz4-", "base64url").toString(), Buffer.from("aGk", "base64").toString());
  out.push(Buffer.from("68656c6c6fzz", "hex").toString("latin1"), Buffer.from("ÿA", "latin1").toString("hex"));
  out.push(Buffer.from("hi", "utf16le").toString("hex"), Buffer.from([104, 105]).toString("ucs2").length);
  const s = b.slice(0, 1); s[0] = 72; out.push(b.toString("utf8", 0, 5));
  const n = Buffer.alloc(16);
  n.writeUInt32BE(0xdeadbeef, 0); n.writeInt16LE(-2, 4); n.writeDoubleLE(1.5, 8);
  out.push(n.readUInt32BE(0).toString(16), n.readInt16LE(4), n.readDoubleLE(8), n.readUint8(0), n.readBigUInt64LE(8) > 0n);
  try { n.readUInt32LE(14); } catch (e) { out.push(e.name); }
  out.push(Buffer.concat([Buffer.from("a"), Buffer.from("bc")]).toString(), Buffer.compare(Buffer.from("a"), Buffer.from("b")));
  out.push(JSON.stringify(Buffer.from("ab")), Buffer.from({ type: "Buffer", data: [99] }).toString());
  out.push(Buffer.byteLength("wörld"), Buffer.alloc(3, "ab").toString(), b.indexOf("wö"), b.includes("zz"), Buffer.isBuffer(b), Buffer.isEncoding("binary"));
  try { Buffer.from("x", "klingon"); } catch (e) { out.push(e.message); }
  return new Response(out.join("|"));
} };
"#,
  );
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"b\"\nmain = \"b.js\"\nroutes = [\"b.test\"]\ncompatibility_flags = [\"nodejs_compat\"]\n",
  );
  let got = H1::connect(e.http_addr().unwrap()).await.get("b.test", "/").await;
  assert_eq!(
    got.body.split('|').collect::<Vec<_>>(),
    [
      "true",
      "true",
      "13",
      "68c3a96c6c6f2077c3b6726c64",
      "aMOpbGxvIHfDtnJsZA==",
      "hi??>>",
      "hi??>>",
      "hi",
      "hello",
      "ff41",
      "68006900",
      "1",
      "Héll",
      "deadbeef",
      "-2",
      "1.5",
      "222",
      "true",
      "RangeError",
      "abc",
      "-1",
      r#"{"type":"Buffer","data":[97,98]}"#,
      "c",
      "6",
      "aba",
      "7",
      "false",
      "true",
      "true",
      "Unknown encoding: klingon",
    ],
    "{}",
    got.body
  );
}

/// `node:path`: Node's POSIX answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_path_answers_as_node_posix_does() {
  let f = Fixture::new();
  f.file(
    "p.js",
    r#"
import path, { join, posix } from "node:path";
export default { fetch() {
  const out = [
    join("/a/b", "../c", "./d/"), path.normalize("a//b/../../../c"), path.normalize("/../x/."), path.normalize(""),
    path.resolve("a", "/b", "c/../d"), path.resolve("x"), path.relative("/a/b/c", "/a/d"), path.relative("/a", "/a"),
    path.dirname("/a/b/"), path.dirname("a"), path.dirname("/a"), path.basename("/a/b.txt", ".txt"), path.basename("/a/b/"),
    path.extname("x/.bashrc"), path.extname("a.tar.gz"), JSON.stringify(path.parse("/home/u/file.txt")),
    path.format({ dir: "/x", name: "f", ext: "js" }), String(path.isAbsolute("/a")), posix === path, path.sep,
  ];
  return new Response(out.join("|"));
} };
"#,
  );
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"p\"\nmain = \"p.js\"\nroutes = [\"p.test\"]\ncompatibility_flags = [\"nodejs_compat\"]\n",
  );
  let got = H1::connect(e.http_addr().unwrap()).await.get("p.test", "/").await;
  assert_eq!(
    got.body.split('|').collect::<Vec<_>>(),
    [
      "/a/c/d/",
      "../c",
      "/x",
      ".",
      "/b/d",
      "/x",
      "../../d",
      "",
      "/a",
      ".",
      "/",
      "b",
      "b",
      "",
      ".gz",
      r#"{"root":"/","dir":"/home/u","base":"file.txt","ext":".txt","name":"file"}"#,
      "/x/f.js",
      "true",
      "true",
      "/",
    ],
    "{}",
    got.body
  );
}

/// `node:util`: format, inspect, promisify, callbackify, inherits, types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_util_formats_and_promisifies() {
  let f = Fixture::new();
  f.file(
    "u.js",
    r#"
import util, { format, promisify, callbackify, inherits, types, inspect } from "node:util";
export default { async fetch() {
  const out = [format("%s=%d %j", "n", 42, { a: 1 }), inspect({ a: [1, 2] })];
  const later = (x, cb) => setTimeout(() => cb(null, x * 2), 1);
  out.push(String(await promisify(later)(21)));
  const fail = (cb) => cb(new RangeError("no"));
  try { await promisify(fail)(); } catch (e) { out.push(e.name); }
  const cbd = await new Promise((r) => callbackify(async (x) => x + 1)(1, (err, v) => r(`${err} ${v}`)));
  out.push(cbd);
  function A() {} function B() {} inherits(B, A);
  out.push(String(new B() instanceof A), String(types.isDate(new Date())), String(types.isPromise(Promise.resolve())));
  out.push(String(util.TextEncoder === TextEncoder));
  return new Response(out.join("|"));
} };
"#,
  );
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"u\"\nmain = \"u.js\"\nroutes = [\"u.test\"]\ncompatibility_flags = [\"nodejs_compat\"]\n",
  );
  let got = H1::connect(e.http_addr().unwrap()).await.get("u.test", "/").await;
  assert_eq!(
    got.body.split('|').collect::<Vec<_>>(),
    [
      "n=42 {\"a\":1}",
      "{ a: [ 1, 2 ] }",
      "42",
      "RangeError",
      "null 2",
      "true",
      "true",
      "true",
      "true"
    ],
    "{}",
    got.body
  );
}
