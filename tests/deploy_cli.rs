//! `edge deploy`: a wrangler project (TypeScript, a nested import) uploaded
//! to a running node's admin API by the real binary, then served; a dry
//! run of a broken worker refused with the node's reason and a failing
//! exit.

use crate::support::{Fixture, H1, TOKEN};

fn edge(args: &[&str]) -> std::process::Output {
  std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
    .args(args)
    .output()
    .expect("running edge")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_deploy_uploads_a_wrangler_project_that_then_serves() {
  let f = Fixture::new();
  f.file("admin.token", format!("{TOKEN}\n"));
  f.file(
    "shop/wrangler.toml",
    "name = \"shop\"\nmain = \"src/index.ts\"\ncompatibility_flags = [\"nodejs_compat\"]\nroutes = [\"shop.example/*\"]\n[vars]\nCURRENCY = \"EUR\"\n",
  );
  f.file(
    "shop/src/index.ts",
    "import { price } from \"./lib/price\";\nimport { EventEmitter } from \"node:events\";\n\
     export default { fetch(_req: Request, env: { CURRENCY: string }): Response {\n\
       return new Response(`${price(2)} ${env.CURRENCY} ${typeof EventEmitter}`);\n} };\n",
  );
  f.file(
    "shop/src/lib/price.ts",
    "export const price = (n: number): string => (n * 1.5).toFixed(2);\n",
  );
  // Not uploaded: dependencies (bundle them) and dot folders.
  f.file("shop/node_modules/left-pad/index.js", "throw new Error('not me');\n");
  f.file("shop/.wrangler/state.js", "throw new Error('not me either');\n");
  let toml = "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n";
  let e = f.start(toml);
  let admin = format!("http://{}", e.admin_addr().unwrap());
  let token = f.path("admin.token").display().to_string();
  let project = f.path("shop").display().to_string();
  let out = edge(&["deploy", &project, "--admin", &admin, "--token-file", &token]);
  let (stdout, stderr) = (
    String::from_utf8_lossy(&out.stdout),
    String::from_utf8_lossy(&out.stderr),
  );
  assert!(out.status.success(), "{stdout}\n{stderr}");
  assert!(stderr.contains("deploying shop (2 modules"), "{stderr}");
  let got = H1::connect(e.http_addr().unwrap()).await.get("shop.example", "/").await;
  assert_eq!((got.status, got.body.as_str()), (200, "3.00 EUR function"));

  // A dry run of a broken version: refused, nothing changed.
  f.file(
    "shop/src/lib/price.ts",
    "export const price = (n: number): string => ;\n",
  );
  let out = edge(&[
    "deploy",
    &project,
    "--admin",
    &admin,
    "--token-file",
    &token,
    "--dry-run",
  ]);
  let (stdout, stderr) = (
    String::from_utf8_lossy(&out.stdout),
    String::from_utf8_lossy(&out.stderr),
  );
  assert!(!out.status.success());
  assert!(stdout.contains("price.ts:1:"), "{stdout}");
  assert!(stderr.contains("the node refused the upload"), "{stderr}");
  let got = H1::connect(e.http_addr().unwrap()).await.get("shop.example", "/").await;
  assert_eq!(got.body, "3.00 EUR function");

  // A wrong token is the node's 401, said so.
  f.file("wrong.token", "nope\n");
  let wrong = f.path("wrong.token").display().to_string();
  let out = edge(&["deploy", &project, "--admin", &admin, "--token-file", &wrong]);
  assert!(!out.status.success());
  assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[test]
fn edge_check_evaluates_workers_and_serves_nothing() {
  let f = Fixture::new();
  f.file(
    "good.ts",
    "export default { fetch(): Response { return new Response('ok'); } };\n",
  );
  f.file(
    "bad.js",
    "const a = 1;\nundefinedFunction();\nexport default { fetch() {} };\n",
  );
  // The port is taken: a check binds nothing, so it does not matter.
  let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
  let port = taken.local_addr().unwrap().port();
  let toml = |main: &str| {
    format!(
      "[listen]\nhttp = \"127.0.0.1:{port}\"\n[[worker]]\nname = \"good\"\nmain = \"good.ts\"\n\
       [[worker]]\nname = \"other\"\nmain = \"{main}\"\n[worker.triggers]\ncrons = [\"* * * * *\"]\n"
    )
  };
  f.file("edge.toml", toml("bad.js"));
  let config = f.path("edge.toml").display().to_string();
  let out = edge(&["check", "--config", &config]);
  let stderr = String::from_utf8_lossy(&out.stderr);
  assert!(!out.status.success());
  assert!(
    stderr.contains("worker \"other\"") && stderr.contains("bad.js:2:"),
    "{stderr}"
  );
  f.file("edge.toml", toml("good.ts"));
  let out = edge(&["check", "--config", &config]);
  assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
  assert_eq!(
    String::from_utf8_lossy(&out.stdout).trim(),
    "ok: 2 workers loaded and evaluated"
  );
  // One worker, by its main module.
  let out = edge(&["check", &f.path("good.ts").display().to_string()]);
  assert_eq!(
    String::from_utf8_lossy(&out.stdout).trim(),
    "ok: 1 worker loaded and evaluated"
  );
  drop(taken);
}

#[test]
fn edge_init_makes_a_project_that_checks_and_never_overwrites() {
  let f = Fixture::new();
  let dir = f.path("My App");
  let dir_s = dir.display().to_string();
  let out = edge(&["init", &dir_s]);
  assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
  let wrangler = std::fs::read_to_string(dir.join("wrangler.toml")).unwrap();
  assert!(
    wrangler.starts_with("name = \"my-app\"\nmain = \"src/index.ts\""),
    "{wrangler}"
  );
  let out = edge(&["check", &dir_s]);
  assert_eq!(
    String::from_utf8_lossy(&out.stdout).trim(),
    "ok: 1 worker loaded and evaluated",
    "{}",
    String::from_utf8_lossy(&out.stderr)
  );
  let again = edge(&["init", &dir_s]);
  assert!(!again.status.success());
  assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}

/// `edge tail` follows a worker's requests and console lines, live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_tail_shows_requests_and_console_lines_as_they_happen() {
  let f = Fixture::new();
  f.file("admin.token", format!("{TOKEN}\n"));
  f.file(
    "talk.js",
    "export default { fetch(req) { console.log('saw', new URL(req.url).pathname); return new Response('hi'); } };",
  );
  let toml = "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\
    [[worker]]\nname = \"talk\"\nmain = \"talk.js\"\nroutes = [\"talk.test\"]\n";
  let e = f.start(toml);
  let admin = format!("http://{}", e.admin_addr().unwrap());
  let token = f.path("admin.token").display().to_string();
  let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
    .args([
      "tail",
      "talk",
      "--admin",
      &admin,
      "--token-file",
      &token,
      "--format",
      "json",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
  let stdout = child.stdout.take().unwrap();
  let (tx, rx) = std::sync::mpsc::channel::<String>();
  std::thread::spawn(move || {
    use std::io::BufRead;
    for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
      if tx.send(line).is_err() {
        break;
      }
    }
  });
  // Requests until the tail has seen one (it may connect after the first).
  let addr = e.http_addr().unwrap();
  let mut lines = Vec::new();
  for i in 0..100 {
    assert_eq!(
      H1::connect(addr).await.get("talk.test", &format!("/n{i}")).await.body,
      "hi"
    );
    while let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(50)) {
      lines.push(l);
    }
    if lines.iter().any(|l| l.contains("\"type\":\"request\"")) {
      break;
    }
  }
  let _ = child.kill();
  let _ = child.wait();
  let console: serde_json::Value = serde_json::from_str(
    lines
      .iter()
      .find(|l| l.contains("\"type\":\"console\""))
      .expect("a console line"),
  )
  .unwrap();
  assert_eq!(console["level"], "log");
  assert!(console["message"].as_str().unwrap().starts_with("saw /n"), "{console}");
  let request: serde_json::Value =
    serde_json::from_str(lines.iter().find(|l| l.contains("\"type\":\"request\"")).unwrap()).unwrap();
  assert_eq!(
    (request["method"].as_str(), request["status"].as_u64()),
    (Some("GET"), Some(200))
  );
  assert!(
    request["url"].as_str().unwrap().starts_with("http://talk.test/n"),
    "{request}"
  );
  // An unknown worker is the node's 404, said so.
  let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
    .args(["tail", "ghost", "--admin", &admin, "--token-file", &token])
    .output()
    .unwrap();
  assert!(!out.status.success());
  assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}
