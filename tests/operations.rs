//! Operations through the admin API: deploys, replacements and removals
//! under load with no failed request, refused uploads, the token, the data
//! directory, metrics and logs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{admin, deploy, get, logs, upload, Fixture, H1, TOKEN};

fn admin_toml(extra: &str) -> String {
  format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n{extra}\n[[worker]]\nname = \"static\"\nmain = \"static.js\"\nroutes = [\"static.test\"]\n"
  )
}

fn fixture() -> Fixture {
  let f = Fixture::new();
  f.file("admin.token", format!("{TOKEN}\n"));
  f.file(
    "static.js",
    "export default { fetch() { return new Response('static') } }",
  );
  f
}

fn version_worker(v: u32) -> String {
  format!("export default {{ async fetch() {{ return new Response('v{v}') }} }}")
}

#[tokio::test]
async fn the_admin_api_wants_its_token_and_only_answers_on_its_own_listener() {
  let f = fixture();
  let engine = f.start(&admin_toml(""));
  let a = engine.admin_addr().unwrap();
  assert_eq!(admin(a, "GET", "/workers", None, None).await.status, 401);
  let wrong = admin(a, "GET", "/workers", Some("test-token-0123456789abcdeX"), None).await;
  assert_eq!(wrong.status, 401);
  assert_eq!(wrong.headers["www-authenticate"], "Bearer");
  assert_eq!(admin(a, "GET", "/metrics", Some("short"), None).await.status, 401);
  let ok = admin(a, "GET", "/workers", Some(TOKEN), None).await;
  assert_eq!(ok.status, 200, "{}", ok.body);
  let list: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
  assert_eq!(list[0]["name"], "static");
  assert_eq!(list[0]["origin"], "config");
  // The public listener routes /metrics like any path: to a worker or 404.
  let public = engine.http_addr().unwrap();
  let mut c = H1::connect(public).await;
  let req = http::Request::get("/metrics")
    .header("host", "admin")
    .header("authorization", format!("Bearer {TOKEN}"))
    .body(crate::support::empty())
    .unwrap();
  let got = crate::support::collect(c.send(req).await).await;
  assert_eq!(got.status, 404);
  assert!(!got.body.contains("edge_up"), "{}", got.body);
  assert_eq!(c.get("static.test", "/metrics").await.body, "static");
}

#[tokio::test]
async fn deploy_replace_and_delete_under_load_fail_no_request() {
  let f = fixture();
  let engine = f.start(&admin_toml("[runtime]\nthreads = 2\n"));
  let (a, public) = (engine.admin_addr().unwrap(), engine.http_addr().unwrap());
  let d = deploy(a, "app", "app.test", &version_worker(1)).await;
  assert_eq!(d.status, 200, "{}", d.body);
  assert_eq!(get(public, "app.test", "/").await.body, "v1");

  // Clients hammer the app (and a worker that is never touched) while it is
  // replaced ten times.
  let stop = Arc::new(AtomicBool::new(false));
  let latest = Arc::new(AtomicUsize::new(1));
  let served = Arc::new(AtomicUsize::new(0));
  let mut clients = Vec::new();
  // Client 0 asks the static worker until the end of the test, through the
  // removal too.
  let stop_bystander = Arc::new(AtomicBool::new(false));
  for i in 0..6 {
    let stop = if i == 0 { stop_bystander.clone() } else { stop.clone() };
    let (latest, served) = (latest.clone(), served.clone());
    clients.push(tokio::spawn(async move {
      let mut c = H1::connect(public).await;
      let mut failures = Vec::new();
      while !stop.load(Ordering::SeqCst) {
        let host = if i == 0 { "static.test" } else { "app.test" };
        // Any version deployed before this request began is fine; older
        // ones are not.
        let floor = latest.load(Ordering::SeqCst);
        let got = c.get(host, "/").await;
        served.fetch_add(1, Ordering::SeqCst);
        let ok = got.status == 200
          && if i == 0 {
            got.body == "static"
          } else {
            got.body[1..].parse::<usize>().is_ok_and(|v| v >= floor)
          };
        if !ok {
          failures.push(format!("{host}: {} {} (deployed: v{floor})", got.status, got.body));
        }
      }
      failures
    }));
  }
  for v in 2..=11 {
    tokio::time::sleep(Duration::from_millis(30)).await;
    let d = deploy(a, "app", "app.test", &version_worker(v)).await;
    assert_eq!(d.status, 200, "{}", d.body);
    latest.store(v as usize, Ordering::SeqCst);
  }
  tokio::time::sleep(Duration::from_millis(50)).await;
  stop.store(true, Ordering::SeqCst);
  let bystander = clients.remove(0);
  for c in clients {
    let failures = c.await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
  }
  assert!(served.load(Ordering::SeqCst) > 100, "load ran");
  assert_eq!(get(public, "app.test", "/").await.body, "v11");
  // Old versions' isolates are gone once idle: at most the new version's
  // and the static worker's remain.
  let info: serde_json::Value =
    serde_json::from_str(&admin(a, "GET", "/workers/app", Some(TOKEN), None).await.body).unwrap();
  assert_eq!(info["origin"], "api");
  assert!(info["isolates"].as_i64().unwrap() <= 2 * 8, "{info}");

  // Removed: its host is no longer served; the other worker still is.
  let del = admin(a, "DELETE", "/workers/app", Some(TOKEN), None).await;
  assert_eq!(del.status, 204, "{}", del.body);
  assert_eq!(get(public, "app.test", "/").await.status, 404);
  assert_eq!(get(public, "static.test", "/").await.body, "static");
  assert_eq!(admin(a, "DELETE", "/workers/app", Some(TOKEN), None).await.status, 404);
  stop_bystander.store(true, Ordering::SeqCst);
  let failures = bystander.await.unwrap();
  assert!(failures.is_empty(), "{failures:?}");
}

#[tokio::test]
async fn a_broken_upload_is_refused_and_the_old_version_keeps_serving() {
  let f = fixture();
  let engine = f.start(&admin_toml(""));
  let (a, public) = (engine.admin_addr().unwrap(), engine.http_addr().unwrap());
  assert_eq!(deploy(a, "app", "app.test", &version_worker(1)).await.status, 200);
  let broken = [
    ("export default { fetch() { return new Response('x') }", "SyntaxError"),
    ("throw new Error('boom at start'); export default {}", "boom at start"),
    ("export default { notFetch() {} }", "fetch"),
    ("import './missing.js'; export default { fetch() {} }", "missing.js"),
    ("while (true) {} export default { fetch() {} }", "cpu limit"),
  ];
  for (source, says) in broken {
    let got = deploy(a, "app", "app.test", source).await;
    assert_eq!(got.status, 400, "{source}: {}", got.body);
    assert!(got.body.contains(says), "{source}: {}", got.body);
    assert_eq!(get(public, "app.test", "/").await.body, "v1", "after {source}");
  }
  // Bad requests, each with its reason.
  let no_meta = upload("{}", &[("index.js", b"export default {}")]);
  let got = admin(a, "PUT", "/workers/app", Some(TOKEN), Some(no_meta)).await;
  assert_eq!(got.status, 400);
  assert!(got.body.contains("main_module"), "{}", got.body);
  let escape = upload(r#"{"main_module":"../x.js"}"#, &[("../x.js", b"export default {}")]);
  let got = admin(a, "PUT", "/workers/app", Some(TOKEN), Some(escape)).await;
  assert_eq!(got.status, 400, "{}", got.body);
  let got = deploy(a, "other", "static.test", &version_worker(1)).await;
  assert_eq!(got.status, 409, "a route of another worker: {}", got.body);
  let got = deploy(a, "static", "x.test", &version_worker(1)).await;
  assert_eq!(got.status, 409, "a config worker: {}", got.body);
  assert_eq!(get(public, "app.test", "/").await.body, "v1");
}

#[tokio::test]
async fn a_multi_module_upload_with_vars_and_limits_runs() {
  let f = fixture();
  let engine = f.start(&admin_toml(""));
  let (a, public) = (engine.admin_addr().unwrap(), engine.http_addr().unwrap());
  let wasm = std::fs::read(crate::support::examples_dir().join("imports/add.wasm")).unwrap();
  let meta =
    r#"{"main_module":"src/index.js","routes":["multi.test"],"vars":{"GREETING":"hi"},"limits":{"cpu_ms":20}}"#;
  let index = br#"import { twice } from './lib/util.js';
import data from './data.json' with { type: 'json' };
import add from './add.wasm';
const { exports } = new WebAssembly.Instance(add);
export default { fetch(req, env) { return new Response(`${env.GREETING} ${twice(data.n)} ${exports.add(2, 3)}`) } }"#;
  let up = upload(
    meta,
    &[
      ("src/index.js", index),
      ("src/lib/util.js", b"export const twice = (x) => x * 2;"),
      ("src/data.json", br#"{"n": 21}"#),
      ("src/add.wasm", &wasm),
    ],
  );
  let got = admin(a, "PUT", "/workers/multi", Some(TOKEN), Some(up)).await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert_eq!(get(public, "multi.test", "/").await.body, "hi 42 5");
  let info: serde_json::Value =
    serde_json::from_str(&admin(a, "GET", "/workers/multi", Some(TOKEN), None).await.body).unwrap();
  assert_eq!(info["limits"]["cpu_ms"], 20);
  assert_eq!(info["vars"][0], "GREETING");
}

#[tokio::test]
async fn deployed_workers_survive_a_restart_through_the_data_dir() {
  let f = fixture();
  let toml = admin_toml("").replace(
    "token_file = \"admin.token\"\n",
    "token_file = \"admin.token\"\ndata_dir = \"data\"\n",
  );
  {
    let engine = f.start(&toml);
    let a = engine.admin_addr().unwrap();
    assert_eq!(deploy(a, "kept", "kept.test", &version_worker(7)).await.status, 200);
    assert_eq!(deploy(a, "gone", "gone.test", &version_worker(8)).await.status, 200);
    assert_eq!(admin(a, "DELETE", "/workers/gone", Some(TOKEN), None).await.status, 204);
    engine.shutdown();
  }
  let engine = f.start(&toml);
  let public = engine.http_addr().unwrap();
  assert_eq!(get(public, "kept.test", "/").await.body, "v7");
  assert_eq!(get(public, "gone.test", "/").await.status, 404);
}

#[tokio::test]
async fn refused_and_deleted_deploys_leave_no_metric_series() {
  let f = fixture();
  let engine = f.start(&admin_toml(""));
  let a = engine.admin_addr().unwrap();
  let series = |name: &'static str| async move {
    let got = admin(a, "GET", "/metrics", Some(TOKEN), None).await;
    let label = format!("worker=\"{name}\"");
    got.body.lines().filter(|l| l.contains(&label)).count()
  };
  // A script that does not compile, and one that throws at the top level.
  assert_eq!(deploy(a, "broken", "broken.test", "export default {").await.status, 400);
  assert_eq!(
    deploy(a, "throws", "throws.test", "throw new Error('no')").await.status,
    400
  );
  assert_eq!(series("broken").await, 0);
  assert_eq!(series("throws").await, 0);
  // A deployed worker has series; once deleted it has none.
  assert_eq!(deploy(a, "kept", "kept.test", &version_worker(1)).await.status, 200);
  assert_eq!(get(engine.http_addr().unwrap(), "kept.test", "/").await.body, "v1");
  assert!(series("kept").await > 0);
  // A refused replacement keeps the running worker and its series.
  assert_eq!(deploy(a, "kept", "kept.test", "export default {").await.status, 400);
  assert!(series("kept").await > 0);
  assert_eq!(get(engine.http_addr().unwrap(), "kept.test", "/").await.body, "v1");
  assert_eq!(admin(a, "DELETE", "/workers/kept", Some(TOKEN), None).await.status, 204);
  assert_eq!(series("kept").await, 0);
}

#[tokio::test]
async fn metrics_parse_and_move_with_requests() {
  let f = fixture();
  f.file("limited.js", "export default { fetch() { for (;;) {} } }");
  let toml = admin_toml("")
    + "[[worker]]\nname = \"spin\"\nmain = \"limited.js\"\nroutes = [\"spin.test\"]\nlimits = { cpu_ms = 5 }\n";
  let engine = f.start(&toml);
  let (a, public) = (engine.admin_addr().unwrap(), engine.http_addr().unwrap());
  let scrape = || async move {
    let got = admin(a, "GET", "/metrics", Some(TOKEN), None).await;
    assert_eq!(got.status, 200);
    assert!(got.headers["content-type"]
      .to_str()
      .unwrap()
      .starts_with("text/plain; version=0.0.4"));
    let lines = got.body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text")
  };
  let value = |s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]| -> f64 {
    s.samples
      .iter()
      .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
      .map(|x| match x.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
      })
      .unwrap_or(0.0)
  };
  let before = scrape().await;
  let mut c = H1::connect(public).await;
  for _ in 0..5 {
    assert_eq!(c.get("static.test", "/").await.status, 200);
  }
  assert_eq!(c.get("spin.test", "/").await.status, 503);
  let after = scrape().await;
  let ok = [("worker", "static"), ("class", "2xx")];
  assert_eq!(
    value(&after, "edge_worker_requests_total", &ok) - value(&before, "edge_worker_requests_total", &ok),
    5.0
  );
  assert_eq!(
    value(
      &after,
      "edge_worker_limit_hits_total",
      &[("worker", "spin"), ("kind", "cpu")]
    ),
    1.0
  );
  assert_eq!(
    value(
      &after,
      "edge_worker_requests_total",
      &[("worker", "spin"), ("class", "5xx")]
    ),
    1.0
  );
  assert!(value(&after, "edge_worker_cold_starts_total", &[("worker", "static")]) >= 1.0);
  assert!(value(&after, "edge_worker_warm_isolates", &[("worker", "static")]) >= 1.0);
  assert!(value(&after, "edge_worker_heap_bytes", &[("worker", "static")]) > 0.0);
  assert!(value(&after, "process_resident_memory_bytes", &[]) > 1e6);
  assert!(value(&after, "edge_open_connections", &[]) >= 1.0);
  let hist = after
    .samples
    .iter()
    .find(|x| x.metric == "edge_worker_request_duration_seconds" && x.labels.get("worker") == Some("static"))
    .expect("latency histogram");
  match &hist.value {
    prometheus_parse::Value::Histogram(buckets) => {
      assert_eq!(buckets.last().unwrap().count, 5.0, "{buckets:?}");
    }
    other => panic!("not a histogram: {other:?}"),
  }
}

#[tokio::test]
async fn console_output_is_limited_in_bytes_and_long_lines_are_cut() {
  let f = fixture();
  // 40 lines of 4 MB each (160 MB), well under the line rate. (Making and
  // cutting them is the worker's CPU: more than the default 50 ms.)
  f.file(
    "loud.js",
    "export default { fetch() { const big = 'x'.repeat(4 << 20); for (let i = 0; i < 40; i++) console.log(i + ':' + big); return new Response('ok') } }",
  );
  let toml = admin_toml("[log]\nconsole_bytes_per_s = 65536\nconsole_line_bytes = 4096\n")
    + "[[worker]]\nname = \"loud\"\nmain = \"loud.js\"\nroutes = [\"loud.test\"]\n[worker.limits]\ncpu_ms = 5000\n";
  let engine = f.start(&toml);
  let public = engine.http_addr().unwrap();
  let started = std::time::Instant::now();
  let got = get(public, "loud.test", "/").await;
  let took = started.elapsed();
  assert_eq!(got.body, "ok");
  let id = got.headers["edge-request-id"].to_str().unwrap().to_string();
  let log = logs();
  let lines: Vec<&str> = log.lines().filter(|l| l.contains(&id) && l.contains(":xxx")).collect();
  // Each line cut to 4 KiB and marked; as many as 64 KiB a second allows
  // (a full bucket, then what refilled while the calls ran).
  assert!(!lines.is_empty(), "{log}");
  for l in &lines {
    assert!(l.len() < 4096 + 200, "a line of {} bytes", l.len());
    assert!(l.contains("[line cut at 4096 bytes]"), "{l}");
  }
  let allowed = 16 + (took.as_secs_f64() * 16.0).ceil() as usize;
  assert!(lines.len() <= allowed, "{} lines of 4 KiB in {took:?}", lines.len());
  let metrics = admin(engine.admin_addr().unwrap(), "GET", "/metrics", Some(TOKEN), None).await;
  assert!(
    metrics
      .body
      .lines()
      .any(|l| l.starts_with("edge_worker_console_dropped_total{worker=\"loud\"}") && !l.ends_with(" 0")),
    "{}",
    metrics.body
  );
}

#[tokio::test]
async fn access_lines_and_rate_limited_console() {
  let f = fixture();
  f.file(
    "chatty.js",
    "export default { fetch() { for (let i = 0; i < 500; i++) console.log('chatty line ' + i); return new Response('ok') } }",
  );
  let toml = admin_toml("[log]\nconsole_lines_per_s = 20\n")
    + "[[worker]]\nname = \"chatty\"\nmain = \"chatty.js\"\nroutes = [\"chatty.test\"]\n";
  let engine = f.start(&toml);
  let public = engine.http_addr().unwrap();
  let started = std::time::Instant::now();
  let got = get(public, "chatty.test", "/some/path").await;
  let took = started.elapsed();
  assert_eq!(got.body, "ok");
  let id = got.headers["edge-request-id"].to_str().unwrap().to_string();
  // A second request, once a token is back (1/20 s), shows the count of
  // the lines dropped before it.
  tokio::time::sleep(Duration::from_millis(60)).await;
  get(public, "chatty.test", "/").await;
  let unrouted = get(public, "nobody.test", "/").await;
  assert_eq!(unrouted.status, 404);
  let unrouted_id = unrouted.headers["edge-request-id"].to_str().unwrap().to_string();
  let log = logs();
  let line = log
    .lines()
    .find(|l| l.contains(&unrouted_id) && l.contains("access"))
    .unwrap_or_default();
  assert!(
    line.contains("start=\"-\""),
    "a request no worker took started nothing: {line}"
  );
  // Request ids are unique to this engine: these lines are its own.
  let logged = log
    .lines()
    .filter(|l| l.contains(&id) && l.contains("chatty line"))
    .count();
  // The burst of 20, and what refilled while the 500 calls ran.
  let refilled = (took.as_secs_f64() * 20.0).ceil() as usize;
  assert!(
    (20..=20 + refilled).contains(&logged),
    "{logged} lines logged in {took:?}"
  );
  assert!(
    log
      .lines()
      .any(|l| l.contains("console lines dropped") && l.contains("worker=\"chatty\"")),
    "{log}"
  );
  let access = log
    .lines()
    .find(|l| l.contains("access") && l.contains(&id) && l.contains("chatty.test"))
    .unwrap_or_else(|| panic!("no access line for {id}"));
  for field in [
    "host=chatty.test",
    "worker=\"chatty\"",
    "status=200",
    "bytes=2",
    "path=/some/path",
    "start=\"cold\"",
    "wall_ms=",
    "cpu_ms=",
  ] {
    assert!(access.contains(field), "{field} in {access}");
  }
  // Milliseconds to the microsecond, no float noise.
  for name in ["wall_ms=", "cpu_ms="] {
    let value = access
      .split(name)
      .nth(1)
      .and_then(|v| v.split_whitespace().next())
      .unwrap();
    let decimals = value.split('.').nth(1).map_or(0, str::len);
    assert!(decimals <= 3, "{name}{value} in {access}");
  }
  let metrics = admin(engine.admin_addr().unwrap(), "GET", "/metrics", Some(TOKEN), None).await;
  assert!(
    metrics
      .body
      .lines()
      .any(|l| l.starts_with("edge_worker_console_dropped_total{worker=\"chatty\"}") && !l.ends_with(" 0")),
    "{}",
    metrics.body
  );
}
