//! Several isolates on one executor thread, their work interleaved: what
//! a deno ext crate keeps per thread must still belong to the right one.

use crate::support::{get, Fixture};

/// Keys made before and after awaits (timers, a digest), so that the
/// three workers' requests interleave on the one thread.
const CRYPTO_WORKER: &str = r#"
// Top-level await: keys are made while isolates are being bound, across
// turns where the other workers' isolates run.
await new Promise((r) => setTimeout(r, 5));
const START_KEY = await crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
await new Promise((r) => setTimeout(r, 5));
export default {
  async fetch(request, env) {
    const raw = new TextEncoder().encode(env.NAME.padEnd(32, "k"));
    const hmac = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    await new Promise((r) => setTimeout(r, 5));
    const ec = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
    await crypto.subtle.digest("SHA-256", raw);
    const aes = await crypto.subtle.generateKey({ name: "AES-GCM", length: 128 }, true, ["encrypt", "decrypt"]);
    const data = new TextEncoder().encode("payload");
    const mac = await crypto.subtle.sign("HMAC", hmac, data);
    const ok = await crypto.subtle.verify("HMAC", hmac, mac, data);
    const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, ec.privateKey, data);
    const iv = new Uint8Array(12);
    const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, aes, data);
    const keys = [START_KEY, hmac, ec.privateKey, ec.publicKey, aes].every((k) => k instanceof CryptoKey);
    const stream = new Response("s".repeat(100)).body.pipeThrough(new CompressionStream("gzip"));
    const gz = new Uint8Array(await new Response(stream).arrayBuffer());
    const up = await (await fetch(`http://${env.UPSTREAM}/${env.NAME}`)).text();
    const head = `${env.NAME} ${ok} ${keys} ${sig.byteLength > 0} ${ct.byteLength} ${gz[0]} [${up}]`;
    // A streamed body, written over several turns after the response.
    let n = 0;
    const body = new ReadableStream({
      async pull(c) {
        await new Promise((r) => setTimeout(r, 2));
        if (n++ === 3) return c.close();
        c.enqueue(new TextEncoder().encode(n === 1 ? head : "."));
      },
    });
    return new Response(body);
  },
};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_one_thread_make_crypto_keys_interleaved() {
  // Keys, compression, timers, a fetch() and a streamed body in each,
  // several requests of each worker in its isolate at once.
  let f = Fixture::new();
  f.file("crypto.js", CRYPTO_WORKER);
  let upstream = crate::support::Upstream::start(None).await;
  let mut toml = "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n".to_string();
  for name in ["a", "b", "c"] {
    toml += &format!(
      "[[worker]]\nname = \"{name}\"\nmain = \"crypto.js\"\nroutes = [\"{name}.test\"]\nallow_private_network = true\n[worker.vars]\nNAME = \"{name}\"\nUPSTREAM = \"{}\"\n",
      upstream.addr
    );
  }
  let engine = f.start(&toml);
  let addr = engine.http_addr().unwrap();
  // Rounds of concurrent requests to all three: the first round binds
  // each worker's isolate, later ones run in warm isolates, interleaved.
  for _ in 0..4 {
    let mut tasks = Vec::new();
    for name in ["a", "b", "c", "a", "b", "c", "a", "b", "c"] {
      tasks.push(tokio::spawn(async move {
        (name, get(addr, &format!("{name}.test"), "/").await)
      }));
    }
    for t in tasks {
      let (name, got) = t.await.unwrap();
      assert_eq!(got.status, 200, "{name}: {}", got.body);
      assert_eq!(
        got.body,
        format!("{name} true true true 23 31 [upstream saw /{name} via ]..")
      );
    }
  }
  assert!(engine.stats().live_isolates >= 3, "{:?}", engine.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomics_wait_throws_instead_of_blocking_the_thread() {
  let f = Fixture::new();
  f.file(
    "wait.js",
    "export default { fetch() { try { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20000); return new Response('waited') } catch (e) { return new Response(`${e.name}: ${e.message}`) } } }",
  );
  f.file(
    "hello.js",
    "export default { fetch() { return new Response('hello') } }",
  );
  let engine = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n[[worker]]\nname = \"wait\"\nmain = \"wait.js\"\nroutes = [\"wait.test\"]\n[[worker]]\nname = \"hello\"\nmain = \"hello.js\"\nroutes = [\"hello.test\"]\n",
  );
  let addr = engine.http_addr().unwrap();
  let got = get(addr, "wait.test", "/").await;
  assert_eq!(got.status, 200);
  assert!(got.body.starts_with("TypeError: "), "{}", got.body);
  assert!(got.body.contains("Atomics.wait"), "{}", got.body);
  assert_eq!(get(addr, "hello.test", "/").await.body, "hello");
}
