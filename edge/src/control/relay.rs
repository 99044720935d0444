//! The supervisor's admin API (`runtime.processes` > 1): its processes
//! reached over their links ([`super::link`]). The data directory is the
//! deploys' source of truth, written here alone:
//!
//! 1. a `PUT` or `DELETE` of a worker is checked on one process
//!    (`?dry_run`: the upload, its routes, its code loaded in an isolate);
//!    refused there, it is refused, and nothing changed anywhere;
//! 2. it is committed to the data directory (a process started from now
//!    on serves it);
//! 3. it is made on every process. One that does not take it (an error, no
//!    answer in [`CHANGE_WAIT`]) is killed: the supervisor replaces it,
//!    and the new process starts from the data directory.
//!
//! Changes are made one at a time. `/metrics` is every process's, summed;
//! other reads are answered by one process.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};

use super::api::{self, Reply};
use super::link::{Answer, Asked, Link};
use super::store;
use crate::error::DeployError;

/// How long a process may take to answer a change or a check of one.
pub const CHANGE_WAIT: Duration = Duration::from_secs(60);
/// How long it may take to answer a read (its metrics, its workers).
pub const READ_WAIT: Duration = Duration::from_secs(2);

struct Linked {
  link: Link,
  pid: u32,
}

/// The supervisor's processes, as its admin API reaches them.
pub struct Relay {
  slots: Vec<Mutex<Option<Linked>>>,
  data_dir: Option<PathBuf>,
  /// One change at a time.
  serial: tokio::sync::Mutex<()>,
}

impl Relay {
  /// `processes` slots, none linked yet; uploads kept in `data_dir`
  /// (without one, deploys are refused: a replaced process would not have
  /// them).
  pub fn new(processes: usize, data_dir: Option<PathBuf>) -> Arc<Self> {
    Arc::new(Self {
      slots: (0..processes).map(|_| Mutex::new(None)).collect(),
      data_dir,
      serial: tokio::sync::Mutex::new(()),
    })
  }

  /// Process `i` (pid `pid`) answers on `stream` from now on.
  pub fn attach(&self, i: usize, stream: std::os::unix::net::UnixStream, pid: u32) {
    if let Some(slot) = self.slots.get(i) {
      *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Linked {
        link: Link::new(stream),
        pid,
      });
    }
  }

  /// Asks process `i`, blocking. `Ok(None)`: it has no link. On an error,
  /// or an answer `took` refuses, the process is killed (to be replaced)
  /// and unlinked, while the slot is still held (a replacement linked in
  /// the meantime is not touched).
  fn ask(
    &self,
    i: usize,
    asked: &Asked,
    wait: Duration,
    took: impl Fn(&Answer) -> bool,
  ) -> std::io::Result<Option<Answer>> {
    let mut slot = self.slots[i].lock().unwrap_or_else(|p| p.into_inner());
    let Some(linked) = slot.as_mut() else {
      return Ok(None);
    };
    let why = match linked.link.ask(asked, wait) {
      Ok(a) if took(&a) => return Ok(Some(a)),
      Ok(a) => format!("answered {} {}", a.status, String::from_utf8_lossy(&a.body).trim()),
      Err(e) => e.to_string(),
    };
    condemn(
      &mut slot,
      i,
      &format!(
        "{} {}: {why}; killed, to be replaced (it starts from the data directory)",
        asked.method, asked.path
      ),
    );
    Err(std::io::Error::other(why))
  }

  /// Process `i`'s metrics, if it answers in time (else it is left out of
  /// this sum; a late answer is skipped by the next ask).
  fn metrics_of(&self, i: usize) -> Option<String> {
    let asked = Asked {
      method: Method::GET,
      path: "/metrics".into(),
      content_type: None,
      body: Bytes::new(),
    };
    let mut slot = self.slots[i].lock().unwrap_or_else(|p| p.into_inner());
    let linked = slot.as_mut()?;
    match linked.link.ask(&asked, READ_WAIT) {
      Ok(a) if a.status.is_success() => String::from_utf8(a.body.to_vec()).ok(),
      Ok(a) => {
        tracing::warn!(process = i, "metrics answered {}", a.status);
        None
      }
      Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
        tracing::warn!(process = i, "metrics not answered in {READ_WAIT:?}: left out");
        None
      }
      Err(e) => {
        // Out of step: unlinked, and the process goes (it would not
        // take deploys either).
        condemn(&mut slot, i, &format!("metrics: {e}; killed, to be replaced"));
        None
      }
    }
  }

  /// The metrics of every process that answers, summed, after the
  /// supervisor's own. Blocking.
  pub fn metrics(&self) -> String {
    let texts: Vec<String> = (0..self.slots.len()).filter_map(|i| self.metrics_of(i)).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    format!(
      "# HELP edge_processes Server processes the supervisor runs (runtime.processes).\n\
       # TYPE edge_processes gauge\nedge_processes {}\n\
       # HELP edge_processes_reporting Processes whose metrics are summed below.\n\
       # TYPE edge_processes_reporting gauge\nedge_processes_reporting {}\n{}",
      self.slots.len(),
      texts.len(),
      edge_core::exposition::merge(&refs, &["edge_up", "edge_workers"])
    )
  }

  /// Asks the first process that answers (a process that fails is
  /// replaced, the next asked).
  async fn ask_one(self: &Arc<Self>, asked: Asked, wait: Duration) -> Result<Answer, DeployError> {
    let me = self.clone();
    tokio::task::spawn_blocking(move || {
      for i in 0..me.slots.len() {
        if let Ok(Some(a)) = me.ask(i, &asked, wait, |_| true) {
          return Ok(a);
        }
      }
      Err(DeployError::Unavailable(
        "no server process answered (they are being replaced): try again".into(),
      ))
    })
    .await
    .unwrap_or_else(|e| Err(DeployError::Unavailable(e.to_string())))
  }

  /// Answers an admin request that was let in.
  pub(super) async fn route<B>(self: &Arc<Self>, req: Request<B>) -> Reply
  where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
  {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if method == Method::GET && path == "/metrics" {
      let me = self.clone();
      let text = tokio::task::spawn_blocking(move || me.metrics())
        .await
        .unwrap_or_default();
      return api::metrics_reply(text);
    }
    let changes = matches!(method, Method::PUT | Method::DELETE) && !api::dry_run(req.uri());
    let name = path.strip_prefix("/workers/").map(str::to_string);
    let path_and_query = req.uri().path_and_query().map_or(path.clone(), |p| p.to_string());
    let content_type = req
      .headers()
      .get(http::header::CONTENT_TYPE)
      .and_then(|v| v.to_str().ok())
      .map(str::to_string);
    let body = match api::read_body(req.into_body()).await {
      Ok(b) => b,
      Err(e) => return e.to_response(),
    };
    let asked = Asked {
      method,
      path: path_and_query,
      content_type,
      body,
    };
    let answered = match name {
      Some(name) if changes => self.change(&name, asked).await,
      _ => self.ask_one(asked, CHANGE_WAIT).await,
    };
    answered.map_or_else(|e| e.to_response(), Answer::into_reply)
  }

  /// A deploy or removal of worker `name`: checked on one process, kept,
  /// made on every process.
  async fn change(self: &Arc<Self>, name: &str, asked: Asked) -> Result<Answer, DeployError> {
    let Some(dir) = self.data_dir.clone() else {
      return Err(DeployError::Conflict(
        "with runtime.processes > 1, uploads need admin.data_dir: every process serves them from there, \
         and so does one started in the place of another"
          .into(),
      ));
    };
    let _one_at_a_time = self.serial.lock().await;
    let mut check = asked.clone();
    check.path = format!(
      "{}{}dry_run",
      check.path,
      if check.path.contains('?') { "&" } else { "?" }
    );
    let checked = self.ask_one(check, CHANGE_WAIT).await?;
    if !checked.status.is_success() {
      return Ok(checked);
    }
    let put = asked.method == Method::PUT;
    if put {
      let changed = serde_json::from_slice::<serde_json::Value>(&checked.body)
        .ok()
        .and_then(|v| v.get("changed").and_then(|c| c.as_bool()));
      if changed == Some(false) {
        // This version is running already.
        return Ok(checked);
      }
    }
    let upload = match put {
      true => Some(api::parse_upload(name, asked.content_type.as_deref(), asked.body.clone()).await?),
      false => None,
    };
    let (d, n) = (dir.clone(), name.to_string());
    tokio::task::spawn_blocking(move || match upload {
      Some(upload) => store::store(&d, &upload),
      None => store::remove(&d, &n),
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(|e| DeployError::Storage(format!("{}: {e}", dir.display())))?;
    // Committed: from here on the change stands. Every process makes it
    // (one that had started from the data directory already answers
    // "unchanged", or 404 for a removal).
    let me = self.clone();
    tokio::task::spawn_blocking(move || {
      for i in 0..me.slots.len() {
        let _ = me.ask(i, &asked, CHANGE_WAIT, |a| {
          a.status.is_success() || (!put && a.status == StatusCode::NOT_FOUND)
        });
      }
    })
    .await
    .map_err(|e| DeployError::Unavailable(e.to_string()))?;
    Ok(checked)
  }
}

/// Kills the process in `slot` (the supervisor replaces it) and unlinks
/// it, said with `why`; the caller holds the slot, so a replacement linked
/// meanwhile is not touched.
fn condemn(slot: &mut Option<Linked>, i: usize, why: &str) {
  if let Some(linked) = slot.take() {
    tracing::error!(process = i, pid = linked.pid, "{why}");
    // SAFETY: kill() sends a signal to the pid of a child of this process,
    // nothing else.
    unsafe { libc::kill(linked.pid as i32, libc::SIGKILL) };
  }
}
