//! R2 bucket bindings as a worker sees them: every method, conditional
//! reads and writes, ranges, checksums, lists with delimiters and cursors,
//! multipart uploads, kept in a SQLite file per bucket across a restart,
//! each worker reaching only the buckets its config names.

use crate::support::{Fixture, H1};

const R2_API: &str = r#"
const err = async (f) => { try { await f(); return "no error"; } catch (x) { return `${x.constructor.name}: ${x.message}`; } };
const enc = (t) => new TextEncoder().encode(t);
export default { async fetch(req, env) {
  const b = env.FILES;
  const out = [];
  out.push(`tag ${Object.prototype.toString.call(b)} missing ${await b.get("nope")} ${await b.head("nope")}`);
  const put = await b.put("docs/a.txt", "hello world", {
    httpMetadata: { contentType: "text/plain", cacheControl: "max-age=60" },
    customMetadata: { by: "test", n: 1 },
  });
  out.push(`put ${Object.prototype.toString.call(put)} ${put.key} ${put.size} ${put.etag} ${put.httpEtag} ${put.uploaded instanceof Date}`);
  const got = await b.get("docs/a.txt");
  out.push(`get ${Object.prototype.toString.call(got)} ${await got.text()} ${got.httpMetadata.contentType} ${JSON.stringify(got.customMetadata)} ${got.range.offset}+${got.range.length}`);
  const h = new Headers();
  got.writeHttpMetadata(h);
  out.push(`headers ${[...h].map(([k, v]) => k + "=" + v).join(",")}`);
  out.push(`md5 ${new Uint8Array(got.checksums.md5).length}`);
  out.push(`range ${await (await b.get("docs/a.txt", { range: { offset: 6, length: 3 } })).text()}`);
  out.push(`suffix ${await (await b.get("docs/a.txt", { range: { suffix: 5 } })).text()}`);
  out.push(`from ${await (await b.get("docs/a.txt", { range: { offset: 6 } })).text()}`);
  out.push(`header range ${await (await b.get("docs/a.txt", { range: new Headers({ range: "bytes=0-4" }) })).text()}`);
  out.push(await err(() => b.get("docs/a.txt", { range: { offset: 99 } })));
  const miss = await b.get("docs/a.txt", { onlyIf: { etagMatches: "other" } });
  out.push(`precondition ${Object.prototype.toString.call(miss)} ${"body" in miss}`);
  const hit = await b.get("docs/a.txt", { onlyIf: new Headers({ "if-match": put.httpEtag }) });
  out.push(`if-match ${"body" in hit}`);
  const notModified = await b.get("docs/a.txt", { onlyIf: { etagDoesNotMatch: put.etag } });
  out.push(`if-none-match ${"body" in notModified}`);
  out.push(`conditional put ${await b.put("docs/a.txt", "x", { onlyIf: { etagDoesNotMatch: "*" } })}`);
  out.push(`create only ${(await b.put("docs/new.txt", "new", { onlyIf: { etagDoesNotMatch: "*" } }))?.key}`);
  // Bodies as streams, buffers and blobs, big ones in pieces.
  const big = new Uint8Array(3 * 1024 * 1024 + 7).fill(120);
  let sent = 0;
  const stream = new ReadableStream({ pull(c) { if (sent >= big.length) return c.close(); c.enqueue(big.subarray(sent, sent + 100000)); sent += 100000; } });
  const s = await b.put("bin/stream", stream);
  out.push(`stream ${s.size}`);
  const back = new Uint8Array(await (await b.get("bin/stream")).arrayBuffer());
  out.push(`stream back ${back.length} ${back.every((x) => x === 120)}`);
  await b.put("bin/buffer", new Uint8Array([1, 2, 3]).buffer);
  await b.put("bin/view", new DataView(new Uint8Array([9, 8, 7, 6]).buffer, 1, 2));
  await b.put("bin/blob", new Blob(["bl", "ob"]));
  out.push(`bytes ${[...new Uint8Array(await (await b.get("bin/buffer")).arrayBuffer())]} ${[...new Uint8Array(await (await b.get("bin/view")).arrayBuffer())]} ${await (await b.get("bin/blob")).text()}`);
  const body = (await b.get("bin/stream")).body;
  const first = await body.getReader().read();
  out.push(`body stream ${body instanceof ReadableStream} ${first.value.length > 0}`);
  // Checksums.
  out.push(await err(() => b.put("sum", "abc", { md5: "00000000000000000000000000000000" })));
  out.push(`md5 ok ${(await b.put("sum", "abc", { md5: "900150983cd24fb0d6963f7d28e17f72" })).etag}`);
  const sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  out.push(`sha256 ${new Uint8Array((await b.put("sum", "abc", { sha256: sha })).checksums.sha256).length}`);
  out.push(await err(() => b.put("sum", "abd", { sha256: sha })));
  out.push(`after refused ${await (await b.get("sum")).text()}`);
  // Lists.
  for (const k of ["l/a", "l/b/1", "l/b/2", "l/c", "l/d/x"]) await b.put(k, k);
  const p1 = await b.list({ prefix: "l/", delimiter: "/", limit: 3 });
  out.push(`list ${p1.objects.map((o) => o.key)} | ${p1.delimitedPrefixes} | ${p1.truncated} ${typeof p1.cursor}`);
  const p2 = await b.list({ prefix: "l/", delimiter: "/", limit: 3, cursor: p1.cursor });
  out.push(`list 2 ${p2.objects.map((o) => o.key)} | ${p2.delimitedPrefixes} | ${p2.truncated} ${p2.cursor}`);
  const flat = await b.list({ prefix: "l/", startAfter: "l/b/1", include: ["customMetadata"] });
  out.push(`after ${flat.objects.map((o) => o.key)} ${flat.objects[0].httpMetadata} ${JSON.stringify(flat.objects[0].customMetadata)}`);
  out.push(await err(() => b.list({ limit: 1001 })));
  await b.delete("l/a");
  await b.delete(["l/b/1", "l/b/2", "never"]);
  out.push(`deleted ${(await b.list({ prefix: "l/" })).objects.map((o) => o.key)}`);
  // Multipart: a 5 MiB part and a short last one.
  const up = await b.createMultipartUpload("multi", { httpMetadata: { contentType: "application/x-test" } });
  const part1 = await up.uploadPart(1, new Uint8Array(5 * 1024 * 1024).fill(49));
  const part2 = await b.resumeMultipartUpload("multi", up.uploadId).uploadPart(2, "tail");
  out.push(await err(() => up.complete([part2, part1])));
  const done = await up.complete([part1, part2]);
  out.push(`multipart ${done.size} ${done.etag.endsWith("-2")} ${done.httpMetadata.contentType}`);
  out.push(`multipart tail ${await (await b.get("multi", { range: { suffix: 6 } })).text()}`);
  out.push(await err(() => up.uploadPart(3, "late")));
  const aborted = await b.createMultipartUpload("gone");
  await aborted.abort();
  out.push(await err(() => aborted.complete([])));
  out.push(await err(() => b.put("k".repeat(1025), "v")));
  out.push(await err(() => b.put("k", 42)));
  return new Response(out.join("\n"));
} };
"#;

const EXPECTED: &str = r#"tag [object R2Bucket] missing null null
put [object R2Object] docs/a.txt 11 5eb63bbbe01eeed093cb22bb8f5acdc3 "5eb63bbbe01eeed093cb22bb8f5acdc3" true
get [object R2ObjectBody] hello world text/plain {"by":"test","n":"1"} 0+11
headers cache-control=max-age=60,content-type=text/plain
md5 16
range wor
suffix world
from world
header range hello
TypeError: get: The requested range is not satisfiable. (10039)
precondition [object R2Object] false
if-match true
if-none-match false
conditional put null
create only docs/new.txt
stream 3145735
stream back 3145735 true
bytes 1,2,3 8,7 blob
body stream true true
TypeError: put: The Content-MD5 you specified did not match what we received. (10037)
md5 ok 900150983cd24fb0d6963f7d28e17f72
sha256 32
TypeError: put: The SHA-256 checksum you specified did not match what we received. (10037)
after refused abc
list l/a,l/c | l/b/ | true string
list 2  | l/d/ | false undefined
after l/b/2,l/c,l/d/x undefined {}
TypeError: list: MaxKeys params must be positive integer <= 1000. (10022)
deleted l/c,l/d/x
TypeError: complete: The list of parts was not in ascending order. (10048)
multipart 5242884 true application/x-test
multipart tail 11tail
TypeError: uploadPart: The specified multipart upload does not exist. (10024)
TypeError: complete: The specified multipart upload does not exist. (10024)
TypeError: put: The specified object name is not valid: its length is 1025 bytes, at most 1024. (10020)
TypeError: put: expected a string, an ArrayBuffer, a view, a Blob or a ReadableStream"#;

fn config(workers: &str) -> String {
  format!("[listen]\nhttp = \"127.0.0.1:0\"\n[limits]\ncpu_ms = 30000\nwall_ms = 60000\nmemory_mb = 256\n{workers}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_methods_as_on_workers() {
  let f = Fixture::new();
  f.file("w.js", R2_API);
  let e = f.start(&config(
    "[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\nr2 = [{ binding = \"FILES\", bucket_name = \"files\" }]\n",
  ));
  let got = H1::connect(e.http_addr().unwrap()).await.get("w.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  let (want, have): (Vec<&str>, Vec<&str>) = (EXPECTED.lines().collect(), got.body.lines().collect());
  for (i, (w, h)) in want.iter().zip(&have).enumerate() {
    assert_eq!(w, h, "line {}", i + 1);
  }
  assert_eq!(want.len(), have.len(), "{}", got.body);
  assert!(f.path(".edge-state/r2/files.sqlite3").is_file());
}

/// `?put=` under `?key=`, else reads `?key=` (`null` if none).
const RW: &str = r#"
export default { async fetch(req, env) {
  const q = new URL(req.url).searchParams;
  if (q.has("put")) await env.B.put(q.get("key"), q.get("put"));
  const o = await env.B.get(q.get("key"));
  return new Response(o === null ? "null" : await o.text());
} };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_are_the_workers_own_and_survive_a_restart() {
  let f = Fixture::new();
  f.file("rw.js", RW);
  let toml = config(
    "[[worker]]\nname = \"a\"\nmain = \"rw.js\"\nroutes = [\"a.test\"]\nr2 = [{ binding = \"B\", bucket_name = \"bucket-a\" }]\n\
     [[worker]]\nname = \"b\"\nmain = \"rw.js\"\nroutes = [\"b.test\"]\nr2 = [{ binding = \"B\", bucket_name = \"bucket-b\" }]\n\
     [[worker]]\nname = \"none\"\nmain = \"rw.js\"\nroutes = [\"n.test\"]\n",
  );
  {
    let e = f.start(&toml);
    let mut c = H1::connect(e.http_addr().unwrap()).await;
    assert_eq!(c.get("a.test", "/?key=k&put=from-a").await.body, "from-a");
    assert_eq!(c.get("b.test", "/?key=k").await.body, "null", "b's bucket is its own");
    assert_eq!(c.get("n.test", "/?key=k").await.status, 500, "no binding, no env.B");
    e.shutdown();
  }
  let e = f.start(&toml);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  assert_eq!(c.get("a.test", "/?key=k").await.body, "from-a", "kept across a restart");
  // A bad bucket name is refused with the config.
  let bad = f.config(&config(
    "[[worker]]\nname = \"x\"\nmain = \"rw.js\"\nr2 = [{ binding = \"B\", bucket_name = \"../up\" }]\n",
  ));
  assert!(bad.is_err());
}

// Bodies read count in the isolate's memory, and so do pieces on their way
// to the bucket: hoarding reads, or starting many puts of one buffer at
// once, ends the request at its memory limit (the node serves on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_bodies_count_against_the_memory_limit() {
  let f = Fixture::new();
  f.file(
    "w.js",
    r#"
const held = [];
export default { async fetch(req, env) {
  const path = new URL(req.url).pathname;
  if (path === "/put") { await env.B.put("big", new Uint8Array(4 << 20)); return new Response("ok"); }
  if (path === "/hoard") { for (let i = 0; i < 100; i++) held.push(await (await env.B.get("big")).arrayBuffer()); }
  if (path === "/flood") {
    const big = new Uint8Array(4 << 20);
    await Promise.all(Array.from({ length: 100 }, (_, i) => env.B.put("f" + i, big)));
    return new Response("flooded");
  }
  return new Response(`held ${held.length}`);
} };
"#,
  );
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[limits]\ncpu_ms = 30000\nwall_ms = 60000\nmemory_mb = 64\n\
     [[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\nr2 = [{ binding = \"B\" }]\n",
  );
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  assert_eq!(c.get("w.test", "/put").await.body, "ok");
  let got = c.get("w.test", "/hoard").await;
  assert_eq!((got.status, got.limit()), (503, Some("memory")), "{}", got.body);
  let got = c.get("w.test", "/flood").await;
  // 100 puts of one 4 MiB buffer at once: the pieces Rust copies count.
  assert_eq!((got.status, got.limit()), (503, Some("memory")), "{}", got.body);
  let after = H1::connect(e.http_addr().unwrap()).await.get("w.test", "/").await;
  assert_eq!(after.body, "held 0", "a fresh isolate serves the next request");
}
