//! Cron triggers: `scheduled(controller, env, ctx)` (and the "scheduled"
//! event) called at each matching minute on a sped-up clock, under the
//! worker's limits, counted in its metrics; once per node when two engines
//! share a storage folder; `/__scheduled` in development; bad crons refused.

use std::time::Duration;

use crate::support::{capture_logs, Fixture, H1};

/// Counts its runs in D1 (one row per run: cron, minute), some of them in
/// `waitUntil` work; answers the rows.
const RECORDER: &str = r#"
let ready;
const table = (env) => ready ??= env.DB.exec("CREATE TABLE IF NOT EXISTS runs (cron TEXT, at INTEGER, how TEXT)");
export default {
  async scheduled(controller, env, ctx) {
    await table(env);
    const row = env.DB.prepare("INSERT INTO runs VALUES (?, ?, ?)");
    if (controller.cron === "*/2 * * * *") {
      ctx.waitUntil(row.bind(controller.cron, controller.scheduledTime, "waitUntil").run());
    } else {
      controller.noRetry();
      await row.bind(controller.cron, controller.scheduledTime, typeof controller.scheduledTime).run();
    }
  },
  async fetch(req, env) {
    await table(env);
    const { results } = await env.DB.prepare("SELECT cron, at, how FROM runs ORDER BY at, cron").all();
    return Response.json(results);
  },
};
"#;

fn toml(workers: &str) -> String {
  format!("[listen]\nhttp = \"127.0.0.1:0\"\n[storage]\ndir = \"state\"\n{workers}")
}

const RECORDED: &str = "[[worker]]\nname = \"rec\"\nmain = \"rec.js\"\nroutes = [\"rec.test\"]\n\
  d1 = [{ binding = \"DB\", database = \"runs\" }]\ntriggers = { crons = [\"* * * * *\", \"*/2 * * * *\"] }\n";

fn start(f: &Fixture, toml: &str, clock: edge::CronClock) -> edge::Engine {
  capture_logs();
  let config = f.config(toml).unwrap_or_else(|e| panic!("config: {e}"));
  edge::Engine::builder(config)
    .cron_clock(clock)
    .bind_listeners()
    .unwrap()
    .start()
    .unwrap()
}

async fn runs(e: &edge::Engine) -> Vec<serde_json::Value> {
  let got = H1::connect(e.http_addr().unwrap()).await.get("rec.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  serde_json::from_str::<Vec<serde_json::Value>>(&got.body).unwrap()
}

/// Waits (real time) until `e` has recorded at least `n` runs.
async fn until_runs(e: &edge::Engine, n: usize) -> Vec<serde_json::Value> {
  for _ in 0..200 {
    let r = runs(e).await;
    if r.len() >= n {
      return r;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
  panic!("fewer than {n} runs: {:?}", runs(e).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crons_call_scheduled_at_each_matching_minute() {
  let f = Fixture::new();
  f.file("rec.js", RECORDER);
  // A minute every 100 ms.
  let e = start(&f, &toml(RECORDED), edge::CronClock::sped_up(600.0));
  let rows = until_runs(&e, 12).await;
  let every: Vec<i64> = rows
    .iter()
    .filter(|r| r["cron"] == "* * * * *")
    .map(|r| r["at"].as_i64().unwrap())
    .collect();
  let second: Vec<i64> = rows
    .iter()
    .filter(|r| r["cron"] == "*/2 * * * *")
    .map(|r| r["at"].as_i64().unwrap())
    .collect();
  assert!(every.len() >= 6 && !second.is_empty(), "{rows:?}");
  assert!(
    every.iter().all(|t| t % 60_000 == 0),
    "scheduledTime is the minute: {every:?}"
  );
  assert!(
    every.windows(2).all(|w| w[1] - w[0] == 60_000),
    "one run a minute: {every:?}"
  );
  assert!(second.iter().all(|t| t % 120_000 == 0), "even minutes only: {second:?}");
  assert!(
    rows.iter().any(|r| r["how"] == "waitUntil"),
    "waitUntil work of a run is done"
  );
  assert!(rows
    .iter()
    .filter(|r| r["cron"] == "* * * * *")
    .all(|r| r["how"] == "number"));
  let stats = e.stats_detail().worker("rec");
  assert!(stats.scheduled.get() >= 6);
  assert_eq!(stats.scheduled_failed.get(), 0);
  assert!(e.metrics_text().contains("edge_worker_scheduled_total{worker=\"rec\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_of_a_node_fire_each_run_once() {
  let f = Fixture::new();
  f.file("rec.js", RECORDER);
  let clock = edge::CronClock::sped_up(600.0);
  // Two engines on one storage folder, as the supervisor's children are.
  let a = start(&f, &toml(RECORDED), clock);
  let b = start(&f, &toml(RECORDED), clock);
  let rows = until_runs(&a, 16).await;
  let mut seen = std::collections::HashSet::new();
  for r in &rows {
    assert!(
      seen.insert((r["cron"].to_string(), r["at"].as_i64())),
      "fired twice: {r} in {rows:?}"
    );
  }
  drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_only_workers_failures_and_service_worker_syntax() {
  let f = Fixture::new();
  f.file(
    "only.js",
    "export default { async scheduled(c, env) { await env.KV.put('ran', c.cron); } }",
  );
  f.file(
    "sw.js",
    "addEventListener('scheduled', (e) => e.waitUntil(KV.put('sw', e.cron + ' ' + (e.scheduledTime % 60000))));\n\
     addEventListener('fetch', (e) => e.respondWith(KV.get('sw').then((v) => new Response(String(v)))));",
  );
  f.file(
    "throws.js",
    "export default { scheduled() { throw new Error('cron broke'); }, fetch() { return new Response('ok'); } }",
  );
  f.file(
    "read.js",
    "export default { async fetch(r, env) { return new Response(String(await env.KV.get('ran'))); } }",
  );
  let workers = "[[worker]]\nname = \"only\"\nmain = \"only.js\"\nroutes = [\"only.test\"]\nkv = [{ binding = \"KV\", namespace = \"k\" }]\ntriggers = { crons = [\"* * * * *\"] }\n\
     [[worker]]\nname = \"sw\"\nmain = \"sw.js\"\nroutes = [\"sw.test\"]\nkv = [{ binding = \"KV\", namespace = \"k\" }]\ntriggers = { crons = [\"* * * * *\"] }\n\
     [[worker]]\nname = \"throws\"\nmain = \"throws.js\"\nroutes = [\"throws.test\"]\ntriggers = { crons = [\"* * * * *\"] }\n\
     [[worker]]\nname = \"read\"\nmain = \"read.js\"\nroutes = [\"read.test\"]\nkv = [{ binding = \"KV\", namespace = \"k\" }]\n";
  let e = start(&f, &toml(workers), edge::CronClock::sped_up(600.0));
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let mut ok = false;
  for _ in 0..100 {
    let ran = c.get("read.test", "/").await.body;
    let sw = c.get("sw.test", "/").await.body;
    if ran == "* * * * *" && sw == "* * * * * 0" && e.stats_detail().worker("throws").scheduled_failed.get() > 0 {
      ok = true;
      break;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
  assert!(
    ok,
    "runs: {:?}",
    (c.get("read.test", "/").await.body, c.get("sw.test", "/").await.body)
  );
  let only = c.get("only.test", "/").await;
  assert_eq!(only.status, 500);
  assert!(only.body.contains("no fetch handler"), "{}", only.body);
  assert_eq!(
    c.get("throws.test", "/").await.body,
    "ok",
    "a failing cron does not touch fetch"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_test_scheduled_runs_scheduled_on_request() {
  let f = Fixture::new();
  f.file("rec.js", RECORDER);
  capture_logs();
  let mut config = f
    .config(&toml(
      &RECORDED.replace("triggers = { crons = [\"* * * * *\", \"*/2 * * * *\"] }\n", ""),
    ))
    .unwrap();
  config.test_scheduled = true;
  let e = edge::Engine::start(config).unwrap();
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("rec.test", "/__scheduled?cron=5+4+*+*+*").await;
  assert_eq!(got.status, 200, "{}", got.body);
  let rows = runs(&e).await;
  assert_eq!(rows.len(), 1, "{rows:?}");
  assert_eq!(rows[0]["cron"], "5 4 * * *");
  // Without the flag the path is the worker's own: fetch() answers it.
  let f2 = Fixture::new();
  f2.file("rec.js", RECORDER);
  let plain = f2.start(&toml(
    &RECORDED.replace("triggers = { crons = [\"* * * * *\", \"*/2 * * * *\"] }\n", ""),
  ));
  let got = H1::connect(plain.http_addr().unwrap())
    .await
    .get("rec.test", "/__scheduled?cron=5+4+*+*+*")
    .await;
  assert_eq!(
    (got.status, got.body.as_str()),
    (200, "[]"),
    "a client cannot run scheduled()"
  );
}

#[test]
fn bad_crons_are_refused_with_the_config() {
  let f = Fixture::new();
  f.file("rec.js", RECORDER);
  for (cron, want) in [
    ("* * * *", "five fields"),
    ("61 * * * *", "61 * * * *"),
    ("* * * * * *", "five fields"),
  ] {
    let t = toml(&format!(
      "[[worker]]\nname = \"w\"\nmain = \"rec.js\"\ntriggers = {{ crons = [\"{cron}\"] }}\n"
    ));
    let e = f.config(&t).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("triggers") && e.contains(want), "{cron}: {e}");
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_carry_triggers() {
  use crate::support::{admin, upload, TOKEN};
  let f = Fixture::new();
  f.file("admin.token", format!("{TOKEN}\n"));
  let t = "[listen]\nhttp = \"127.0.0.1:0\"\n[storage]\ndir = \"state\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n";
  let e = start(&f, t, edge::CronClock::sped_up(600.0));
  let meta = r#"{"main_module":"index.js","routes":["rec.test"],"d1":[{"binding":"DB","database":"runs"}],"triggers":{"crons":["*/3 * * * *"]}}"#;
  let put = admin(
    e.admin_addr().unwrap(),
    "PUT",
    "/workers/rec",
    Some(TOKEN),
    Some(upload(meta, &[("index.js", RECORDER.as_bytes())])),
  )
  .await;
  assert_eq!(put.status, 200, "{}", put.body);
  let rows = until_runs(&e, 3).await;
  assert!(
    rows
      .iter()
      .all(|r| r["cron"] == "*/3 * * * *" && r["at"].as_i64().unwrap() % 180_000 == 0),
    "{rows:?}"
  );
  let bad = r#"{"main_module":"index.js","triggers":{"crons":["nope"]}}"#;
  let refused = admin(
    e.admin_addr().unwrap(),
    "PUT",
    "/workers/bad",
    Some(TOKEN),
    Some(upload(bad, &[("index.js", RECORDER.as_bytes())])),
  )
  .await;
  assert_eq!(refused.status, 400, "{}", refused.body);
}
