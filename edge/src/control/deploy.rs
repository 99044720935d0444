//! Changing the running workers without a restart: uploads through the
//! admin API, removals, and config reloads (SIGHUP, `--watch`). Each change
//! is checked first (the new version is loaded and evaluated in an
//! isolate), then made visible at once by swapping the router; requests
//! already running finish on the version they started with, and the old
//! version's isolates are dropped when they are done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::store::Tidy;

use crate::config::Config;
use crate::error::DeployError;
use crate::exec::jobs::Job;
use crate::front::routing::Router;
use crate::front::tls::CertStore;
use crate::front::view::ServingView;
use crate::obs::stats::Stats;
use crate::threads::Executors;
use crate::worker::{Origin, Upload, Worker, WorkerSpec};

/// The running set of workers (changed only under the [`Deployer`]'s lock).
pub struct Deployments {
  /// The config of record: the config file's workers came from it, and
  /// deployed workers take their default limits from it.
  config: Config,
  /// The `[[tls]]` section and its files as the serving certificates were
  /// read from them: a reload reads the certificates again when this
  /// changes.
  tls: TlsStamp,
  from_config: BTreeMap<String, Arc<Worker>>,
  from_api: BTreeMap<String, Arc<Worker>>,
}

impl Deployments {
  /// The config's workers, then the uploads kept in `data_dir`; `tls` is
  /// the stamp of the certificates serving now (taken before they were
  /// read).
  pub fn load(
    config: Config,
    tls: TlsStamp,
    data_dir: Option<(&Path, Tidy)>,
    stats: &Stats,
  ) -> Result<Self, crate::error::ConfigError> {
    let mut from_config = BTreeMap::new();
    for (i, w) in config.workers.iter().enumerate() {
      let worker = Worker::from_config(&config, i, w, stats.worker(&w.name))?;
      from_config.insert(w.name.clone(), worker);
    }
    let mut d = Self {
      config,
      tls,
      from_config,
      from_api: BTreeMap::new(),
    };
    if let Some((dir, tidy)) = data_dir {
      d.add_stored(dir, tidy, stats);
    }
    Ok(d)
  }

  fn all(&self) -> impl Iterator<Item = &Arc<Worker>> {
    self.from_config.values().chain(self.from_api.values())
  }

  /// A router over every worker here.
  pub fn router(&self) -> Router {
    let workers: Vec<Arc<Worker>> = self.all().cloned().collect();
    Router::from_workers(&workers)
  }

  /// Adds the uploads kept under `dir` (at start). One whose name or a
  /// route is already taken (the config file's workers come first) is
  /// logged and left out.
  fn add_stored(&mut self, dir: &Path, tidy: Tidy, stats: &Stats) {
    for upload in super::store::load_stored(dir, tidy) {
      let clash = if self.from_config.contains_key(&upload.name) {
        Some("a worker of the config file has its name".to_string())
      } else {
        over_ceiling(&upload, &self.config.upload_ceiling())
          .or_else(|| route_conflict(&upload.name, &upload.meta.routes, &mut self.all()))
      };
      if let Some(why) = clash {
        tracing::error!(worker = %upload.name, "stored worker not loaded: {why}");
        continue;
      }
      let built = upload
        .spec()
        .and_then(|spec| Worker::from_spec(&self.config, &spec, stats.worker(&upload.name)));
      match built {
        Ok(w) => {
          self.from_api.insert(upload.name.clone(), w);
        }
        Err(e) => {
          stats.workers.remove(upload.name.as_str());
          tracing::error!(worker = %upload.name, "stored worker not loaded: {e}");
        }
      }
    }
  }
}

/// Why `upload` may not run here: a limit it sets above the server's
/// ceiling for uploads.
fn over_ceiling(upload: &Upload, ceiling: &edge_core::limits::Limits) -> Option<String> {
  let (field, value, max) = upload.meta.limits.over(ceiling)?;
  Some(format!(
    "limits.{field}: {value} is over this server's ceiling for uploaded workers, {max} (set by [limits] and [admin.max_limits])"
  ))
}

/// A route of the worker `name` claimed by another worker among `others`
/// (an older version of `name` itself does not count).
fn route_conflict(name: &str, routes: &[String], others: &mut dyn Iterator<Item = &Arc<Worker>>) -> Option<String> {
  let mine: Vec<String> = routes.iter().map(|r| r.to_ascii_lowercase()).collect();
  for o in others {
    if &*o.name == name {
      continue;
    }
    if let Some(r) = o.routes.iter().find(|r| mine.contains(&r.to_ascii_lowercase())) {
      return Some(format!("route {r:?} is claimed by worker {:?}", &*o.name));
    }
  }
  None
}

/// What a deploy did.
#[derive(Debug, Serialize)]
pub struct Deployed {
  pub name: String,
  pub version: String,
  /// False when the same version was already running.
  pub changed: bool,
}

/// What a reload did.
#[derive(Debug, Default, Serialize)]
pub struct Reloaded {
  pub added: Vec<String>,
  pub changed: Vec<String>,
  pub removed: Vec<String>,
  pub tls_changed: bool,
}

/// A worker as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct WorkerInfo {
  pub name: String,
  pub origin: Origin,
  pub version: String,
  pub routes: Vec<String>,
  pub modules: Vec<String>,
  pub vars: Vec<String>,
  /// How many secrets (never their names or values).
  pub secrets: usize,
  pub limits: LimitsInfo,
  pub isolates: i64,
  pub requests: u64,
}

#[derive(Debug, Serialize)]
pub struct LimitsInfo {
  pub cpu_ms: u128,
  pub memory_mb: usize,
  pub wall_ms: u128,
  pub request_body_mb: u64,
  pub subrequests: u32,
}

impl WorkerInfo {
  pub fn of(w: &Worker) -> Self {
    let l = &w.limits;
    Self {
      name: w.name.to_string(),
      origin: w.origin,
      version: w.version.clone(),
      routes: w.routes.clone(),
      modules: w.modules.clone(),
      vars: w
        .code
        .vars
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !w.secrets.contains(k))
        .cloned()
        .collect(),
      secrets: w.secrets.len(),
      limits: LimitsInfo {
        cpu_ms: l.cpu.as_millis(),
        memory_mb: l.memory_bytes >> 20,
        wall_ms: l.wall.as_millis(),
        request_body_mb: l.request_body_bytes >> 20,
        subrequests: l.subrequests,
      },
      isolates: w.stats.isolates.get(),
      requests: w.stats.responses.iter().map(|c| c.get()).sum(),
    }
  }
}

/// Owns the running set of workers and changes it: deploys, removals and
/// reloads, each checked on an executor first, then published into the
/// [`ServingView`].
pub struct Deployer {
  deployments: tokio::sync::Mutex<Deployments>,
  /// Where uploaded workers are kept (`[admin] data_dir`), if this
  /// process writes it (a supervised process only reads it at start: its
  /// supervisor writes it).
  data_dir: Option<PathBuf>,
  view: Arc<ServingView>,
  executors: Arc<Executors>,
  stats: Arc<Stats>,
}

impl Deployer {
  pub fn new(
    deployments: Deployments,
    data_dir: Option<PathBuf>,
    view: Arc<ServingView>,
    executors: Arc<Executors>,
  ) -> Self {
    Self {
      deployments: tokio::sync::Mutex::new(deployments),
      data_dir,
      stats: view.stats.clone(),
      view,
      executors,
    }
  }

  /// Makes the router serve the current set; every request routed after
  /// this sees it.
  fn publish(&self, d: &Deployments) {
    self.view.publish_router(d.router());
  }

  /// Drops `old`'s isolates once their requests finish, on every thread.
  fn retire(&self, old: &Arc<Worker>) {
    old.retire();
    self.executors.broadcast(|| Job::Retire(old.clone()));
  }

  /// Uploads a worker (or a new version of one), checked before it serves,
  /// and keeps it in the data directory if there is one.
  pub async fn deploy(&self, upload: Upload) -> Result<Deployed, DeployError> {
    self.deploy_or_check(upload, Apply::Yes).await
  }

  /// Everything [`Self::deploy`] checks (the upload, its routes, its code
  /// loaded in an isolate), without deploying it: `changed` says whether
  /// it would change the running version.
  pub async fn check_deploy(&self, upload: Upload) -> Result<Deployed, DeployError> {
    self.deploy_or_check(upload, Apply::No).await
  }

  async fn deploy_or_check(&self, upload: Upload, apply: Apply) -> Result<Deployed, DeployError> {
    upload.validate().map_err(DeployError::Invalid)?;
    let ceiling = self.deployments.lock().await.config.upload_ceiling();
    over_ceiling(&upload, &ceiling).map_or(Ok(()), |why| Err(DeployError::Invalid(why)))?;
    let spec = upload.spec().map_err(DeployError::Invalid)?;
    self.install(spec, Some(&upload), apply).await
  }

  /// Deploys a worker whose code comes from any module source (an
  /// embedder's); nothing is stored.
  pub async fn deploy_spec(&self, spec: WorkerSpec) -> Result<Deployed, DeployError> {
    spec.validate().map_err(DeployError::Invalid)?;
    self.install(spec, None, Apply::Yes).await
  }

  async fn install(&self, spec: WorkerSpec, upload: Option<&Upload>, apply: Apply) -> Result<Deployed, DeployError> {
    let mut d = self.deployments.lock().await;
    let r = self.install_locked(&mut d, spec, upload, apply).await;
    self.forget_dead(&d);
    r
  }

  /// Drops the counters of names no worker runs under: those a refused or
  /// dry-run deploy made (each would be a series in /metrics forever).
  fn forget_dead(&self, d: &Deployments) {
    self
      .stats
      .workers
      .retain(|name, _| d.from_api.contains_key(&**name) || d.from_config.contains_key(&**name));
  }

  async fn install_locked(
    &self,
    d: &mut Deployments,
    spec: WorkerSpec,
    upload: Option<&Upload>,
    apply: Apply,
  ) -> Result<Deployed, DeployError> {
    let name = spec.name.clone();
    if d.from_config.contains_key(&name) {
      return Err(DeployError::ConfigOwned { name });
    }
    let version = spec.version.clone();
    if d.from_api.get(&name).is_some_and(|w| w.version == version) {
      return Ok(Deployed {
        name,
        version,
        changed: false,
      });
    }
    let worker = Worker::from_spec(&d.config, &spec, self.stats.worker(&name)).map_err(DeployError::Invalid)?;
    if let Some(c) = route_conflict(&worker.name, &worker.routes, &mut d.all()) {
      return Err(DeployError::Conflict(c));
    }
    self.check(&worker).await?;
    if apply == Apply::No {
      // The isolate the check made goes: this version never serves.
      self.retire(&worker);
      return Ok(Deployed {
        name,
        version,
        changed: true,
      });
    }
    if let (Some(dir), Some(upload)) = (&self.data_dir, upload) {
      super::store::store(dir, upload).map_err(|e| DeployError::Storage(format!("{}: {e}", dir.display())))?;
    }
    let old = d.from_api.insert(name.clone(), worker);
    self.publish(d);
    if let Some(old) = old {
      self.retire(&old);
    }
    tracing::info!(worker = %name, %version, "deployed");
    Ok(Deployed {
      name,
      version,
      changed: true,
    })
  }

  /// Removes a worker uploaded through the admin API.
  pub async fn remove(&self, name: &str) -> Result<(), DeployError> {
    self.remove_or_check(name, Apply::Yes).await
  }

  /// What [`Self::remove`] would refuse, without removing anything.
  pub async fn check_remove(&self, name: &str) -> Result<(), DeployError> {
    self.remove_or_check(name, Apply::No).await
  }

  async fn remove_or_check(&self, name: &str, apply: Apply) -> Result<(), DeployError> {
    let mut d = self.deployments.lock().await;
    if d.from_config.contains_key(name) {
      return Err(DeployError::ConfigOwned { name: name.into() });
    }
    if apply == Apply::No {
      return match d.from_api.contains_key(name) {
        true => Ok(()),
        false => Err(DeployError::NotFound { name: name.into() }),
      };
    }
    let old = d
      .from_api
      .remove(name)
      .ok_or_else(|| DeployError::NotFound { name: name.into() })?;
    if let Some(dir) = &self.data_dir {
      super::store::remove(dir, name).map_err(|e| DeployError::Storage(format!("{}: {e}", dir.display())))?;
    }
    self.publish(&d);
    self.retire(&old);
    self.stats.workers.remove(name);
    tracing::info!(worker = %name, "removed");
    Ok(())
  }

  /// The running workers, by name.
  pub async fn workers(&self) -> Vec<Arc<Worker>> {
    let d = self.deployments.lock().await;
    let mut all: Vec<_> = d.all().cloned().collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
  }

  /// Applies a new config file: its workers (unchanged ones keep their warm
  /// isolates), limits and certificates. Nothing changes unless all of it
  /// is good. Listeners, threads, `[runtime]`, `[log]`, `[admin]`,
  /// `[server]` and `[fetch]` take effect at the next start.
  pub async fn reload(&self, config: Config) -> Result<Reloaded, DeployError> {
    config.validate().map_err(|e| DeployError::Config(e.to_string()))?;
    let mut d = self.deployments.lock().await;
    let r = self.reload_locked(&mut d, config).await;
    self.forget_dead(&d);
    r
  }

  async fn reload_locked(&self, d: &mut Deployments, config: Config) -> Result<Reloaded, DeployError> {
    let mut next = BTreeMap::new();
    let mut report = Reloaded::default();
    let mut to_check = Vec::new();
    for (i, wc) in config.workers.iter().enumerate() {
      if d.from_api.contains_key(&wc.name) {
        return Err(DeployError::Config(format!(
          "{}: worker[{i}].name: {:?} is a worker deployed through the admin API; remove it there first",
          config.origin, wc.name
        )));
      }
      let w = Worker::from_config(&config, i, wc, self.stats.worker(&wc.name))
        .map_err(|e| DeployError::Config(e.to_string()))?;
      let w = match d.from_config.get(&wc.name) {
        Some(old) if old.version == w.version => old.clone(),
        Some(_) => {
          report.changed.push(wc.name.clone());
          to_check.push(w.clone());
          w
        }
        None => {
          report.added.push(wc.name.clone());
          to_check.push(w.clone());
          w
        }
      };
      next.insert(wc.name.clone(), w);
    }
    for w in next.values() {
      if let Some(c) = route_conflict(&w.name, &w.routes, &mut d.from_api.values()) {
        return Err(DeployError::Config(format!(
          "{}: worker {:?}: {c}",
          config.origin, &*w.name
        )));
      }
    }
    for w in &to_check {
      self.check(w).await?;
    }
    // Before the files are read: a file changed after this is read again
    // at the next reload.
    let stamp = TlsStamp::of(&config);
    let tls_changed = stamp != d.tls;
    let certs = if tls_changed && !config.tls.is_empty() {
      Some(CertStore::from_config(&config).map_err(|e| DeployError::Config(e.to_string()))?)
    } else {
      None
    };
    for (what, same) in [
      (
        "listen",
        format!("{:?}", config.listen) == format!("{:?}", d.config.listen),
      ),
      (
        "runtime",
        format!("{:?}", config.runtime) == format!("{:?}", d.config.runtime),
      ),
      (
        "admin",
        format!("{:?}", config.admin) == format!("{:?}", d.config.admin),
      ),
      ("log", format!("{:?}", config.log) == format!("{:?}", d.config.log)),
      (
        "fetch",
        format!("{:?}", config.fetch) == format!("{:?}", d.config.fetch),
      ),
      (
        "server",
        format!("{:?}", config.server) == format!("{:?}", d.config.server),
      ),
    ] {
      if !same {
        tracing::warn!("{}: changes to [{what}] take effect at the next start", config.origin);
      }
    }
    let old = std::mem::replace(&mut d.from_config, next);
    d.config = config;
    if let Some(c) = certs {
      self.view.publish_certs(c);
    }
    report.tls_changed = tls_changed;
    d.tls = stamp;
    self.publish(d);
    for (name, w) in old {
      match d.from_config.get(&name) {
        Some(new) if Arc::ptr_eq(new, &w) => {}
        Some(_) => self.retire(&w),
        None => {
          report.removed.push(name.clone());
          self.retire(&w);
        }
      }
    }
    tracing::info!(
      added = ?report.added,
      changed = ?report.changed,
      removed = ?report.removed,
      tls_changed,
      "config reloaded"
    );
    Ok(report)
  }

  /// Loads and evaluates `w` in an isolate of its executor thread; the
  /// isolate stays there warm for its first request.
  async fn check(&self, w: &Arc<Worker>) -> Result<(), DeployError> {
    let Some(rx) = self.executors.prepare(w, true) else {
      return Err(DeployError::ShuttingDown);
    };
    rx.await
      .map_err(|_| DeployError::ShuttingDown)?
      .map_err(|e| DeployError::Startup(Box::new(e)))
  }
}

/// Whether a deploy or removal is carried out or only checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Apply {
  Yes,
  No,
}

/// What identifies the `[[tls]]` section: its entries and their files'
/// contents (a renewal may keep a file's length, and land within its
/// mtime's granularity).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TlsStamp(u64);

impl TlsStamp {
  pub fn of(config: &Config) -> Self {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    format!("{:?}", config.tls).hash(&mut h);
    for t in &config.tls {
      for p in [&t.cert, &t.key].into_iter().flatten() {
        match std::fs::read(config.resolve(p)) {
          Ok(bytes) => bytes.hash(&mut h),
          Err(e) => e.kind().hash(&mut h),
        }
      }
    }
    Self(h.finish())
  }
}
