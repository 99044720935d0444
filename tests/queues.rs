//! Queues: a producer binding (`send`, `sendBatch`, delays, Cloudflare's
//! limits) and a `queue(batch, env, ctx)` consumer fed by the node, with
//! ack/retry per message and per batch, retries then the dead-letter
//! queue, and messages kept across a restart.

use std::time::Duration;

use serde_json::json;

use crate::support::{body, capture_logs, collect, Fixture, H1};

/// Sends what `/send` is told to; its `queue()` records every delivery in
/// D1 and acks, retries or throws as the message's body says; `/` lists
/// the deliveries.
const APP: &str = r#"
let ready;
const table = (env) => ready ??= env.DB.exec("CREATE TABLE IF NOT EXISTS got (queue TEXT, id TEXT, body TEXT, attempts INTEGER, kind TEXT, sent INTEGER, at INTEGER, size INTEGER)");
const describe = (b) => b instanceof ArrayBuffer ? `bytes:${new Uint8Array(b).join(",")}`
  : b instanceof Map ? `map:${[...b].join(";")}` : JSON.stringify(b);
export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    try {
      if (url.pathname === "/send") {
        const { body, options } = await req.json();
        await env.JOBS.send(body, options);
        return new Response("sent");
      }
      if (url.pathname === "/v8") {
        await env.JOBS.send(new Map([["when", new Date(5)], ["n", 7n]]));
        await env.JOBS.send(new Uint8Array([1, 2, 3]), { contentType: "bytes" });
        return new Response("sent");
      }
      if (url.pathname === "/batch") {
        const { messages, options } = await req.json();
        await env.JOBS.sendBatch(messages, options);
        return new Response("sent");
      }
      if (url.pathname === "/big") {
        const n = Number(url.searchParams.get("n"));
        await env.JOBS.send("x".repeat(n), { contentType: "text" });
        return new Response("sent");
      }
      if (url.pathname === "/many") {
        await env.JOBS.sendBatch(Array.from({ length: 101 }, (_, i) => ({ body: i })));
        return new Response("sent");
      }
    } catch (e) {
      return new Response(`${e.name}: ${e.message}`, { status: 400 });
    }
    await table(env);
    const { results } = await env.DB.prepare("SELECT * FROM got ORDER BY rowid").all();
    return Response.json(results);
  },
  async queue(batch, env, ctx) {
    await table(env);
    const row = env.DB.prepare("INSERT INTO got VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    for (const m of batch.messages) {
      const kind = m.body instanceof Map ? `${m.body.get("when") instanceof Date}:${typeof m.body.get("n")}` : typeof m.body;
      await row.bind(batch.queue, m.id, describe(m.body), m.attempts, kind, m.timestamp.getTime(), Date.now(), batch.messages.length).run();
    }
    if (batch.queue === "dead") return;
    for (const m of batch.messages) {
      if (m.body?.retry) m.retry(m.body.delay === undefined ? undefined : { delaySeconds: m.body.delay });
      else if (!m.body?.throw) m.ack();
    }
    if (batch.messages.some((m) => m.body?.throw)) throw new Error("consumer failed on purpose");
  },
};
"#;

const PRODUCER: &str = "queues.producers = [{ binding = \"JOBS\", queue = \"jobs\" }]\n";
const CONSUMERS: &str = "[[worker.queues.consumers]]\nqueue = \"jobs\"\nmax_batch_size = 4\nmax_batch_timeout = 0\n\
  max_retries = 2\ndead_letter_queue = \"dead\"\n\
  [[worker.queues.consumers]]\nqueue = \"dead\"\nmax_batch_timeout = 0\n";

fn toml(consume: bool) -> String {
  format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[storage]\ndir = \"state\"\n\
     [[worker]]\nname = \"app\"\nmain = \"app.js\"\nroutes = [\"app.test\"]\n\
     d1 = [{{ binding = \"DB\", database = \"got\" }}]\n{PRODUCER}{}",
    if consume { CONSUMERS } else { "" }
  )
}

fn start(f: &Fixture, toml: &str) -> edge::Engine {
  capture_logs();
  let config = f.config(toml).unwrap_or_else(|e| panic!("config: {e}"));
  edge::Engine::builder(config).bind_listeners().unwrap().start().unwrap()
}

async fn post(e: &edge::Engine, path: &str, json: serde_json::Value) -> (u16, String) {
  let req = http::Request::post(path)
    .header("host", "app.test")
    .header("content-type", "application/json")
    .body(body(json.to_string()))
    .unwrap();
  let got = collect(H1::connect(e.http_addr().unwrap()).await.send(req).await).await;
  (got.status, got.body)
}

async fn send(e: &edge::Engine, body: serde_json::Value, options: serde_json::Value) {
  let (status, text) = post(e, "/send", serde_json::json!({ "body": body, "options": options })).await;
  assert_eq!((status, text.as_str()), (200, "sent"));
}

async fn deliveries(e: &edge::Engine) -> Vec<serde_json::Value> {
  let got = H1::connect(e.http_addr().unwrap()).await.get("app.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  serde_json::from_str(&got.body).unwrap()
}

/// Waits until `done` holds of the deliveries recorded (or fails, naming them).
async fn until(e: &edge::Engine, what: &str, done: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
  for _ in 0..300 {
    let rows = deliveries(e).await;
    if done(&rows) {
      return rows;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
  panic!("{what}: {:#?}", deliveries(e).await);
}

fn of<'a>(rows: &'a [serde_json::Value], body: &str) -> Vec<&'a serde_json::Value> {
  rows.iter().filter(|r| r["body"] == body).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_delivered_acked_retried_and_dead_lettered() {
  let f = Fixture::new();
  f.file("app.js", APP);
  let e = start(&f, &toml(true));
  send(&e, json!({"n": 1}), json!({"contentType": "json"})).await;
  send(&e, json!("hello"), json!({"contentType": "text"})).await;
  let (status, _) = post(&e, "/v8", json!({})).await;
  assert_eq!(status, 200);
  // Retried (by retry() and by a throw) past max_retries = 2: three
  // deliveries each, then the dead-letter queue.
  send(&e, json!({"retry": true}), json!({})).await;
  send(&e, json!({"throw": true}), json!({})).await;
  let rows = until(&e, "retries end in the dead-letter queue", |rows| {
    rows.iter().filter(|r| r["queue"] == "dead").count() >= 2
  })
  .await;
  let one = of(&rows, r#"{"n":1}"#);
  assert_eq!(one.len(), 1, "acked: delivered once: {rows:#?}");
  assert_eq!(
    (one[0]["attempts"].as_i64(), one[0]["kind"].as_str()),
    (Some(1), Some("object"))
  );
  assert_eq!(one[0]["id"].as_str().map(str::len), Some(32));
  assert_eq!(of(&rows, r#""hello""#)[0]["kind"], "string");
  let v8 = rows
    .iter()
    .find(|r| r["body"].as_str().is_some_and(|b| b.starts_with("map:")))
    .unwrap();
  assert_eq!(v8["kind"], "true:bigint", "structured clone keeps Map, Date and BigInt");
  assert_eq!(of(&rows, "bytes:1,2,3").len(), 1, "bytes arrive as an ArrayBuffer");
  for body in [r#"{"retry":true}"#, r#"{"throw":true}"#] {
    let tries: Vec<_> = of(&rows, body)
      .iter()
      .filter(|r| r["queue"] == "jobs")
      .map(|r| r["attempts"].as_i64().unwrap())
      .collect();
    assert_eq!(tries, [1, 2, 3], "{body}: {rows:#?}");
    let dead: Vec<_> = of(&rows, body).into_iter().filter(|r| r["queue"] == "dead").collect();
    assert_eq!(dead.len(), 1, "{body}");
    assert_eq!(dead[0]["attempts"], 1, "a new message in the dead-letter queue");
  }
  // A message acked in the batch of one that threw stays acked.
  assert!(rows.iter().all(|r| r["size"].as_i64().unwrap() <= 4), "max_batch_size");

  // A delay: delivered no sooner than it says.
  send(&e, json!("later"), json!({"contentType": "text", "delaySeconds": 1})).await;
  let rows = until(&e, "a delayed message", |rows| !of(rows, r#""later""#).is_empty()).await;
  let later = of(&rows, r#""later""#)[0];
  assert!(
    later["at"].as_i64().unwrap() - later["sent"].as_i64().unwrap() >= 1000,
    "{later}"
  );
  // A retry with its own delay.
  send(&e, json!({"retry": true, "delay": 1}), json!({"contentType": "json"})).await;
  let rows = until(&e, "a retry with a delay", |rows| {
    of(rows, r#"{"retry":true,"delay":1}"#).len() >= 2
  })
  .await;
  let tries = of(&rows, r#"{"retry":true,"delay":1}"#);
  assert!(tries[1]["at"].as_i64().unwrap() - tries[0]["at"].as_i64().unwrap() >= 1000);

  let stats = e.stats_detail().worker("app");
  assert!(stats.queue_dead.get() >= 2 && stats.queue_retried.get() >= 4);
  assert!(stats.queue_failed.get() >= 3, "each throw is a failed batch");
  let metrics = e.metrics_text();
  assert!(metrics.contains("edge_worker_queue_messages_total{worker=\"app\"}"));
  assert!(metrics.contains("edge_worker_queue_dead_total{worker=\"app\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_past_the_limits_are_refused_whole() {
  let f = Fixture::new();
  f.file("app.js", APP);
  let e = start(&f, &toml(false));
  let cases = [
    (
      "/big?n=128001",
      json!({}),
      "message length of 128001 bytes exceeds limit of 128000",
    ),
    ("/many", json!({}), "exceeds limit of 100"),
    (
      "/batch",
      json!({"messages": [{"body": "a".repeat(100_000), "contentType": "text"}, {"body": "b".repeat(100_000), "contentType": "text"}, {"body": "c".repeat(100_000), "contentType": "text"}]}),
      "batch size of 300000 bytes exceeds limit of 256000",
    ),
    (
      "/send",
      json!({"body": 1, "options": {"delaySeconds": 43201}}),
      "delaySeconds must be an integer from 0 to 43200",
    ),
    (
      "/send",
      json!({"body": 1, "options": {"delaySeconds": 0.5}}),
      "delaySeconds must be an integer",
    ),
    (
      "/send",
      json!({"body": 1, "options": {"contentType": "xml"}}),
      "unknown contentType",
    ),
    (
      "/send",
      json!({"body": 1, "options": {"contentType": "text"}}),
      "needs a string body",
    ),
  ];
  for (path, body, message) in cases {
    let (status, text) = post(&e, path, body).await;
    assert_eq!(status, 400, "{path}: {text}");
    assert!(text.contains(message), "{path}: {text:?} lacks {message:?}");
  }
  let (status, _) = post(&e, "/big?n=128000", json!({})).await;
  assert_eq!(status, 200, "the limit itself is allowed");
  let queue = edge_storage::Storage::at(&f.path("state")).queue("jobs").unwrap();
  assert_eq!(queue.depth().unwrap(), 1, "nothing of a refused send was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_messages_wait_for_a_consumer_across_a_restart() {
  let f = Fixture::new();
  f.file("app.js", APP);
  let e = start(&f, &toml(false));
  let (status, text) = post(
    &e,
    "/batch",
    json!({"messages": [{"body": {"k": 1}}, {"body": {"k": 2}}, {"body": {"k": 3}, "delaySeconds": 1}], "options": {}}),
  )
  .await;
  assert_eq!((status, text.as_str()), (200, "sent"));
  e.shutdown();
  let e = start(&f, &toml(true));
  let rows = until(&e, "messages sent before the restart", |rows| rows.len() >= 3).await;
  let mut bodies: Vec<_> = rows.iter().map(|r| r["body"].as_str().unwrap().to_string()).collect();
  bodies.sort();
  assert_eq!(bodies, [r#"{"k":1}"#, r#"{"k":2}"#, r#"{"k":3}"#]);
  assert!(rows.iter().all(|r| r["attempts"] == 1 && r["queue"] == "jobs"));
}

#[test]
fn bad_queue_settings_are_refused_with_the_config() {
  let f = Fixture::new();
  f.file("app.js", APP);
  let base =
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"app\"\nmain = \"app.js\"\nvars = { JOBS = \"x\" }\n";
  for (queues, message) in [
    (
      "[[worker.queues.consumers]]\nqueue = \"q\"\nmax_batch_size = 0\n",
      "max_batch_size 0",
    ),
    (
      "[[worker.queues.consumers]]\nqueue = \"q\"\nmax_batch_size = 101\n",
      "max_batch_size 101",
    ),
    (
      "[[worker.queues.consumers]]\nqueue = \"q\"\nmax_batch_timeout = 61\n",
      "max_batch_timeout",
    ),
    (
      "[[worker.queues.consumers]]\nqueue = \"q\"\ndead_letter_queue = \"q\"\n",
      "its own dead_letter_queue",
    ),
    ("[[worker.queues.consumers]]\nqueue = \"../q\"\n", "letters, digits"),
    (
      "[[worker.queues.consumers]]\nqueue = \"q\"\n[[worker.queues.consumers]]\nqueue = \"q\"\n",
      "consumed twice",
    ),
    (
      "[[worker.queues.producers]]\nbinding = \"JOBS\"\nqueue = \"q\"\n",
      "bound twice",
    ),
    (
      "[[worker.queues.consumers]]\nqueue = \"q\"\nmax_retry = 1\n",
      "unknown field",
    ),
  ] {
    let err = f
      .config(&format!("{base}{queues}"))
      .err()
      .map(|e| e.to_string())
      .unwrap_or_default();
    assert!(err.contains(message), "{queues}: {err:?} lacks {message:?}");
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_needs_a_queue_handler_and_a_limit_hit_retries_the_batch() {
  let f = Fixture::new();
  f.file(
    "fetch_only.js",
    "export default { fetch() { return new Response('ok'); } };",
  );
  let consumer = "[listen]\nhttp = \"127.0.0.1:0\"\n[storage]\ndir = \"state\"\n[[worker]]\nname = \"c\"\nmain = \"fetch_only.js\"\n\
    [[worker.queues.consumers]]\nqueue = \"jobs\"\n";
  let config = f.config(consumer).unwrap();
  let err = edge::Engine::builder(config)
    .bind_listeners()
    .unwrap()
    .start()
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
  assert!(err.contains("has no queue handler"), "{err}");

  // queue() spins past its CPU limit on its first delivery only: the
  // batch comes again, and the isolate's end lost nothing.
  f.file(
    "spin.js",
    r#"export default {
      async queue(batch, env) {
        const seen = await env.SEEN.get(batch.messages[0].id);
        await env.SEEN.put(batch.messages[0].id, String(batch.messages[0].attempts));
        if (seen === null) for (;;) {}
      },
      async fetch(req, env) {
        if (new URL(req.url).pathname === "/send") { await env.JOBS.send({ n: 1 }); return new Response("sent"); }
        const { keys } = await env.SEEN.list();
        return Response.json(await Promise.all(keys.map((k) => env.SEEN.get(k.name))));
      },
    };"#,
  );
  let toml =
    "[listen]\nhttp = \"127.0.0.1:0\"\n[storage]\ndir = \"state\"\n[[worker]]\nname = \"spin\"\nmain = \"spin.js\"\n\
    routes = [\"spin.test\"]\nlimits = { cpu_ms = 50 }\nkv = [{ binding = \"SEEN\" }]\n\
    queues.producers = [{ binding = \"JOBS\", queue = \"spins\" }]\n\
    [[worker.queues.consumers]]\nqueue = \"spins\"\nmax_batch_timeout = 0\n";
  let e = start(&f, toml);
  let addr = e.http_addr().unwrap();
  assert_eq!(H1::connect(addr).await.get("spin.test", "/send").await.body, "sent");
  for _ in 0..300 {
    let got = H1::connect(addr).await.get("spin.test", "/").await;
    if got.body == r#"["2"]"# {
      let stats = e.stats_detail().worker("spin");
      assert_eq!(stats.queue_failed.get(), 1);
      assert_eq!(stats.queue_delivered.get(), 2);
      return;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
  panic!(
    "the batch was not delivered again: {}",
    H1::connect(addr).await.get("spin.test", "/").await.body
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_worker_does_jobs_and_dead_letters_failures() {
  let f = Fixture::new();
  let main = crate::support::examples_dir().join("queue/index.js");
  let toml = format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[storage]\ndir = \"state\"\n[[worker]]\nname = \"queue\"\nmain = \"{}\"\n\
     routes = [\"queue.test\"]\nkv = [{{ binding = \"DONE\", namespace = \"done\" }}]\n\
     queues.producers = [{{ binding = \"JOBS\", queue = \"jobs\" }}]\n\
     [[worker.queues.consumers]]\nqueue = \"jobs\"\nmax_batch_timeout = 0\nmax_retries = 1\ndead_letter_queue = \"jobs-dead\"\n\
     [[worker.queues.consumers]]\nqueue = \"jobs-dead\"\nmax_batch_timeout = 0\n",
    main.display()
  );
  let e = start(&f, &toml);
  for job in [json!({"n": 1}), json!({"n": 2, "fail": true})] {
    let req = http::Request::post("/jobs")
      .header("host", "queue.test")
      .body(body(job.to_string()))
      .unwrap();
    let got = collect(H1::connect(e.http_addr().unwrap()).await.send(req).await).await;
    assert_eq!(got.status, 202, "{}", got.body);
  }
  for _ in 0..300 {
    let got = H1::connect(e.http_addr().unwrap()).await.get("queue.test", "/").await;
    let done: Vec<serde_json::Value> = serde_json::from_str(&got.body).unwrap();
    if done.len() == 2 {
      let by_queue = |q: &str| {
        done
          .iter()
          .find(|d| d["key"].as_str().unwrap().starts_with(&format!("{q}:")))
          .cloned()
      };
      assert_eq!(by_queue("jobs").unwrap()["job"], json!({"n": 1}));
      let dead = by_queue("jobs-dead").unwrap();
      assert_eq!(dead["job"], json!({"n": 2, "fail": true}));
      return;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
  panic!("jobs not done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_carry_queues() {
  use crate::support::{admin, upload, TOKEN};
  let f = Fixture::new();
  f.file("admin.token", format!("{TOKEN}\n"));
  let t = "[listen]\nhttp = \"127.0.0.1:0\"\n[storage]\ndir = \"state\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n";
  let e = start(&f, t);
  let meta = r#"{"main_module":"app.js","routes":["app.test"],"d1":[{"binding":"DB","database":"got"}],
    "queues":{"producers":[{"binding":"JOBS","queue":"jobs"}],"consumers":[{"queue":"jobs","max_batch_timeout":0}]}}"#;
  let put = admin(
    e.admin_addr().unwrap(),
    "PUT",
    "/workers/app",
    Some(TOKEN),
    Some(upload(meta, &[("app.js", APP.as_bytes())])),
  )
  .await;
  assert_eq!(put.status, 200, "{}", put.body);
  send(&e, json!("uploaded"), json!({"contentType": "text"})).await;
  until(&e, "a message to an uploaded consumer", |rows| {
    !of(rows, r#""uploaded""#).is_empty()
  })
  .await;
  for bad in [
    r#"{"main_module":"app.js","queues":{"consumers":[{"queue":"jobs","max_batch_size":500}]}}"#,
    r#"{"main_module":"fetch.js","queues":{"consumers":[{"queue":"jobs"}]}}"#,
  ] {
    let refused = admin(
      e.admin_addr().unwrap(),
      "PUT",
      "/workers/bad",
      Some(TOKEN),
      Some(upload(
        bad,
        &[
          ("app.js", APP.as_bytes()),
          ("fetch.js", b"export default { fetch() {} };"),
        ],
      )),
    )
    .await;
    assert_eq!(refused.status, 400, "{bad}: {}", refused.body);
  }
}
