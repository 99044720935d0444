//! The `edge` command: `edge serve --config edge.toml` runs the server from
//! a config file; `edge dev worker.js` serves one worker on plain HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge::config::{Config, Listen, WorkerConfig};
use edge::logging::LogFormat;
use edge::Engine;

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
  },
  /// Serve one worker on plain HTTP for any host (development).
  Dev {
    /// The worker's main module.
    main: PathBuf,
    #[arg(long, default_value_t = 8787)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// A var for the worker's env, NAME=VALUE (repeatable).
    #[arg(long = "var", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Executor threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
  },
}

fn parse_var(s: &str) -> Result<(String, String), String> {
  s.split_once('=')
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .ok_or_else(|| format!("{s:?}: use NAME=VALUE"))
}

fn main() -> anyhow::Result<()> {
  let cli = Cli::parse();
  edge::logging::init(cli.log_format);
  let config = match cli.command {
    Command::Serve { config, threads } => {
      let mut c = Config::load(&config)?;
      if let Some(t) = threads {
        c.runtime.threads = t;
      }
      c
    }
    Command::Dev {
      main,
      port,
      host,
      vars,
      threads,
    } => {
      let main = main.canonicalize().with_context(|| format!("{}", main.display()))?;
      let name = main.file_stem().and_then(|s| s.to_str()).unwrap_or("worker");
      let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
      Config {
        listen: Listen {
          http: Some(SocketAddr::new(host, port)),
          https: None,
        },
        workers: vec![WorkerConfig {
          name,
          main,
          routes: vec!["*".into()],
          vars: vars.into_iter().collect(),
          allow_private_network: true,
          ..Default::default()
        }],
        origin: "edge dev".into(),
        base_dir: std::env::current_dir()?,
        dev: true,
        runtime: edge::config::RuntimeConfig {
          threads: threads.unwrap_or(0),
          ..Default::default()
        },
        ..Default::default()
      }
    }
  };
  if config.listen.http.is_none() && config.listen.https.is_none() {
    anyhow::bail!("{}: listen: set listen.http, listen.https or both", config.origin);
  }
  let engine = Engine::start(config)?;
  if let Some(a) = engine.http_addr() {
    tracing::info!("listening on http://{a}");
  }
  if let Some(a) = engine.https_addr() {
    tracing::info!("listening on https://{a}");
  }
  let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
  rt.block_on(async {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
      _ = tokio::signal::ctrl_c() => {}
      _ = term.recv() => {}
    }
    anyhow::Ok(())
  })?;
  tracing::info!("shutting down");
  engine.shutdown();
  Ok(())
}
