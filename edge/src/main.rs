//! The `edge` command: `edge serve --config edge.toml` runs the server from
//! a config file; `edge dev worker.js` serves one worker on plain HTTP.
//! SIGHUP (and, with `--watch`, a changed file) reloads the workers;
//! SIGTERM/SIGINT drain and exit, a second one exits at once.

/// mimalloc for the server's own allocations (hyper's buffers, header
/// maps, per-request values); V8 keeps its heap in its own pages.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
  // mimalloc's (linked in with the allocator above).
  fn mi_collect(force: bool);
}

/// Gives this thread's free mimalloc pages back to the system.
fn release_freed() {
  // SAFETY: mi_collect frees nothing in use: it returns the calling
  // thread's free pages and purges what is due.
  unsafe { mi_collect(true) };
}

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "main/supervisor.rs"]
mod supervisor;

#[path = "main/deploy.rs"]
mod deploy;

#[path = "main/init.rs"]
mod init;

#[path = "main/tail.rs"]
mod tail;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge::config::{Config, Listen, WorkerConfig};
use edge::Engine;
use edge::LogFormat;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(
  name = "edge",
  version,
  about = "An edge worker runtime: JavaScript and WebAssembly workers on V8, routed by host name"
)]
struct Cli {
  #[command(subcommand)]
  command: Command,
  /// Log line format.
  #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
  log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
  /// Serve the workers of a config file.
  Serve {
    #[arg(long, short)]
    config: PathBuf,
    /// Executor threads (overrides runtime.threads).
    #[arg(long)]
    threads: Option<usize>,
    /// Reload when the config file or a worker's files change.
    #[arg(long)]
    watch: bool,
  },
  /// Serve one worker on plain HTTP for any host (development).
  Dev {
    /// The worker's main module, or its wrangler config (wrangler.toml,
    /// wrangler.json, wrangler.jsonc, or a folder holding one).
    main: PathBuf,
    /// The wrangler config's [env.<name>] to use.
    #[arg(long = "env")]
    wrangler_env: Option<String>,
    #[arg(long, default_value_t = 8787)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// A var for the worker's env, NAME=VALUE (repeatable).
    #[arg(long = "var", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// A KV namespace on env, BINDING or BINDING=NAMESPACE (repeatable),
    /// kept in .edge-state/ of the current folder.
    #[arg(long = "kv", value_parser = parse_kv)]
    kv: Vec<edge::KvBinding>,
    /// A D1 database on env, BINDING or BINDING=DATABASE (repeatable), kept
    /// in .edge-state/ of the current folder.
    #[arg(long = "d1", value_parser = parse_d1)]
    d1: Vec<edge::D1Binding>,
    /// An R2 bucket on env, BINDING or BINDING=BUCKET (repeatable), kept in
    /// .edge-state/ of the current folder.
    #[arg(long = "r2", value_parser = parse_r2)]
    r2: Vec<edge::R2Binding>,
    /// A compatibility flag (repeatable): nodejs_compat, nodejs_als.
    #[arg(long = "compatibility-flag", alias = "compatibility-flags")]
    compatibility_flags: Vec<String>,
    /// Secrets for env from an env file (NAME=value lines). Default:
    /// .dev.vars in the current folder, else beside the main module, as
    /// wrangler reads it.
    #[arg(long = "env-file")]
    env_file: Option<PathBuf>,
    /// Executor threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Reload when the worker's files change.
    #[arg(long)]
    watch: bool,
    /// Serve /__scheduled?cron=... to run the worker's scheduled() (as
    /// wrangler dev --test-scheduled).
    #[arg(long)]
    test_scheduled: bool,
  },
  /// Load and evaluate workers as a start would, serving nothing: the
  /// workers of a config file, or one worker (a wrangler config, its
  /// folder, or a main module). Exit 1 naming the first that fails.
  Check {
    /// A config file (edge.toml).
    #[arg(long, short, conflicts_with = "target")]
    config: Option<PathBuf>,
    /// One worker: its wrangler config (or folder), or its main module.
    target: Option<PathBuf>,
    /// The wrangler config's [env.<name>] to use.
    #[arg(long = "env")]
    wrangler_env: Option<String>,
  },
  /// Make a new worker project (wrangler.toml, src/index.ts) in a folder.
  Init {
    /// The folder (made if missing; default: the current one).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The worker's name (default: the folder's).
    #[arg(long)]
    name: Option<String>,
  },
  /// Follow a worker's requests and console lines on a node (as wrangler
  /// tail).
  Tail {
    /// The worker's name.
    name: String,
    /// The node's admin API, http://host:port.
    #[arg(long)]
    admin: String,
    /// A file holding the admin token (default: EDGE_ADMIN_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// `json`: the node's JSON lines as they come; `pretty` (default): a
    /// line each for people.
    #[arg(long, default_value = "pretty")]
    format: String,
  },
  /// Upload a worker to a node's admin API (as wrangler deploy).
  Deploy(deploy::DeployArgs),
}

/// SIGTERM, SIGINT and SIGHUP, taken from their default actions now (on
/// `rt`'s signal driver).
fn signals(
  rt: &tokio::runtime::Runtime,
) -> std::io::Result<(
  tokio::signal::unix::Signal,
  tokio::signal::unix::Signal,
  tokio::signal::unix::Signal,
)> {
  let _in = rt.enter();
  Ok((
    signal(SignalKind::terminate())?,
    signal(SignalKind::interrupt())?,
    signal(SignalKind::hangup())?,
  ))
}

fn parse_var(s: &str) -> Result<(String, String), String> {
  s.split_once('=')
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .ok_or_else(|| format!("{s:?}: use NAME=VALUE"))
}

/// `BINDING` or `BINDING=STORE`.
fn parse_binding(s: &str) -> (String, Option<String>) {
  match s.split_once('=') {
    Some((b, n)) => (b.to_string(), Some(n.to_string())),
    None => (s.to_string(), None),
  }
}

fn parse_kv(s: &str) -> Result<edge::KvBinding, String> {
  let (binding, namespace) = parse_binding(s);
  Ok(edge::KvBinding { binding, namespace })
}

fn parse_d1(s: &str) -> Result<edge::D1Binding, String> {
  let (binding, database) = parse_binding(s);
  Ok(edge::D1Binding { binding, database })
}

fn parse_r2(s: &str) -> Result<edge::R2Binding, String> {
  let (binding, bucket_name) = parse_binding(s);
  Ok(edge::R2Binding { binding, bucket_name })
}

/// Where a reload reads its config from.
enum Source {
  File { path: PathBuf, threads: Option<usize> },
  Fixed(Box<Config>),
}

impl Source {
  fn load(&self) -> anyhow::Result<Config> {
    Ok(match self {
      Self::File { path, threads } => {
        let mut c = Config::load(path)?;
        if let Some(t) = threads {
          c.runtime.threads = *t;
        }
        c
      }
      Self::Fixed(c) => (**c).clone(),
    })
  }

  /// Changes when the config file, a worker's folder or a certificate or
  /// key file changes.
  fn stamp(&self, config: &Config) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let file = |path: &std::path::Path, h: &mut std::collections::hash_map::DefaultHasher| {
      let md = std::fs::metadata(path).ok();
      md.map(|m| (m.len(), m.modified().ok())).hash(h);
    };
    if let Self::File { path, .. } = self {
      file(path, &mut h);
    }
    for t in &config.tls {
      for p in [&t.cert, &t.key].into_iter().flatten() {
        file(&config.resolve(p), &mut h);
      }
    }
    for w in &config.workers {
      if let Some(path) = &w.wrangler {
        file(path, &mut h);
      }
      if let Some(root) = config.resolve(&w.main).parent() {
        edge::internals::worker::folder_stamp(root, &mut h);
      }
    }
    h.finish()
  }
}

fn main() -> anyhow::Result<()> {
  let cli = Cli::parse();
  edge::internals::pool::set_release_freed(release_freed);
  let _log = edge::internals::logging::init(cli.log_format);
  let (source, watch) = match cli.command {
    Command::Deploy(args) => return deploy::run(args),
    Command::Init { dir, name } => return init::run(&dir, name.as_deref()),
    Command::Tail {
      name,
      admin,
      token_file,
      format,
    } => return tail::run(&name, &admin, token_file, format == "json"),
    Command::Check {
      config,
      target,
      wrangler_env,
    } => return check(config, target, wrangler_env.as_deref()),
    Command::Serve { config, threads, watch } => (Source::File { path: config, threads }, watch),
    Command::Dev {
      main,
      wrangler_env,
      port,
      host,
      vars,
      kv,
      d1,
      r2,
      compatibility_flags,
      env_file,
      threads,
      watch,
      test_scheduled,
    } => (
      Source::Fixed(Box::new(dev_config(
        &main,
        wrangler_env.as_deref(),
        port,
        host,
        vars,
        (kv, d1, r2),
        compatibility_flags,
        env_file,
        threads,
        test_scheduled,
      )?)),
      watch,
    ),
  };
  let config = source.load()?;
  if config.listen.http.is_none() && config.listen.https.is_none() {
    anyhow::bail!("{}: listen: set listen.http, listen.https or both", config.origin);
  }
  // A process of a supervisor: its listeners are handed down.
  let inherited = supervisor::inherited_listeners();
  let supervised = inherited.is_some();
  if let (Source::File { path, threads }, false) = (&source, supervised) {
    if config.runtime.processes > 1 {
      config.validate()?;
      let stamp = |c: &Config| source.stamp(c);
      let load = || source.load();
      let watch = watch.then_some(supervisor::Watch {
        stamp: &stamp,
        load: &load,
      });
      return supervisor::run(&config, path, *threads, watch);
    }
  }
  let drain_timeout = Duration::from_secs(config.server.drain_timeout_s);
  // The signals are this process's before it says it listens: one sent as
  // soon as the "listening" line shows must not meet the default action
  // (which ends the process without a drain).
  let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
  let (mut term, mut int, mut hup) = signals(&rt)?;
  let mut stamp = source.stamp(&config);
  let mut last = config.clone();
  let engine = match inherited {
    Some((http, https)) => {
      // The supervisor serves the admin listener and reaches this
      // process over its link.
      let mut config = config;
      config.admin.listen = None;
      let mut b = Engine::builder(config).listeners(http, https);
      if let Some(link) = supervisor::link() {
        b = b.supervisor_link(link);
      }
      match b.start() {
        Ok(e) => e,
        // Replacing this process would fail the same way: the supervisor
        // stops on this code.
        Err(e @ edge::StartError::Worker { .. }) => {
          eprintln!("Error: {e}");
          std::process::exit(supervisor::CANNOT_START);
        }
        Err(e) => return Err(e.into()),
      }
    }
    None => Engine::start(config)?,
  };
  if let Some(a) = engine.http_addr() {
    tracing::info!("listening on http://{a}");
  }
  if let Some(a) = engine.https_addr() {
    tracing::info!("listening on https://{a}");
  }
  if let Some(a) = engine.admin_addr() {
    tracing::info!("admin API on http://{a}");
  }
  let drained = rt.block_on(async {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut health = tokio::time::interval(Duration::from_millis(100));
    loop {
      let why = tokio::select! {
        _ = term.recv() => break,
        _ = int.recv() => break,
        _ = hup.recv() => "SIGHUP",
        _ = health.tick(), if supervised => {
          // A wedged executor thread will not come back: this process
          // ends so that its supervisor replaces it (its in-flight
          // requests fail; the other processes go on).
          if engine.stats().wedged_threads > 0 {
            eprintln!("an executor thread is wedged: this process exits to be replaced");
            // SAFETY: _exit ends the process at once, running nothing of
            // the wedged threads' state.
            unsafe { libc::_exit(70) };
          }
          continue;
        }
        _ = tick.tick(), if watch => {
          let now = source.stamp(&last);
          if now == stamp {
            continue;
          }
          // Not again for the same files if this reload is refused.
          stamp = now;
          "files changed"
        }
      };
      tracing::info!("{why}: reloading");
      if let Some(c) = reload(&engine, &source).await {
        stamp = source.stamp(&c);
        last = c;
      }
    }
    tracing::info!(
      "stopping: finishing requests in flight (up to {} s; a second signal exits at once)",
      drain_timeout.as_secs()
    );
    // The process ends at drain_timeout whatever its threads do: one
    // wedged in a builtin that no limit stops would never join, and the
    // node would outlive its SIGTERM.
    let exit_at = drain_timeout;
    std::thread::Builder::new().name("edge-exit".into()).spawn(move || {
      std::thread::sleep(exit_at);
      eprintln!("drain timeout: a thread has not stopped; exiting now");
      std::process::exit(1);
    })?;
    tokio::spawn(async move {
      tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
      }
      eprintln!("second signal: exiting now");
      std::process::exit(1);
    });
    // Requests get the drain time less a little for the threads to stop.
    let margin = (drain_timeout / 4).min(Duration::from_secs(1));
    anyhow::Ok(engine.drain(drain_timeout - margin).await)
  })?;
  engine.shutdown();
  tracing::info!(drained, "stopped");
  Ok(())
}

/// Loads the config again and applies it; a broken one is logged and the
/// running one stays.
async fn reload(engine: &Engine, source: &Source) -> Option<Config> {
  let config = match source.load() {
    Ok(c) => c,
    Err(e) => {
      tracing::error!("reload refused, the running config stays: {e:#}");
      return None;
    }
  };
  match engine.reload(config.clone()).await {
    Ok(_) => Some(config),
    Err(e) => {
      tracing::error!("reload refused, the running config stays: {e}");
      None
    }
  }
}

/// `edge check`: the workers of `config`, or the one worker `target`.
fn check(config: Option<PathBuf>, target: Option<PathBuf>, wrangler_env: Option<&str>) -> anyhow::Result<()> {
  let config = match (config, target) {
    (Some(path), _) => Config::load(&path)?,
    (None, Some(target)) => dev_config(
      &target,
      wrangler_env,
      0,
      std::net::Ipv4Addr::LOCALHOST.into(),
      Vec::new(),
      Default::default(),
      Vec::new(),
      None,
      Some(1),
      false,
    )?,
    (None, None) => {
      anyhow::bail!("edge check needs --config FILE or a worker (wrangler config, folder or main module)")
    }
  };
  let n = Engine::builder(config).check()?;
  println!("ok: {n} worker{} loaded and evaluated", if n == 1 { "" } else { "s" });
  Ok(())
}

#[allow(clippy::too_many_arguments)]
fn dev_config(
  main: &Path,
  wrangler_env: Option<&str>,
  port: u16,
  host: std::net::IpAddr,
  vars: Vec<(String, String)>,
  (kv, d1, r2): (Vec<edge::KvBinding>, Vec<edge::D1Binding>, Vec<edge::R2Binding>),
  compatibility_flags: Vec<String>,
  env_file: Option<PathBuf>,
  threads: Option<usize>,
  test_scheduled: bool,
) -> anyhow::Result<Config> {
  let main = main.canonicalize().with_context(|| format!("{}", main.display()))?;
  // A wrangler project: the worker as its config says, on every host.
  let from_wrangler = match edge::config::wrangler::find(&main) {
    Some(file) => {
      let w = edge::config::wrangler::load(&file, wrangler_env).map_err(anyhow::Error::msg)?;
      for n in &w.notes {
        tracing::warn!("{}: {n}", file.display());
      }
      Some((file, w.worker))
    }
    None if wrangler_env.is_some() => anyhow::bail!("--env needs a wrangler config"),
    None => None,
  };
  let main = match &from_wrangler {
    Some((_, w)) => w.main.clone(),
    None => main,
  };
  let secrets_file = env_file.or_else(|| {
    let here = Path::new(".dev.vars");
    // Beside the wrangler config, as wrangler reads it, else the module.
    let beside = match &from_wrangler {
      Some((file, _)) => file.parent(),
      None => main.parent(),
    }
    .map(|d| d.join(".dev.vars"));
    if here.is_file() {
      Some(here.to_path_buf())
    } else {
      beside.filter(|p| p.is_file())
    }
  });
  if let Some(p) = &secrets_file {
    tracing::info!("secrets from {}", p.display());
  }
  let name = main.file_stem().and_then(|s| s.to_str()).unwrap_or("worker");
  let name: String = name
    .chars()
    .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
    .collect();
  let mut worker = match from_wrangler {
    Some((file, w)) => WorkerConfig {
      wrangler: Some(file),
      ..w
    },
    None => WorkerConfig {
      name,
      main,
      ..Default::default()
    },
  };
  worker.routes = vec!["*".into()];
  worker.vars.extend(vars);
  worker.kv.extend(kv);
  worker.d1.extend(d1);
  worker.r2.extend(r2);
  for f in compatibility_flags {
    if !worker.compatibility_flags.contains(&f) {
      worker.compatibility_flags.push(f);
    }
  }
  worker.secrets_file = secrets_file;
  worker.allow_private_network = true;
  let config = Config {
    listen: Listen {
      http: Some(SocketAddr::new(host, port)),
      https: None,
    },
    workers: vec![worker],
    origin: "edge dev".into(),
    base_dir: std::env::current_dir()?,
    dev: true,
    test_scheduled,
    runtime: edge::config::RuntimeConfig {
      threads: threads.unwrap_or(0),
      ..Default::default()
    },
    ..Default::default()
  };
  config.validate()?;
  Ok(config)
}
