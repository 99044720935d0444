//! `[runtime] processes = N` (N > 1): this process binds the listeners and
//! supervises N `edge serve` children that accept on them. A child that
//! exits (a panic, a V8 fatal error, an abort), wedges (it exits itself
//! when an executor thread has not come back from a termination within
//! its bound) or grows past its share of `runtime.max_memory_mb` (killed)
//! is replaced at once; only its in-flight requests fail, the others keep
//! serving. SIGHUP is passed on (each child reloads the config file);
//! SIGTERM/SIGINT drain every child, killed at the drain timeout; with
//! `--watch`, a change to the config file or a worker's folder is a
//! SIGHUP to every child. With `[admin] listen`, the supervisor serves the
//! admin API there (`edge::internals::admin::Relay`): each child answers
//! through a socket pair at fd 5; uploads are checked on one child, kept
//! in `admin.data_dir` (written by the supervisor alone; children read it
//! at start), then made on every child; `/metrics` is summed.

use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use edge::config::Config;
use edge::internals::admin::Relay;

/// The fds a child finds its listeners at (plain HTTP, TLS).
const HTTP_FD: i32 = 3;
const HTTPS_FD: i32 = 4;
/// Set in a child's environment: which listeners it was given.
pub const CHILD_ENV: &str = "EDGE_SUPERVISED";
/// Where a child answers the supervisor's admin requests.
const LINK_FD: i32 = 5;
const LINK_ENV: &str = "EDGE_LINK_FD";

/// How often children are looked at.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A child that exits within this of its start counts toward a crash loop,
/// which slows its restarts to one a second.
const QUICK_EXIT: Duration = Duration::from_secs(2);

struct Slot {
  child: Option<Child>,
  started: Instant,
  quick_exits: u32,
}

/// `--watch`: what the supervisor looks at (every half second) to tell its
/// children to reload.
pub struct Watch<'a> {
  /// Changes when the config file or a worker's folder changes.
  pub stamp: &'a dyn Fn(&Config) -> u64,
  /// The config as the file says now.
  pub load: &'a dyn Fn() -> anyhow::Result<Config>,
}

/// Runs the supervisor until SIGTERM/SIGINT and the children's drain.
pub fn run(config: &Config, config_path: &Path, threads: Option<usize>, watch: Option<Watch>) -> anyhow::Result<()> {
  let n = config.runtime.processes;
  // The signals are ours before anything is said or started (see main.rs).
  let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
  let (mut term, mut int, mut hup) = super::signals(&rt)?;
  let http = config.listen.http.map(std::net::TcpListener::bind).transpose()?;
  let https = config.listen.https.map(std::net::TcpListener::bind).transpose()?;
  if let Some(l) = &http {
    tracing::info!("listening on http://{}", l.local_addr()?);
  }
  if let Some(l) = &https {
    tracing::info!("listening on https://{}", l.local_addr()?);
  }
  let share = memory_share(config);
  tracing::info!("supervising {n} processes, each replaced past {} MiB", share >> 20);
  let fds = (
    http.as_ref().map(|l| l.as_raw_fd()),
    https.as_ref().map(|l| l.as_raw_fd()),
  );
  let data_dir = config.admin.data_dir.as_ref().map(|d| config.resolve(d));
  if let Some(dir) = &data_dir {
    // What a crash left half done is removed before any child reads it.
    let kept = edge::internals::admin::load_stored(dir, edge::internals::admin::Tidy::Yes);
    tracing::info!("{}: {} uploaded workers", dir.display(), kept.len());
  }
  let relay = Relay::new(n, data_dir);
  let spawn = |i: usize| -> std::io::Result<Child> {
    let (ours, theirs) = UnixStream::pair()?;
    let link_fd = theirs.as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("serve").arg("--config").arg(config_path);
    if let Some(t) = threads {
      cmd.arg("--threads").arg(t.to_string());
    }
    let given = format!("{}:{}", fds.0.map_or(-1, |_| HTTP_FD), fds.1.map_or(-1, |_| HTTPS_FD));
    cmd
      .env(CHILD_ENV, given)
      .env("EDGE_PROCESS", i.to_string())
      .env(LINK_ENV, LINK_FD.to_string());
    let (a, b) = fds;
    // SAFETY: between fork and exec only async-signal-safe calls: fcntl,
    // dup2 (whose copies stay open across exec) and prctl.
    unsafe {
      cmd.pre_exec(move || {
        // Copied out of the way first: a source may sit at 3, 4 or 5.
        let mut high = [None, None, None];
        for (k, from) in [a, b, Some(link_fd)].into_iter().enumerate() {
          if let Some(from) = from {
            let fd = libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 100);
            if fd < 0 {
              return Err(std::io::Error::last_os_error());
            }
            high[k] = Some(fd);
          }
        }
        for (from, to) in high.into_iter().zip([HTTP_FD, HTTPS_FD, LINK_FD]) {
          if let Some(from) = from {
            if libc::dup2(from, to) < 0 {
              return Err(std::io::Error::last_os_error());
            }
          }
        }
        // The child goes with the supervisor.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        Ok(())
      });
    }
    let child = cmd.spawn()?;
    drop(theirs);
    relay.attach(i, ours, child.id());
    Ok(child)
  };
  let _admin = match (config.admin.listen, config.admin_token()?) {
    (Some(addr), Some(token)) => {
      let admin =
        edge::internals::admin::AdminServer::relaying(relay.clone(), std::net::TcpListener::bind(addr)?, token)?;
      tracing::info!(
        "admin API on http://{} (deploys made on every process, metrics summed)",
        admin.addr
      );
      Some(admin)
    }
    _ => None,
  };
  let mut slots: Vec<Slot> = Vec::with_capacity(n);
  for i in 0..n {
    slots.push(Slot {
      child: Some(spawn(i)?),
      started: Instant::now(),
      quick_exits: 0,
    });
  }
  let drain = Duration::from_secs(config.server.drain_timeout_s);
  rt.block_on(async {
    let mut tick = tokio::time::interval(LOOK_EVERY);
    let mut watch_tick = tokio::time::interval(Duration::from_millis(500));
    // The workers' folders of the config last read, and their stamp.
    let mut watched = config.clone();
    let mut stamp = watch.as_ref().map(|w| (w.stamp)(&watched));
    loop {
      tokio::select! {
        _ = term.recv() => break,
        _ = int.recv() => break,
        _ = hup.recv() => {
          tracing::info!("SIGHUP: passed on to every process");
          for s in &slots {
            signal_child(s, libc::SIGHUP);
          }
        }
        _ = tick.tick() => look(&mut slots, share, &spawn),
        _ = watch_tick.tick(), if watch.is_some() => {
          let Some(w) = watch.as_ref() else { continue };
          let now = (w.stamp)(&watched);
          if Some(now) == stamp {
            continue;
          }
          tracing::info!("files changed: every process reloads");
          for s in &slots {
            signal_child(s, libc::SIGHUP);
          }
          // A new worker's folder is watched from now on (a config the
          // processes refuse is said in their logs).
          if let Ok(c) = (w.load)() {
            watched = c;
          }
          stamp = Some((w.stamp)(&watched));
        }
      }
    }
    tracing::info!("stopping: every process drains (up to {} s)", drain.as_secs());
    for s in &slots {
      signal_child(s, libc::SIGTERM);
    }
    let until = Instant::now() + drain + Duration::from_secs(2);
    while slots
      .iter_mut()
      .any(|s| s.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none()))
    {
      if Instant::now() >= until {
        tracing::warn!("a process has not ended at the drain timeout: killed");
        for s in &mut slots {
          if let Some(c) = s.child.as_mut() {
            let _ = c.kill();
          }
        }
        break;
      }
      tokio::time::sleep(LOOK_EVERY).await;
    }
    anyhow::Ok(())
  })?;
  tracing::info!("stopped");
  Ok(())
}

fn signal_child(s: &Slot, sig: i32) {
  if let Some(c) = &s.child {
    // SAFETY: kill with a child's pid sends it a signal, nothing else.
    unsafe { libc::kill(c.id() as i32, sig) };
  }
}

/// The exit code of a process that cannot start because a worker of the
/// config does not (a replacement would fail the same way): the supervisor
/// then stops too.
pub const CANNOT_START: i32 = 78;

/// Replaces children that exited or outgrew their share.
fn look(slots: &mut [Slot], share: u64, spawn: &dyn Fn(usize) -> std::io::Result<Child>) {
  for (i, s) in slots.iter_mut().enumerate() {
    let Some(child) = s.child.as_mut() else {
      // Waiting out a crash loop.
      if s.started.elapsed() >= Duration::from_secs(1) {
        respawn(i, s, spawn);
      }
      continue;
    };
    match child.try_wait() {
      Ok(Some(status)) if status.code() == Some(CANNOT_START) => {
        tracing::error!(
          process = i,
          "a worker of the config does not start (the error above names it): stopping"
        );
        std::process::exit(1);
      }
      Ok(Some(status)) => {
        tracing::error!(process = i, pid = child.id(), "process ended ({status}): replaced");
        if s.started.elapsed() < QUICK_EXIT {
          s.quick_exits += 1;
        } else {
          s.quick_exits = 0;
        }
        s.child = None;
        if s.quick_exits >= 3 {
          tracing::error!(
            process = i,
            "ended {} times within {QUICK_EXIT:?} of its start: restarted in a second",
            s.quick_exits
          );
          s.started = Instant::now();
        } else {
          respawn(i, s, spawn);
        }
      }
      Ok(None) => {
        let rss = resident_bytes(child.id());
        if share > 0 && rss > share {
          tracing::error!(
            process = i,
            pid = child.id(),
            "process holds {} MiB, over its share of runtime.max_memory_mb ({} MiB): killed and replaced",
            rss >> 20,
            share >> 20
          );
          let _ = child.kill();
          let _ = child.wait();
          s.child = None;
          respawn(i, s, spawn);
        }
      }
      Err(e) => tracing::error!(process = i, "cannot look at the process: {e}"),
    }
  }
}

fn respawn(i: usize, s: &mut Slot, spawn: &dyn Fn(usize) -> std::io::Result<Child>) {
  match spawn(i) {
    Ok(c) => {
      tracing::info!(process = i, pid = c.id(), "process started");
      s.child = Some(c);
    }
    Err(e) => tracing::error!(process = i, "cannot start a process: {e}"),
  }
  s.started = Instant::now();
}

/// A process's resident memory, in bytes (0 if it cannot be read).
fn resident_bytes(pid: u32) -> u64 {
  let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
  let pages: u64 = statm
    .split_whitespace()
    .nth(1)
    .and_then(|p| p.parse().ok())
    .unwrap_or(0);
  // SAFETY: sysconf reads a system constant.
  let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
  pages * page
}

/// Each process's share of the node's memory ceiling, in bytes.
fn memory_share(config: &Config) -> u64 {
  let mb = match config.runtime.max_memory_mb {
    0 => machine_memory_mb() / 10 * 9,
    mb => mb,
  };
  (mb << 20) / config.runtime.processes as u64
}

/// The memory this process may use: its cgroup's limit, else the
/// machine's, in MiB.
fn machine_memory_mb() -> u64 {
  let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
    .ok()
    .and_then(|s| s.trim().parse::<u64>().ok());
  let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
    m.lines()
      .find(|l| l.starts_with("MemTotal:"))
      .and_then(|l| l.split_whitespace().nth(1))
      .and_then(|kb| kb.parse::<u64>().ok())
      .map(|kb| kb << 10)
  });
  let bytes = match (cgroup, meminfo) {
    (Some(c), Some(m)) => c.min(m),
    (c, m) => c.or(m).unwrap_or(0),
  };
  bytes >> 20
}

/// In a supervised child: its end of the supervisor's link.
pub fn link() -> Option<UnixStream> {
  let fd = std::env::var(LINK_ENV).ok()?.parse::<i32>().ok()?;
  // SAFETY: the supervisor put one end of a socket pair at this fd for
  // this process alone, and nothing else here owns it.
  Some(unsafe { UnixStream::from_raw_fd(fd) })
}

/// In a supervised child: the listeners the supervisor handed down.
pub fn inherited_listeners() -> Option<(Option<std::net::TcpListener>, Option<std::net::TcpListener>)> {
  let given = std::env::var(CHILD_ENV).ok()?;
  let (a, b) = given.split_once(':')?;
  let take = |fd: &str| -> Option<std::net::TcpListener> {
    let fd: i32 = fd.parse().ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the supervisor put a listening socket at this fd for this
    // process alone, and nothing else here owns it.
    Some(unsafe { std::net::TcpListener::from_raw_fd(fd) })
  };
  Some((take(a), take(b)))
}
