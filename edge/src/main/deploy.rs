//! `edge deploy`: uploads a worker to a node's admin API, as `wrangler
//! deploy` does to Cloudflare. The worker is a wrangler config (or its
//! folder) or a main module; its folder's module files (JS, TypeScript,
//! JSON, Wasm, source maps; not `node_modules` or dot folders) go as the
//! upload's modules and its settings as the `metadata` part, in the format
//! `PUT /workers/{name}` takes (edge/src/control/api.rs).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bytes::Bytes;
use edge::config::WorkerConfig;
use edge::UploadMeta;
use http_body_util::{BodyExt, Full};

/// What `edge deploy` was asked.
#[derive(clap::Args)]
pub struct DeployArgs {
  /// The worker's wrangler config (or a folder holding one), or its main
  /// module; the module files of its folder are uploaded.
  pub target: PathBuf,
  /// The node's admin API, http://host:port.
  #[arg(long)]
  pub admin: String,
  /// A file holding the admin token (default: EDGE_ADMIN_TOKEN).
  #[arg(long)]
  pub token_file: Option<PathBuf>,
  /// The worker's name (over the wrangler config's).
  #[arg(long)]
  pub name: Option<String>,
  /// A host the worker serves (repeatable; over the wrangler config's).
  #[arg(long = "route")]
  pub routes: Vec<String>,
  /// The wrangler config's [env.<name>] to use.
  #[arg(long = "env")]
  pub wrangler_env: Option<String>,
  /// Check everything on the node (code loaded in an isolate), change
  /// nothing.
  #[arg(long)]
  pub dry_run: bool,
}

/// Module files an upload may hold (edge_core::names::check_module_path).
const MODULE_EXTENSIONS: &[&str] = &[".js", ".mjs", ".ts", ".mts", ".cts", ".json", ".wasm", ".map"];

/// Deploys; prints the node's answer. `Err` for a worker that cannot be
/// read or an answer that is not a success.
pub fn run(args: DeployArgs) -> anyhow::Result<()> {
  let worker = worker_of(&args)?;
  let main = worker
    .main
    .canonicalize()
    .with_context(|| format!("{}", worker.main.display()))?;
  let root = main.parent().context("the main module has no folder")?.to_path_buf();
  let modules = collect(&root)?;
  let main_module = relative(&root, &main)?;
  let meta = UploadMeta {
    main_module,
    routes: worker.routes.clone(),
    vars: worker.vars.clone(),
    kv: worker.kv.clone(),
    d1: worker.d1.clone(),
    r2: worker.r2.clone(),
    services: worker.services.clone(),
    triggers: worker.triggers.clone(),
    queues: worker.queues.clone(),
    limits: worker.limits.clone(),
    allow_private_network: worker.allow_private_network,
    compatibility_flags: worker.compatibility_flags.clone(),
    ..Default::default()
  };
  let (content_type, body) = multipart(&serde_json::to_vec(&meta)?, &modules);
  let token = token(args.token_file.as_deref())?;
  let mut path = format!("/workers/{}", worker.name);
  if args.dry_run {
    path.push_str("?dry_run");
  }
  eprintln!(
    "{} {} ({} modules, {} bytes) to {}{path}",
    if args.dry_run { "checking" } else { "deploying" },
    worker.name,
    modules.len(),
    body.len(),
    args.admin.trim_end_matches('/')
  );
  let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
  let (status, answer) = rt.block_on(put(&args.admin, &path, &token, content_type, body))?;
  println!("{}", answer.trim_end());
  if !status.is_success() {
    bail!("the node refused the upload: {status}");
  }
  Ok(())
}

/// The worker as its wrangler config or main module says, with the
/// command line's name and routes over those.
fn worker_of(args: &DeployArgs) -> anyhow::Result<WorkerConfig> {
  let mut w = match edge::config::wrangler::find(&args.target) {
    Some(file) => {
      let from = edge::config::wrangler::load(&file, args.wrangler_env.as_deref()).map_err(anyhow::Error::msg)?;
      for n in &from.notes {
        eprintln!("{}: {n}", file.display());
      }
      from.worker
    }
    None if args.wrangler_env.is_some() => bail!("--env needs a wrangler config"),
    None if args.target.is_file() => WorkerConfig {
      name: args
        .target
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("worker")
        .to_string(),
      main: args.target.clone(),
      ..Default::default()
    },
    None => bail!(
      "{}: neither a wrangler config (or a folder with one) nor a main module",
      args.target.display()
    ),
  };
  if let Some(n) = &args.name {
    w.name = n.clone();
  }
  if !args.routes.is_empty() {
    w.routes = args.routes.clone();
  }
  Ok(w)
}

/// The module files under `root`, by path relative to it.
fn collect(root: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
  let mut out = Vec::new();
  let mut total = 0usize;
  let mut stack = vec![root.to_path_buf()];
  while let Some(dir) = stack.pop() {
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
      .with_context(|| format!("{}", dir.display()))?
      .flatten()
      .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
      let name = e.file_name().to_string_lossy().into_owned();
      let path = e.path();
      let Ok(kind) = e.file_type() else { continue };
      if kind.is_dir() {
        if !name.starts_with('.') && name != "node_modules" {
          stack.push(path);
        }
        continue;
      }
      if !kind.is_file() || !MODULE_EXTENSIONS.iter().any(|x| name.ends_with(x)) {
        continue;
      }
      let rel = relative(root, &path)?;
      if edge_core_names_ok(&rel) {
        let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        total += bytes.len();
        out.push((rel, bytes));
      } else {
        eprintln!("skipped {rel}: not a module path an upload may hold");
      }
    }
  }
  if out.len() > edge::internals::worker::upload::MAX_MODULES {
    bail!(
      "{}: {} module files, at most {}",
      root.display(),
      out.len(),
      edge::internals::worker::upload::MAX_MODULES
    );
  }
  if total > edge::internals::worker::MAX_UPLOAD_BYTES {
    bail!(
      "{}: {total} bytes of modules, at most {}",
      root.display(),
      edge::internals::worker::MAX_UPLOAD_BYTES
    );
  }
  Ok(out)
}

fn edge_core_names_ok(rel: &str) -> bool {
  edge_core::names::check_module_path(rel).is_ok()
}

/// `path` under `root`, `/`-separated.
fn relative(root: &Path, path: &Path) -> anyhow::Result<String> {
  let rel = path
    .strip_prefix(root)
    .with_context(|| format!("{} is outside {}", path.display(), root.display()))?;
  Ok(
    rel
      .components()
      .map(|c| c.as_os_str().to_string_lossy().into_owned())
      .collect::<Vec<_>>()
      .join("/"),
  )
}

/// The upload's body: the metadata part, then a part per module.
fn multipart(meta: &[u8], modules: &[(String, Vec<u8>)]) -> (String, Vec<u8>) {
  let boundary = format!("edge-deploy-{:016x}", rand_u64());
  let mut b = Vec::new();
  let mut part = |name: &str, ct: &str, bytes: &[u8]| {
    b.extend_from_slice(
      format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: {ct}\r\n\r\n"
      )
      .as_bytes(),
    );
    b.extend_from_slice(bytes);
    b.extend_from_slice(b"\r\n");
  };
  part("metadata", "application/json", meta);
  for (name, bytes) in modules {
    part(name, "application/octet-stream", bytes);
  }
  b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
  (format!("multipart/form-data; boundary={boundary}"), b)
}

/// A boundary no module is likely to contain.
fn rand_u64() -> u64 {
  use std::hash::{BuildHasher, Hasher};
  let mut h = std::collections::hash_map::RandomState::new().build_hasher();
  h.write_u128(
    std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .unwrap_or_default()
      .as_nanos(),
  );
  h.finish()
}

/// The admin token: from `--token-file`, else `EDGE_ADMIN_TOKEN`.
pub fn token(file: Option<&Path>) -> anyhow::Result<String> {
  let t = match file {
    Some(f) => std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?,
    None => {
      std::env::var("EDGE_ADMIN_TOKEN").context("give the admin token with --token-file FILE or EDGE_ADMIN_TOKEN")?
    }
  };
  Ok(t.trim().to_string())
}

/// An HTTP/1.1 connection to the admin API at `admin` (http://host:port),
/// and the Host header to send.
pub async fn connect(admin: &str) -> anyhow::Result<(hyper::client::conn::http1::SendRequest<Full<Bytes>>, String)> {
  let url = url::Url::parse(admin).with_context(|| format!("--admin {admin}"))?;
  if url.scheme() != "http" {
    bail!("--admin {admin}: the admin API is plain HTTP (http://host:port); reach a remote one through a tunnel");
  }
  let host = url.host_str().context("--admin needs a host")?;
  let port = url.port_or_known_default().unwrap_or(80);
  let tcp = tokio::net::TcpStream::connect((host, port))
    .await
    .with_context(|| format!("connecting to {host}:{port}"))?;
  let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
  tokio::spawn(conn);
  Ok((send, format!("{host}:{port}")))
}

/// `PUT admin + path` over HTTP/1.1; the status and the body as text.
async fn put(
  admin: &str,
  path: &str,
  token: &str,
  content_type: String,
  body: Vec<u8>,
) -> anyhow::Result<(http::StatusCode, String)> {
  let (mut send, host) = connect(admin).await?;
  let req = http::Request::put(path)
    .header(http::header::HOST, host)
    .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
    .header(http::header::CONTENT_TYPE, content_type)
    .body(Full::new(Bytes::from(body)))?;
  let res = send.send_request(req).await?;
  let status = res.status();
  let bytes = res.into_body().collect().await?.to_bytes();
  Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
