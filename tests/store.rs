//! The admin API's caps (module names, count, size, vars, limits over the
//! server's ceiling) and a data directory that survives a crash at any
//! point of a store or a removal: each crash is the state it leaves on
//! disk, made here, then a restart.

use std::path::Path;

use crate::support::{admin, deploy, get, upload, Fixture, TOKEN};

fn fixture() -> Fixture {
  let f = Fixture::new();
  f.file("admin.token", format!("{TOKEN}\n"));
  f
}

fn toml(extra: &str) -> String {
  format!("[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\ndata_dir = \"data\"\n{extra}\n")
}

fn worker(v: u32) -> String {
  format!("export default {{ fetch() {{ return new Response('v{v}') }} }}")
}

/// Module paths and their bytes.
type Modules = Vec<(String, Vec<u8>)>;

/// A PUT of `modules` with `meta`: status and body.
async fn put(a: std::net::SocketAddr, name: &str, meta: &str, modules: &[(&str, &[u8])]) -> (u16, String) {
  let got = admin(
    a,
    "PUT",
    &format!("/workers/{name}"),
    Some(TOKEN),
    Some(upload(meta, modules)),
  )
  .await;
  (got.status, got.body)
}

#[tokio::test]
async fn uploads_past_the_caps_are_400_and_nothing_is_stored() {
  let f = fixture();
  let e = f.start(&(toml("[limits]\nmemory_mb = 128\n[admin.max_limits]\ncpu_ms = 200\n")));
  let a = e.admin_addr().unwrap();
  let js = worker(1);
  let meta = r#"{"main_module":"index.js","routes":["caps.test"]}"#;
  let long = format!("{}.js", "m".repeat(5000));
  let cases: Vec<(&str, String, Modules, &str)> = vec![
    (
      "long module name",
      meta.into(),
      vec![("index.js".into(), js.clone().into()), (long, b"1".to_vec())],
      "at most 512",
    ),
    (
      "too many modules",
      meta.into(),
      std::iter::once(("index.js".to_string(), js.clone().into_bytes()))
        .chain((0..1001).map(|i| (format!("m{i}.js"), b"1".to_vec())))
        .collect(),
      "at most 1000",
    ),
    (
      "too many vars",
      format!(
        r#"{{"main_module":"index.js","routes":["caps.test"],"vars":{{{}}}}}"#,
        (0..129).map(|i| format!(r#""V{i}":"x""#)).collect::<Vec<_>>().join(",")
      ),
      vec![("index.js".into(), js.clone().into())],
      "at most 128",
    ),
    (
      "a var too large",
      format!(
        r#"{{"main_module":"index.js","routes":["caps.test"],"vars":{{"BIG":"{}"}}}}"#,
        "x".repeat(6000)
      ),
      vec![("index.js".into(), js.clone().into())],
      "at most 256 and 5120",
    ),
    (
      "memory over the server's",
      r#"{"main_module":"index.js","routes":["caps.test"],"limits":{"memory_mb":1000000}}"#.into(),
      vec![("index.js".into(), js.clone().into())],
      "limits.memory_mb: 1000000 is over this server's ceiling for uploaded workers, 128",
    ),
    (
      "cpu over admin.max_limits",
      r#"{"main_module":"index.js","routes":["caps.test"],"limits":{"cpu_ms":201}}"#.into(),
      vec![("index.js".into(), js.clone().into())],
      "limits.cpu_ms: 201 is over this server's ceiling for uploaded workers, 200",
    ),
    (
      "a limit past any server's",
      r#"{"main_module":"index.js","routes":["caps.test"],"limits":{"memory_mb":1000000000}}"#.into(),
      vec![("index.js".into(), js.clone().into())],
      "limits.memory_mb: must be 16-1048576",
    ),
  ];
  for (what, meta, modules, says) in &cases {
    let modules: Vec<(&str, &[u8])> = modules.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let (status, body) = put(a, "caps", meta, &modules).await;
    assert_eq!(status, 400, "{what}: {body}");
    assert!(body.contains(says), "{what}: {body}");
  }
  assert!(!f.path("data/workers/caps").exists(), "a refused upload was stored");
  // Within them: deployed, with the raised CPU ceiling.
  let ok = r#"{"main_module":"index.js","routes":["caps.test"],"limits":{"cpu_ms":200}}"#;
  assert_eq!(put(a, "caps", ok, &[("index.js", js.as_bytes())]).await.0, 200);
  assert_eq!(get(e.http_addr().unwrap(), "caps.test", "/").await.body, "v1");
}

/// The one committed version folder of a stored worker.
fn committed(wdir: &Path) -> String {
  std::fs::read_to_string(wdir.join("current"))
    .unwrap()
    .trim()
    .to_string()
}

fn entries(wdir: &Path) -> Vec<String> {
  let mut v: Vec<String> = std::fs::read_dir(wdir)
    .unwrap()
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .collect();
  v.sort();
  v
}

fn copy_tree(from: &Path, to: &Path) {
  std::fs::create_dir_all(to).unwrap();
  for e in std::fs::read_dir(from).unwrap() {
    let e = e.unwrap();
    if e.file_type().unwrap().is_dir() {
      copy_tree(&e.path(), &to.join(e.file_name()));
    } else {
      std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
  }
}

#[tokio::test]
async fn the_data_dir_survives_a_crash_at_any_point() {
  let f = fixture();
  let toml = toml("");
  let workers = f.path("data/workers");
  let w = workers.join("w");
  // v1 committed, and a copy of a v2 version folder to plant.
  let v2_folder = f.path("v2-copy");
  {
    let e = f.start(&toml);
    let a = e.admin_addr().unwrap();
    assert_eq!(deploy(a, "w", "w.test", &worker(2)).await.status, 200);
    copy_tree(&w.join(committed(&w)), &v2_folder);
    assert_eq!(deploy(a, "w", "w.test", &worker(1)).await.status, 200);
    assert_eq!(entries(&w).len(), 2, "{:?}", entries(&w));
    e.shutdown();
  }
  let serves = |want: &'static str| {
    let f = &f;
    let toml = &toml;
    async move {
      let e = f.start(toml);
      let got = get(e.http_addr().unwrap(), "w.test", "/").await;
      e.shutdown();
      assert_eq!((got.status, got.body.as_str()), (200, want), "{}", got.body);
    }
  };
  let v1 = committed(&w);
  // A crash while v2 was written: half a version folder.
  std::fs::create_dir_all(w.join(".v2-x.tmp/modules")).unwrap();
  std::fs::write(w.join(".v2-x.tmp/metadata.json"), "{\"main_mod").unwrap();
  serves("v1").await;
  assert_eq!(entries(&w), ["current".to_string(), v1.clone()], "leftovers removed");
  // v2 complete but not committed, and half a pointer.
  copy_tree(&v2_folder, &w.join("v2-y"));
  std::fs::write(w.join(".current.tmp"), "v2").unwrap();
  serves("v1").await;
  assert_eq!(entries(&w), ["current".to_string(), v1.clone()]);
  // Committed, not yet cleaned: v2 serves and v1 goes.
  copy_tree(&v2_folder, &w.join("v2-z"));
  std::fs::write(w.join("current"), "v2-z").unwrap();
  serves("v2").await;
  assert_eq!(entries(&w), ["current".to_string(), "v2-z".to_string()]);
  // A removal that crashed after its pointer went: gone for good.
  std::fs::remove_file(w.join("current")).unwrap();
  {
    let e = f.start(&toml);
    assert_eq!(get(e.http_addr().unwrap(), "w.test", "/").await.status, 404);
    e.shutdown();
  }
  assert!(!w.exists());
  // The layout before: a crash between its two renames left only
  // `.w.old` (and `.w.new`): the old copy is loaded.
  copy_tree(&v2_folder, &workers.join(".w.old"));
  copy_tree(&v2_folder, &workers.join(".w.new"));
  serves("v2").await;
  assert!(!workers.join(".w.new").exists());
}
