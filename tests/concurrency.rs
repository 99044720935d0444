//! Many requests in one isolate, interleaved at their awaits: they share
//! the worker's globals, each is charged and stopped for its own CPU, and
//! one request's runaway does not take the others with it.

use std::time::Duration;

use crate::support::{get, Fixture};

/// `/wait?ms=N`: counts itself in, awaits a timer, answers the isolate's
/// id and the most requests it has seen in flight at once. `/spin` spins
/// in its handler; `/spin-later` after an await; `/chunks` spends 5 ms per
/// turn over many turns while a 10 s timer of its own is pending; `/light`
/// does a little work over many awaits.
const WORKER: &str = r#"
const ISOLATE = crypto.randomUUID();
let inFlight = 0;
let most = 0;
const spin = (ms) => { const end = Date.now() + ms; while (Date.now() < end); };
export default {
  async fetch(request) {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/wait": {
        inFlight++;
        most = Math.max(most, inFlight);
        console.log("waiting " + url.searchParams.get("tag"));
        await new Promise((r) => setTimeout(r, Number(url.searchParams.get("ms") ?? 300)));
        inFlight--;
        return new Response(`${ISOLATE} ${most}`);
      }
      case "/spin":
        for (;;);
      case "/spin-later":
        await new Promise((r) => setTimeout(r, 10));
        for (;;);
      case "/chunks": {
        setTimeout(() => {}, 10000);
        for (let i = 0; i < 1000; i++) {
          await new Promise((r) => setTimeout(r, 1));
          spin(5);
        }
        return new Response("not stopped");
      }
      case "/light": {
        let n = 0;
        for (let i = 0; i < 20; i++) {
          await new Promise((r) => setTimeout(r, 2));
          n += i;
        }
        return new Response(`light ${n}`);
      }
      default:
        return new Response(ISOLATE);
    }
  },
};
"#;

fn start(f: &Fixture, extra: &str) -> edge::Engine {
  start_with(f, extra, 5000)
}

fn start_with(f: &Fixture, extra: &str, wall_ms: u64) -> edge::Engine {
  f.file("w.js", WORKER);
  f.start(&format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n{extra}[limits]\ncpu_ms = 50\nwall_ms = {wall_ms}\n[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\n"
  ))
}

async fn wait_for_logs(needle: &str, count: usize) {
  for _ in 0..1000 {
    if crate::support::logs().matches(needle).count() >= count {
      return;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
  panic!("never saw {count} log lines with {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_of_a_worker_share_one_isolate() {
  let f = Fixture::new();
  let engine = start(&f, "");
  let addr = engine.http_addr().unwrap();
  let mut tasks = Vec::new();
  for _ in 0..100 {
    tasks.push(tokio::spawn(async move { get(addr, "w.test", "/wait?ms=300").await }));
  }
  let mut isolates = std::collections::HashSet::new();
  let mut most = 0;
  for t in tasks {
    let got = t.await.unwrap();
    assert_eq!(got.status, 200, "{}", got.body);
    let (iso, seen) = got.body.split_once(' ').unwrap();
    isolates.insert(iso.to_string());
    most = most.max(seen.parse::<u32>().unwrap());
  }
  // One isolate, its globals shared by requests in flight together.
  assert_eq!(isolates.len(), 1, "{isolates:?}");
  assert!(most > 1, "requests were in the isolate together: {most}");
  assert_eq!(engine.stats_detail().worker("w").cold_starts.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_is_stopped_while_100_others_wait_on_timers_and_those_complete() {
  let f = Fixture::new();
  let engine = start(&f, "");
  let addr = engine.http_addr().unwrap();
  let mut tasks = Vec::new();
  for _ in 0..100 {
    tasks.push(tokio::spawn(async move {
      get(addr, "w.test", "/wait?ms=1500&tag=runaway").await
    }));
  }
  wait_for_logs("waiting runaway", 100).await;
  // In its handler, then in a turn shared with the 100.
  for path in ["/spin", "/spin-later"] {
    let r = get(addr, "w.test", path).await;
    assert_eq!((r.status, r.limit()), (503, Some("cpu")), "{path}: {}", r.body);
  }
  let mut isolates = std::collections::HashSet::new();
  for t in tasks {
    let got = t.await.unwrap();
    assert_eq!(got.status, 200, "{}", got.body);
    isolates.insert(got.body.split_once(' ').unwrap().0.to_string());
  }
  assert_eq!(isolates.len(), 1);
  // The stopped isolate takes no new requests; a fresh one serves.
  let after = get(addr, "w.test", "/").await;
  assert_eq!(after.status, 200);
  assert!(!isolates.contains(&after.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_spent_over_many_turns_is_stopped_without_waiting_for_the_loop() {
  // 5 ms per turn, 50 ms allowed, a 10 s timer pending: the limit is seen
  // when the turn that crossed it ends (were it read only when the loop
  // next woke, the 5 s wall limit would answer first).
  let f = Fixture::new();
  let engine = start(&f, "");
  let r = get(engine.http_addr().unwrap(), "w.test", "/chunks").await;
  assert_eq!((r.status, r.limit()), (503, Some("cpu")), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_is_charged_for_another_requests_cpu() {
  // Runaways spinning in turns shared with light requests: the light ones
  // are charged only their own few milliseconds.
  let f = Fixture::new();
  let engine = start(&f, "");
  let addr = engine.http_addr().unwrap();
  for _ in 0..3 {
    let mut light = Vec::new();
    for _ in 0..20 {
      light.push(tokio::spawn(async move { get(addr, "w.test", "/light").await }));
    }
    let spinner = tokio::spawn(async move { get(addr, "w.test", "/spin-later").await });
    for t in light {
      let got = t.await.unwrap();
      assert_eq!((got.status, got.body.as_str()), (200, "light 190"), "{:?}", got.limit());
    }
    assert_eq!(spinner.await.unwrap().limit(), Some("cpu"));
  }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_of_an_ended_request_do_not_run() {
  // As on Workers: a request's timers are cancelled when it ends (here a
  // handler answers at once and leaves a timer that would log).
  let f = Fixture::new();
  f.file(
    "t.js",
    "export default { fetch(req) { const tag = new URL(req.url).searchParams.get('tag'); setTimeout(() => console.log('late ' + tag), 50); setInterval(() => console.log('tick ' + tag), 20); return new Response('ok') } }",
  );
  let engine = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n[[worker]]\nname = \"t\"\nmain = \"t.js\"\nroutes = [\"t.test\"]\n",
  );
  let addr = engine.http_addr().unwrap();
  let tag = format!("{:x}", std::process::id() ^ 0x5eed);
  assert_eq!(get(addr, "t.test", &format!("/?tag={tag}")).await.body, "ok");
  // Other requests keep the isolate's loop turning meanwhile.
  for _ in 0..5 {
    get(addr, "t.test", "/?tag=other").await;
    tokio::time::sleep(Duration::from_millis(30)).await;
  }
  let logs = crate::support::logs();
  assert!(
    !logs.contains(&format!("late {tag}")),
    "a timer of an ended request ran"
  );
  assert!(
    !logs.contains(&format!("tick {tag}")),
    "an interval of an ended request ran"
  );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_isolate_makes_another_then_queues_with_a_bound() {
  // One request per isolate, two isolates: the third concurrent request
  // waits max_queue_ms, then 503 with Retry-After.
  let f = Fixture::new();
  let engine = start(
    &f,
    "max_requests_per_isolate = 1\nmax_isolates_per_worker = 2\nmax_queue_ms = 200\n",
  );
  let addr = engine.http_addr().unwrap();
  let a = tokio::spawn(async move { get(addr, "w.test", "/wait?ms=2000&tag=full").await });
  let b = tokio::spawn(async move { get(addr, "w.test", "/wait?ms=2000&tag=full").await });
  wait_for_logs("waiting full", 2).await;
  let busy = get(addr, "w.test", "/").await;
  assert_eq!(busy.status, 503, "{}", busy.body);
  assert_eq!(busy.headers["retry-after"], "1");
  let (a, b) = (a.await.unwrap(), b.await.unwrap());
  assert_eq!((a.status, b.status), (200, 200));
  assert_ne!(a.body.split(' ').next(), b.body.split(' ').next(), "two isolates");
}

/// PBKDF2 derivations, which deno runs on the blocking pool.
const DERIVE: &str = r#"
export default {
  async fetch(req) {
    const url = new URL(req.url);
    const n = Number(url.searchParams.get("n") ?? 1);
    const iterations = Number(url.searchParams.get("it") ?? 100000);
    const key = await crypto.subtle.importKey("raw", new TextEncoder().encode("pw"), "PBKDF2", false, ["deriveBits"]);
    if (url.searchParams.has("getter")) {
      // Answers the bound check one number and deno another, if read twice.
      let reads = 0;
      const alg = { name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(16), get iterations() { return reads++ === 0 ? 1 : 5000000; } };
      await crypto.subtle.deriveBits(alg, key, 256);
      return new Response(`reads ${reads}`);
    }
    try {
      for (let i = 0; i < n; i++) {
        await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(16), iterations }, key, 256);
      }
    } catch (e) {
      return new Response(`${e.name}: ${e.message}`, { status: 400 });
    }
    return new Response(`derived ${n}`);
  },
};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crypto_work_off_the_thread_is_charged_bounded_and_limited() {
  let f = Fixture::new();
  f.file("derive.js", DERIVE);
  let engine = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n[log]\naccess = true\n\
     [[worker]]\nname = \"roomy\"\nmain = \"derive.js\"\nroutes = [\"roomy.test\"]\n[worker.limits]\ncpu_ms = 30000\nwall_ms = 60000\n\
     [[worker]]\nname = \"tight\"\nmain = \"derive.js\"\nroutes = [\"tight.test\"]\n[worker.limits]\ncpu_ms = 20\n",
  );
  let addr = engine.http_addr().unwrap();
  // The pool's time is in the request's CPU (its own JS takes a few ms).
  let tag = format!("derive-{}", std::process::id());
  let r = get(addr, "roomy.test", &format!("/{tag}?n=4")).await;
  assert_eq!((r.status, r.body.as_str()), (200, "derived 4"));
  let line = crate::support::logs()
    .lines()
    .find(|l| l.contains(&tag) && l.contains("cpu_ms"))
    .map(str::to_string)
    .expect("the access line");
  let cpu: f64 = line
    .split("cpu_ms=")
    .nth(1)
    .and_then(|v| v.split_whitespace().next())
    .and_then(|v| v.parse().ok())
    .unwrap_or_else(|| panic!("no cpu_ms in {line}"));
  assert!(cpu >= 40.0, "4 x PBKDF2 at 100,000 iterations charged {cpu} ms: {line}");
  // Past the limit through work off the thread alone.
  let r = get(addr, "tight.test", "/?n=8").await;
  assert_eq!((r.status, r.limit()), (503, Some("cpu")), "{}", r.body);
  // Bounded as on workerd, on the numbers deno gets.
  assert_eq!(get(addr, "roomy.test", "/?getter=1").await.body, "reads 1");
  let r = get(addr, "roomy.test", "/?it=5000000").await;
  assert_eq!(r.status, 400);
  assert!(
    r.body
      .starts_with("NotSupportedError: PBKDF2 iteration counts above 100000"),
    "{}",
    r.body
  );
}
