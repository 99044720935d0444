//! The `edge` binary as operators run it: SIGHUP and `--watch` reloads
//! (workers and renewed certificates), a broken config refused, SIGTERM draining a slow request before exit 0, a
//! second signal ending the drain at once.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{get, self_signed, tls_connect, Fixture};

/// A running `edge serve`, its log lines collected.
struct Server {
  child: Child,
  lines: mpsc::Receiver<String>,
  seen: Vec<String>,
  addr: SocketAddr,
}

impl Server {
  fn start(f: &Fixture, extra_args: &[&str]) -> Self {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge"))
      .arg("serve")
      .arg("--config")
      .arg(f.path("edge.toml"))
      .args(extra_args)
      .env("RUST_LOG", "info")
      .stderr(Stdio::piped())
      .stdout(Stdio::null())
      .spawn()
      .expect("start edge");
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
      for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if tx.send(line).is_err() {
          break;
        }
      }
    });
    let mut s = Self {
      child,
      lines,
      seen: Vec::new(),
      addr: "0.0.0.0:0".parse().unwrap(),
    };
    let line = s.wait_for("listening on http://");
    let addr = line.split("http://").nth(1).unwrap().trim();
    s.addr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
    s
  }

  /// The first log line (from now on) containing `needle`.
  fn wait_for(&mut self, needle: &str) -> String {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
      let left = until.saturating_duration_since(Instant::now());
      match self.lines.recv_timeout(left) {
        Ok(line) => {
          self.seen.push(line.clone());
          if line.contains(needle) {
            return line;
          }
        }
        Err(_) => panic!("no log line with {needle:?}; seen:\n{}", self.seen.join("\n")),
      }
    }
  }

  /// The exit status, within `limit` (else the test fails with `what`).
  fn exit_within(&mut self, limit: Duration, what: &str) -> std::process::ExitStatus {
    let since = Instant::now();
    loop {
      if let Some(st) = self.child.try_wait().unwrap() {
        return st;
      }
      assert!(since.elapsed() < limit, "{what}");
      std::thread::sleep(Duration::from_millis(20));
    }
  }

  fn signal(&self, sig: libc::c_int) {
    // SAFETY: kill() on our own child's pid.
    let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0);
  }
}

impl Drop for Server {
  fn drop(&mut self) {
    let _ = self.child.kill();
    let _ = self.child.wait();
  }
}

fn worker(body: &str) -> String {
  format!("export default {{ fetch() {{ return new Response('{body}') }} }}")
}

/// A worker answering `ok`, that first runs `js` for requests to `path`.
fn worker_running_on(path: &str, js: &str) -> String {
  format!("export default {{ fetch(req) {{ if (new URL(req.url).pathname === '{path}') {{ {js} }} return new Response('ok') }} }}")
}

const ONE: &str = "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n[[worker]]\nname = \"a\"\nmain = \"a/index.js\"\nroutes = [\"a.test\"]\n";

/// Polls `host` until it answers `want` (reloads are asynchronous to the
/// signal).
async fn eventually(addr: SocketAddr, host: &str, want: &str) {
  let until = Instant::now() + Duration::from_secs(20);
  loop {
    let got = get(addr, host, "/").await;
    if got.body == want {
      return;
    }
    assert!(
      Instant::now() < until,
      "{host} still answers {} {:?}",
      got.status,
      got.body
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
}

#[tokio::test]
async fn sighup_reloads_and_a_broken_config_is_refused() {
  let f = Fixture::new();
  f.file("a/index.js", worker("a1"));
  f.file("b/index.js", worker("b1"));
  f.file("edge.toml", ONE);
  let mut s = Server::start(&f, &[]);
  assert_eq!(get(s.addr, "a.test", "/").await.body, "a1");
  assert_eq!(get(s.addr, "b.test", "/").await.status, 404);

  f.file("a/index.js", worker("a2"));
  f.file(
    "edge.toml",
    format!("{ONE}[[worker]]\nname = \"b\"\nmain = \"b/index.js\"\nroutes = [\"b.test\"]\n"),
  );
  s.signal(libc::SIGHUP);
  s.wait_for("config reloaded");
  assert_eq!(get(s.addr, "a.test", "/").await.body, "a2");
  assert_eq!(get(s.addr, "b.test", "/").await.body, "b1");

  f.file("edge.toml", "[listen\nthis is not toml");
  s.signal(libc::SIGHUP);
  s.wait_for("reload refused");
  f.file(
    "edge.toml",
    format!("{ONE}[[worker]]\nname = \"b\"\nmain = \"b/missing.js\"\nroutes = [\"b.test\"]\n"),
  );
  s.signal(libc::SIGHUP);
  let refused = s.wait_for("reload refused");
  assert!(refused.contains("missing.js"), "{refused}");
  // A module that throws at load is refused too, before it serves.
  f.file(
    "edge.toml",
    format!("{ONE}[[worker]]\nname = \"b\"\nmain = \"b/index.js\"\nroutes = [\"b.test\"]\n"),
  );
  f.file("b/index.js", "throw new Error('bad b')");
  s.signal(libc::SIGHUP);
  let refused = s.wait_for("reload refused");
  assert!(refused.contains("bad b"), "{refused}");
  assert_eq!(get(s.addr, "a.test", "/").await.body, "a2");
  assert_eq!(get(s.addr, "b.test", "/").await.body, "b1");
}

#[tokio::test]
async fn watch_reloads_when_a_module_changes() {
  let f = Fixture::new();
  f.file("a/index.js", worker("w1"));
  f.file("edge.toml", ONE);
  let s = Server::start(&f, &["--watch"]);
  assert_eq!(get(s.addr, "a.test", "/").await.body, "w1");
  // Modification times can be coarse: change the size too.
  f.file("a/index.js", worker("w2-longer"));
  eventually(s.addr, "a.test", "w2-longer").await;
}

const TLS: &str = "[listen]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n\
  [[tls]]\nhosts = [\"a.test\"]\ncert = \"a.pem\"\nkey = \"a.key\"\n\
  [[worker]]\nname = \"a\"\nmain = \"a/index.js\"\nroutes = [\"a.test\"]\n";

/// Writes a new certificate for a.test and returns it.
fn renew(f: &Fixture) -> String {
  let (cert, key, _) = self_signed(&["a.test"]);
  f.file("a.key", key);
  f.file("a.pem", &cert);
  cert
}

/// Whether a client trusting only `cert` gets through to a.test.
async fn trusted(addr: SocketAddr, cert: &str) -> bool {
  tls_connect(addr, Some("a.test"), &[cert.to_string()], &[b"http/1.1"])
    .await
    .is_ok()
}

async fn served_within(addr: SocketAddr, cert: &str) {
  let until = Instant::now() + Duration::from_secs(20);
  while !trusted(addr, cert).await {
    assert!(Instant::now() < until, "the renewed certificate is not served");
    tokio::time::sleep(Duration::from_millis(50)).await;
  }
}

fn https_addr(s: &mut Server) -> SocketAddr {
  let line = s.wait_for("listening on https://");
  line.split("https://").nth(1).unwrap().trim().parse().unwrap()
}

// A certificate renewed on disk (same config, same file names) is served
// after SIGHUP; connections made before keep theirs.
#[tokio::test]
async fn a_renewed_certificate_is_served_after_sighup() {
  let f = Fixture::new();
  f.file("a/index.js", worker("a1"));
  f.file("edge.toml", TLS);
  let first = renew(&f);
  let mut s = Server::start(&f, &[]);
  let addr = https_addr(&mut s);
  assert!(trusted(addr, &first).await);
  let second = renew(&f);
  assert!(!trusted(addr, &second).await, "served before the reload");
  s.signal(libc::SIGHUP);
  let line = s.wait_for("config reloaded");
  assert!(line.contains("tls_changed=true"), "{line}");
  served_within(addr, &second).await;
  assert!(!trusted(addr, &first).await);
  // A reload with the same files keeps them (and says so).
  s.signal(libc::SIGHUP);
  let line = s.wait_for("config reloaded");
  assert!(line.contains("tls_changed=false"), "{line}");
}

#[tokio::test]
async fn watch_serves_a_renewed_certificate() {
  let f = Fixture::new();
  f.file("a/index.js", worker("a1"));
  f.file("edge.toml", TLS);
  let first = renew(&f);
  let mut s = Server::start(&f, &["--watch"]);
  let addr = https_addr(&mut s);
  assert!(trusted(addr, &first).await);
  let second = renew(&f);
  served_within(addr, &second).await;
}

// With processes > 1 the supervisor follows --watch: every process
// reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_every_supervised_process() {
  let f = Fixture::new();
  f.file("a/index.js", worker("w1"));
  f.file("edge.toml", SUPERVISED.replace("{runtime}", ""));
  let mut s = Server::start(&f, &["--watch"]);
  s.wait_for("supervising 2 processes");
  eventually(s.addr, "a.test", "w1").await;
  f.file("a/index.js", worker("w2-longer"));
  s.wait_for("files changed: every process reloads");
  eventually(s.addr, "a.test", "w2-longer").await;
  tokio::time::sleep(Duration::from_millis(500)).await;
  for _ in 0..20 {
    assert_eq!(
      get(s.addr, "a.test", "/").await.body,
      "w2-longer",
      "a process did not reload"
    );
  }
}

// Multi-threaded: the client tasks run while the test waits on the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_slow_request_then_exits_zero() {
  let f = Fixture::new();
  f.file(
    "a/index.js",
    "export default { async fetch(req, env, ctx) { console.log('slow request started'); await new Promise(r => setTimeout(r, 1500)); return new Response('slow done') } }",
  );
  f.file("edge.toml", ONE);
  let mut s = Server::start(&f, &[]);
  let addr = s.addr;
  let slow = tokio::spawn(async move { get(addr, "a.test", "/").await });
  s.wait_for("slow request started");
  s.signal(libc::SIGTERM);
  s.wait_for("stopping");
  // No new connections once draining (the listeners close as soon as the
  // executors see the flag).
  let mut refused = false;
  for _ in 0..500 {
    if tokio::net::TcpStream::connect(addr).await.is_err() {
      refused = true;
      break;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
  assert!(refused, "still accepting");
  let got = slow.await.unwrap();
  assert_eq!((got.status, got.body.as_str()), (200, "slow done"));
  let status = s.exit_within(Duration::from_secs(20), "did not exit");
  assert_eq!(status.code(), Some(0));
  s.wait_for("stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
  let f = Fixture::new();
  f.file(
    "a/index.js",
    "export default { async fetch() { console.log('long request started'); await new Promise(r => setTimeout(r, 20000)); return new Response('late') } }",
  );
  f.file("edge.toml", ONE);
  let mut s = Server::start(&f, &[]);
  let addr = s.addr;
  let _pending = tokio::spawn(async move { get(addr, "a.test", "/").await });
  s.wait_for("long request started");
  s.signal(libc::SIGTERM);
  s.wait_for("stopping");
  s.signal(libc::SIGINT);
  let status = s.exit_within(Duration::from_secs(10), "still draining the 20 s request");
  assert_eq!(status.code(), Some(1));
}

// A thread wedged in one long builtin (no limit stops it inside; Object.keys
// of a 2^25-character string, ~10 s with room in the heap) keeps its
// isolate's requests; SIGTERM still ends the process at drain_timeout_s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_wedged_process_at_the_drain_timeout() {
  let f = Fixture::new();
  f.file(
    "a/index.js",
    worker_running_on("/wedge", "console.log('wedging'); Object.keys('x'.repeat(2 ** 25));"),
  );
  f.file(
    "edge.toml",
    "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\n[server]\ndrain_timeout_s = 2\n[limits]\ncpu_ms = 50\nmemory_mb = 2048\n[[worker]]\nname = \"a\"\nmain = \"a/index.js\"\nroutes = [\"a.test\"]\n",
  );
  let mut s = Server::start(&f, &[]);
  let addr = s.addr;
  assert_eq!(get(addr, "a.test", "/").await.body, "ok");
  let _wedge = tokio::spawn(async move { get(addr, "a.test", "/wedge").await });
  s.wait_for("wedging");
  // The thread is wedged: a request on it does not answer.
  let probe = tokio::time::timeout(Duration::from_millis(1500), get(addr, "a.test", "/")).await;
  assert!(
    probe.is_err(),
    "the thread answered: nothing wedged it, the test needs another wedge"
  );
  s.signal(libc::SIGTERM);
  let since = Instant::now();
  // Ended by the drain timeout: the wedged thread is left behind (exit
  // 0, work unfinished) or, if shutting down itself hangs, the exit
  // thread ends the process (exit 1).
  let status = s.exit_within(Duration::from_secs(10), "a wedged process outlived its SIGTERM");
  assert!(matches!(status.code(), Some(0 | 1)), "{status:?}");
  assert!(
    since.elapsed() >= Duration::from_millis(1500),
    "exited before the drain timeout"
  );
  s.wait_for("drain timeout");
}

/// Requests with a fresh connection each, every 20 ms until `stop`:
/// (answered, failed).
fn bystander(
  addr: SocketAddr,
  stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
  tokio::spawn(async move {
    let (mut ok, mut failed) = (0, 0);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
      // A connection the replaced process had taken may be reset: a
      // failure, counted, not a panic.
      let got = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = crate::support::H1::connect(addr).await;
        let req = hyper::Request::get("/")
          .header("host", "a.test")
          .body(crate::support::empty())
          .unwrap();
        let res = c.try_send(req).await.ok()?;
        http_body_util::BodyExt::collect(res.into_body())
          .await
          .ok()
          .map(|b| b.to_bytes())
      })
      .await;
      match got {
        Ok(Some(b)) if &b[..] == b"ok" => ok += 1,
        _ => failed += 1,
      }
      tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (ok, failed)
  })
}

/// Stops the bystander and checks the node came through a process's
/// replacement: replaced within 3 s, the other process answered more than
/// `min_ok` times meanwhile, at most 2 bystander requests failed (a
/// connection the replaced process had just taken), both serve again.
async fn came_through(
  addr: SocketAddr,
  stop: &std::sync::atomic::AtomicBool,
  by: tokio::task::JoinHandle<(usize, usize)>,
  replaced_after: Duration,
  min_ok: usize,
) {
  stop.store(true, std::sync::atomic::Ordering::SeqCst);
  let (ok, failed) = by.await.unwrap();
  assert!(
    replaced_after < Duration::from_secs(3),
    "replaced after {replaced_after:?}"
  );
  assert!(ok > min_ok, "the other process answered {ok} times");
  assert!(failed <= 2, "{failed} bystander requests failed ({ok} answered)");
  for _ in 0..10 {
    assert_eq!(get(addr, "a.test", "/").await.body, "ok");
  }
}

const SUPERVISED: &str = "[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\nprocesses = 2\n{runtime}\n[limits]\ncpu_ms = 50\nmemory_mb = 2048\n[[worker]]\nname = \"a\"\nmain = \"a/index.js\"\nroutes = [\"a.test\"]\n";

// A process wedged in one long builtin (Object.keys of a 2^25-character
// string) exits itself a second after its termination, and the supervisor
// replaces it; the other process serves throughout (new connections go to
// the process that accepts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_process_is_replaced_while_the_other_serves() {
  let f = Fixture::new();
  f.file(
    "a/index.js",
    worker_running_on("/wedge", "console.log('wedging'); Object.keys('x'.repeat(2 ** 25));"),
  );
  f.file("edge.toml", SUPERVISED.replace("{runtime}", ""));
  let mut s = Server::start(&f, &[]);
  let addr = s.addr;
  s.wait_for("supervising 2 processes");
  eventually(addr, "a.test", "ok").await;
  let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
  let by = bystander(addr, stop.clone());
  tokio::time::sleep(Duration::from_millis(300)).await;
  let wedge = tokio::spawn(async move {
    tokio::time::timeout(Duration::from_secs(20), async {
      let mut c = crate::support::H1::connect(addr).await;
      let req = hyper::Request::get("/wedge")
        .header("host", "a.test")
        .body(crate::support::empty())
        .unwrap();
      c.try_send(req).await.map(|r| r.status())
    })
    .await
  });
  s.wait_for("wedging");
  let since = Instant::now();
  s.wait_for("process ended");
  let replaced_after = since.elapsed();
  s.wait_for("process started");
  // The wedged request's process is gone: its connection ends unanswered.
  let got = wedge.await.unwrap();
  assert!(matches!(got, Ok(Err(_))), "the wedged request was answered: {got:?}");
  tokio::time::sleep(Duration::from_millis(500)).await;
  came_through(addr, &stop, by, replaced_after, 20).await;
  // SIGHUP reaches every process; SIGTERM drains them all, then exit 0.
  f.file("a/index.js", worker("ok2"));
  s.signal(libc::SIGHUP);
  eventually(addr, "a.test", "ok2").await;
  tokio::time::sleep(Duration::from_millis(500)).await;
  for _ in 0..20 {
    assert_eq!(get(addr, "a.test", "/").await.body, "ok2", "a process did not reload");
  }
  s.signal(libc::SIGTERM);
  let status = s.exit_within(Duration::from_secs(10), "the supervisor outlived its SIGTERM");
  assert_eq!(status.code(), Some(0), "{status:?}");
}

// A process that outgrows its share of runtime.max_memory_mb (here: 1024
// MiB over 2 processes; structuredClone of 1 GB of strings, which no
// isolate limit counts) is killed and replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_past_its_memory_share_is_replaced() {
  let f = Fixture::new();
  f.file(
    "a/index.js",
    worker_running_on(
      "/clone",
      "console.log('cloning'); structuredClone(Array(100).fill('ab'.repeat(5e6)));",
    ),
  );
  f.file(
    "edge.toml",
    SUPERVISED
      .replace("{runtime}", "max_memory_mb = 1024")
      .replace("cpu_ms = 50", "cpu_ms = 20000"),
  );
  let mut s = Server::start(&f, &[]);
  let addr = s.addr;
  s.wait_for("each replaced past 512 MiB");
  eventually(addr, "a.test", "ok").await;
  let clone = tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(30), get_raw(addr, "/clone")).await });
  s.wait_for("cloning");
  let line = s.wait_for("over its share of runtime.max_memory_mb");
  assert!(line.contains("killed and replaced"), "{line}");
  s.wait_for("process started");
  assert!(matches!(clone.await.unwrap(), Ok(Err(_))), "the clone was answered");
  for _ in 0..10 {
    assert_eq!(get(addr, "a.test", "/").await.body, "ok");
  }
}

// An isolate whose one step of V8 needs more heap than its budget plus
// runtime.heap_slack_mb (toUpperCase of 2^28 characters: a 256 MiB
// string in one allocation, at a 64 MiB budget and 64 MiB of slack) is
// not given it: V8 ends that process, the supervisor replaces it, the
// other process serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_the_heap_slack_ends_only_its_process() {
  let f = Fixture::new();
  f.file(
    "a/index.js",
    worker_running_on("/split", "'x'.repeat(2 ** 28).toUpperCase();"),
  );
  f.file(
    "edge.toml",
    SUPERVISED
      .replace("{runtime}", "heap_slack_mb = 64")
      .replace("memory_mb = 2048", "memory_mb = 64")
      .replace("cpu_ms = 50", "cpu_ms = 20000"),
  );
  let mut s = Server::start(&f, &[]);
  let addr = s.addr;
  s.wait_for("supervising 2 processes");
  eventually(addr, "a.test", "ok").await;
  let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
  let by = bystander(addr, stop.clone());
  let split = tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(30), get_raw(addr, "/split")).await });
  // (A console line of the request could be lost with its process: the
  // log is written by another thread.)
  let since = Instant::now();
  // Said before V8 aborts: by the near-heap-limit callback, or by the
  // OOM handler (when V8 finds no room without asking again).
  let line = s.wait_for("runtime.heap_slack_mb");
  assert!(line.contains(r#"worker "a""#), "{line}");
  s.wait_for("process ended");
  s.wait_for("process started");
  let replaced_after = since.elapsed();
  assert!(matches!(split.await.unwrap(), Ok(Err(_))), "the split was answered");
  tokio::time::sleep(Duration::from_millis(300)).await;
  came_through(addr, &stop, by, replaced_after, 5).await;
}

/// Two supervised processes serving worker `a` (`ok`), the supervisor's
/// admin API on with the test token and `admin` (more `[admin]` lines):
/// the server once `a` answers, and the admin address.
async fn supervised_with_admin(f: &Fixture, admin: &str) -> (Server, SocketAddr) {
  f.file("a/index.js", worker("ok"));
  f.file("admin.token", crate::support::TOKEN);
  f.file(
    "edge.toml",
    SUPERVISED.replace("{runtime}", "").replace(
      "[[worker]]",
      &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n{admin}[[worker]]"),
    ),
  );
  let mut s = Server::start(f, &[]);
  let line = s.wait_for("admin API on http://");
  let addr: SocketAddr = line
    .split("http://")
    .nth(1)
    .and_then(|r| r.split_whitespace().next())
    .unwrap()
    .parse()
    .unwrap();
  eventually(s.addr, "a.test", "ok").await;
  (s, addr)
}

// With processes > 1 the supervisor serves the admin listener: /metrics
// summed over the processes (each series added up, edge_up not); without
// admin.data_dir, uploads are refused with 409 (a replaced process would
// not have them); the token still wanted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_serves_metrics_summed_over_its_processes() {
  let f = Fixture::new();
  let (mut s, admin) = supervised_with_admin(&f, "").await;
  let addr = s.addr;
  for _ in 0..29 {
    assert_eq!(get(addr, "a.test", "/").await.body, "ok");
  }
  let metrics = |token| crate::support::admin(admin, "GET", "/metrics", token, None);
  assert_eq!(metrics(None).await.status, 401);
  let got = metrics(Some(crate::support::TOKEN)).await;
  assert_eq!(got.status, 200, "{}", got.body);
  let m = got.body;
  assert!(
    m.contains("\nedge_processes 2\n") && m.contains("\nedge_processes_reporting 2\n"),
    "{m}"
  );
  assert!(m.contains("\nedge_up 1\n"), "{m}");
  // Every request counted once, in whichever process served it (30, and
  // `eventually`'s).
  let served: f64 = m
    .lines()
    .filter(|l| l.starts_with("edge_worker_requests_total{") && l.contains("worker=\"a\""))
    .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
    .sum();
  assert!(served >= 30.0, "{served} requests counted: {m}");
  assert_eq!(m.matches("# TYPE edge_worker_requests_total ").count(), 1, "{m}");
  let put = crate::support::deploy(admin, "b", "b.test", &worker("b")).await;
  assert_eq!(put.status, 409, "{}", put.body);
  assert!(put.body.contains("admin.data_dir"), "{}", put.body);
  let list = crate::support::admin(admin, "GET", "/workers", Some(crate::support::TOKEN), None).await;
  assert_eq!(list.status, 200, "{}", list.body);
  assert!(list.body.contains("\"a\""), "{}", list.body);
  s.signal(libc::SIGTERM);
  let status = s.exit_within(Duration::from_secs(10), "the supervisor outlived its SIGTERM");
  assert_eq!(status.code(), Some(0), "{status:?}");
}

/// The pids of `parent`'s children.
fn children_of(parent: u32) -> Vec<u32> {
  let mut out = Vec::new();
  for e in std::fs::read_dir("/proc").unwrap().flatten() {
    let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
      continue;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
      continue;
    };
    // pid (comm) state ppid ...: the comm may hold spaces, not ')'.
    let ppid = stat
      .rsplit_once(')')
      .and_then(|(_, rest)| rest.split_whitespace().nth(1))
      .and_then(|p| p.parse::<u32>().ok());
    if ppid == Some(parent) {
      out.push(pid);
    }
  }
  out
}

/// `n` requests for `host`, each on a fresh connection (so both
/// processes serve some): every body.
async fn bodies(addr: SocketAddr, host: &str, n: usize) -> Vec<String> {
  let mut out = Vec::new();
  for _ in 0..n {
    out.push(get(addr, host, "/").await.body);
  }
  out
}

// With processes > 1 and admin.data_dir, an upload through the
// supervisor's admin API is checked on one process, kept in the data
// directory, then made on every process; one that refuses (a syntax
// error) changes nothing anywhere; processes started in the place of the
// killed ones serve what the data directory holds; a removal reaches
// every process and the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_through_the_supervisor_reach_every_process() {
  use crate::support::{admin as ask, deploy, TOKEN};
  let f = Fixture::new();
  let (mut s, admin) = supervised_with_admin(&f, "data_dir = \"data\"\n").await;
  let addr = s.addr;
  let up = deploy(admin, "up", "up.test", &worker("v1")).await;
  assert_eq!(up.status, 200, "{}", up.body);
  assert!(up.body.contains("\"changed\": true"), "{}", up.body);
  assert!(f.path("data/workers/up/current").exists());
  assert_eq!(bodies(addr, "up.test", 30).await, vec!["v1"; 30]);
  // Refused on the process that checks it: nothing changes.
  let broken = deploy(admin, "up", "up.test", "export default {").await;
  assert_eq!(broken.status, 400, "{}", broken.body);
  assert!(broken.body.contains("SyntaxError"), "{}", broken.body);
  assert_eq!(bodies(addr, "up.test", 20).await, vec!["v1"; 20]);
  let v2 = deploy(admin, "up", "up.test", &worker("v2")).await;
  assert_eq!(v2.status, 200, "{}", v2.body);
  assert_eq!(bodies(addr, "up.test", 30).await, vec!["v2"; 30]);
  let again = deploy(admin, "up", "up.test", &worker("v2")).await;
  assert!(again.body.contains("\"changed\": false"), "{}", again.body);
  // A dry run checks and changes nothing.
  let meta = r#"{"main_module":"index.js","routes":["up.test"]}"#;
  let v3 = worker("v3");
  let dry = ask(
    admin,
    "PUT",
    "/workers/up?dry_run",
    Some(TOKEN),
    Some(crate::support::upload(meta, &[("index.js", v3.as_bytes())])),
  )
  .await;
  assert_eq!(dry.status, 200, "{}", dry.body);
  assert_eq!(bodies(addr, "up.test", 10).await, vec!["v2"; 10]);
  // Both processes replaced, one after the other: the new ones start
  // from the data directory.
  let supervisor = s.child.id();
  for _ in 0..2 {
    let pids = children_of(supervisor);
    assert_eq!(pids.len(), 2, "{pids:?}");
    let oldest = *pids.iter().min().unwrap();
    // SAFETY: kill() on a child of our child, by its pid.
    unsafe { libc::kill(oldest as libc::pid_t, libc::SIGKILL) };
    s.wait_for("process ended");
    s.wait_for("process started");
    let until = Instant::now() + Duration::from_secs(20);
    while children_of(supervisor).contains(&oldest) {
      assert!(Instant::now() < until, "{oldest} is still there");
      tokio::time::sleep(Duration::from_millis(50)).await;
    }
  }
  // The new processes bind their isolates after their start: give them
  // time to accept.
  tokio::time::sleep(Duration::from_secs(2)).await;
  assert_eq!(bodies(addr, "up.test", 30).await, vec!["v2"; 30]);
  let gone = ask(admin, "DELETE", "/workers/up", Some(TOKEN), None).await;
  assert_eq!(gone.status, 204, "{}", gone.body);
  assert!(!f.path("data/workers/up").exists());
  for got in bodies(addr, "up.test", 20).await {
    assert!(got.contains("no worker"), "{got}");
  }
  let twice = ask(admin, "DELETE", "/workers/up", Some(TOKEN), None).await;
  assert_eq!(twice.status, 404, "{}", twice.body);
}

/// One GET on a fresh connection; an error if the connection ends first.
async fn get_raw(addr: SocketAddr, path: &str) -> Result<crate::support::Got, String> {
  let mut c = crate::support::H1::connect(addr).await;
  let req = hyper::Request::get(path)
    .header("host", "a.test")
    .body(crate::support::empty())
    .unwrap();
  match c.try_send(req).await {
    Ok(res) => Ok(crate::support::collect(res).await),
    Err(e) => Err(e),
  }
}

/// Writes 64 KiB under `?i=` (`/put`) or answers what is stored (`/get`).
const KV_WRITER: &str = r#"
const value = (i) => (i + ":").repeat(Math.ceil(65536 / (i + ":").length)).slice(0, 65536);
export default { async fetch(req, env) {
  const u = new URL(req.url);
  const i = u.searchParams.get("i");
  if (u.pathname === "/put") { await env.KV.put("k" + i, value(i)); return new Response("ok"); }
  const got = await env.KV.get("k" + i);
  return new Response(got === null ? "absent" : got === value(i) ? "whole" : "torn " + got.length);
} };
"#;

/// Puts objects of 256 KiB streamed in four pieces (each staged, then the
/// object committed), and says whether one reads back whole.
const R2_WRITER: &str = r#"
const piece = (i, n) => new TextEncoder().encode(`${i}.${n}:`.repeat(65536).slice(0, 65536));
export default { async fetch(req, env) {
  const u = new URL(req.url);
  const i = u.searchParams.get("i");
  if (u.pathname === "/put") {
    let n = 0;
    await env.B.put("k" + i, new ReadableStream({ pull(c) { if (n === 4) c.close(); else c.enqueue(piece(i, n++)); } }));
    return new Response("ok");
  }
  const got = await env.B.get("k" + i);
  if (got === null) return new Response("absent");
  const bytes = new Uint8Array(await got.arrayBuffer());
  let want = new Uint8Array(4 * 65536);
  for (let n = 0; n < 4; n++) want.set(piece(i, n), n * 65536);
  const whole = bytes.length === want.length && bytes.every((b, j) => b === want[j]);
  return new Response(whole ? "whole" : "torn " + bytes.length);
} };
"#;

// A KV put answered is on disk: the process is SIGKILLed while four
// clients write, and the next process finds every acknowledged value whole
// (and any write in flight at the kill either whole or absent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_kv_writes_survive_kill_9() {
  writes_survive_kill_9(KV_WRITER, "kv = [{ binding = \"KV\", namespace = \"durable\" }]\n").await;
}

// The same of R2 objects, each written in pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_object_writes_survive_kill_9() {
  writes_survive_kill_9(R2_WRITER, "r2 = [{ binding = \"B\", bucket_name = \"durable\" }]\n").await;
}

async fn writes_survive_kill_9(writer: &str, binding: &str) {
  let f = Fixture::new();
  f.file("a/index.js", writer);
  let toml = format!("{ONE}{binding}");
  f.file("edge.toml", &toml);
  let mut s = Server::start(&f, &[]);
  let addr = s.addr;
  let writers: Vec<_> = (0..4u32)
    .map(|t| {
      tokio::spawn(async move {
        let (mut acked, mut tried) = (Vec::new(), Vec::new());
        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
          return (acked, tried);
        };
        let mut c = crate::support::H1::over(stream).await;
        for n in 0.. {
          let i = n * 4 + t;
          tried.push(i);
          let req = http::Request::get(format!("http://a.test/put?i={i}"))
            .header("host", "a.test")
            .body(crate::support::empty())
            .unwrap();
          match c.try_send(req).await {
            Ok(res) if res.status() == 200 => {
              // The kill may cut the body: only "ok" read whole counts.
              use http_body_util::BodyExt;
              match res.into_body().collect().await.map(|b| b.to_bytes()) {
                Ok(b) if b == "ok" => acked.push(i),
                _ => break,
              }
            }
            _ => break,
          }
        }
        (acked, tried)
      })
    })
    .collect();
  // Until some writes are acknowledged (each is a 64 KiB transaction).
  tokio::time::sleep(Duration::from_millis(1500)).await;
  s.signal(libc::SIGKILL);
  s.exit_within(Duration::from_secs(10), "SIGKILL did not end it");
  let mut acked = Vec::new();
  let mut tried = Vec::new();
  for w in writers {
    let (a, t) = w.await.unwrap();
    acked.extend(a);
    tried.extend(t);
  }
  assert!(acked.len() >= 4, "too few writes before the kill: {}", acked.len());
  drop(s);
  let s = Server::start(&f, &[]);
  for i in &tried {
    let got = get(s.addr, "a.test", &format!("/get?i={i}")).await;
    if acked.contains(i) {
      assert_eq!(got.body, "whole", "acknowledged write {i}");
    } else {
      assert!(
        got.body == "whole" || got.body == "absent",
        "write {i} in flight: {}",
        got.body
      );
    }
  }
}

// A worker of the config that does not start stops `edge serve`, alone or
// under a supervisor (which would otherwise replace its processes forever),
// naming the worker and where it threw.
#[test]
fn a_worker_that_does_not_start_stops_serve_and_its_supervisor() {
  for processes in [1, 2] {
    let f = Fixture::new();
    f.file(
      "a/index.js",
      "const x = 1;\nnull.boom;\nexport default { fetch() { return new Response('') } }",
    );
    f.file(
      "edge.toml",
      format!("[listen]\nhttp = \"127.0.0.1:0\"\n[runtime]\nthreads = 1\nprocesses = {processes}\n[[worker]]\nname = \"a\"\nmain = \"a/index.js\"\nroutes = [\"a.test\"]\n"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
      .args(["serve", "--config"])
      .arg(f.path("edge.toml"))
      .stdout(Stdio::null())
      .stderr(Stdio::piped())
      .spawn()
      .expect("start edge");
    let started = Instant::now();
    let out = out.wait_with_output().unwrap();
    assert!(
      started.elapsed() < Duration::from_secs(30),
      "took {:?}",
      started.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{processes}: {err}");
    assert!(
      err.contains("worker \"a\"") && err.contains("index.js:2:"),
      "{processes} processes: {err}"
    );
    // The log is not a terminal: no colour codes in it.
    assert!(err.contains("ERROR") && !err.contains('\u{1b}'), "{err}");
  }
}
