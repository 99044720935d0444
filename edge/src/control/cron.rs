//! Cron triggers: a thread that, at each minute, runs the `scheduled()` of
//! every worker with a cron matching that minute (UTC), through
//! [`Dispatch`] like any other request of the worker (its limits and
//! counters, and an access line as `Dispatch` writes for every request from
//! inside the node). Each run is claimed first in the storage folder's
//! `cron.sqlite3` (worker, cron, minute): one process of a node fires it
//! (the supervisor's children share the folder), and a restart within the
//! minute does not fire it again. A minute missed (the node was down) is
//! not made up, as on Cloudflare.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_core::cron::minute_of;

use super::background::Background;
use crate::dispatch::{Dispatch, RequestContext};
use crate::front::view::ServingView;

/// The clock crons are read on: real time, or (tests) real time sped up
/// from the moment the runner starts.
#[derive(Clone, Copy, Debug)]
pub struct CronClock {
  started: Instant,
  origin_ms: i64,
  speed: f64,
}

impl CronClock {
  pub fn real() -> Self {
    Self::sped_up(1.0)
  }

  /// `speed` times real time from now (60 runs a minute a second).
  pub fn sped_up(speed: f64) -> Self {
    let origin_ms = std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .map_or(0, |d| d.as_millis() as i64);
    Self {
      started: Instant::now(),
      origin_ms,
      speed: speed.max(1.0),
    }
  }

  fn now_ms(&self) -> i64 {
    self.origin_ms + (self.started.elapsed().as_secs_f64() * 1000.0 * self.speed) as i64
  }

  /// Real time until `ms` on this clock.
  fn until(&self, ms: i64) -> Duration {
    let ahead = (ms - self.now_ms()).max(0) as f64 / self.speed;
    Duration::from_secs_f64(ahead / 1000.0)
  }
}

/// Minutes one tick makes up at most (a sped-up clock, a slow machine).
const MAX_CATCH_UP: i64 = 10;

/// Claims of runs: one row per (worker, cron, minute); none if the file
/// cannot be opened.
struct Claims(Option<edge_storage::claims::Claims>);

impl Claims {
  fn open(dir: &Path) -> Self {
    match edge_storage::claims::Claims::open(&dir.join("cron.sqlite3")) {
      Ok(db) => Self(Some(db)),
      Err(e) => {
        tracing::warn!("cron claims: {e}; every process of this node fires its crons");
        Self(None)
      }
    }
  }

  /// Whether this process runs `worker`'s `cron` for `minute` (no other
  /// process claimed it).
  fn claim(&mut self, worker: &str, cron: &str, minute: i64) -> bool {
    match &mut self.0 {
      None => true,
      Some(db) => db.claim(&format!("{worker}\n{cron}"), minute).unwrap_or_else(|e| {
        tracing::warn!(worker, cron, "cron claim failed: {e}");
        false
      }),
    }
  }
}

/// The running trigger thread; stopped when dropped.
pub struct CronRunner {
  _thread: Background,
}

impl CronRunner {
  /// Starts the thread: crons of the workers `view` routes, run through
  /// `dispatch`, claimed in `claims_dir`.
  pub fn start(
    view: Arc<ServingView>,
    dispatch: Arc<Dispatch>,
    claims_dir: PathBuf,
    clock: CronClock,
  ) -> std::io::Result<Self> {
    Background::start("edge-cron", "cron triggers", move |stop| {
      let claims = Claims::open(&claims_dir);
      run(view, dispatch, claims, clock, stop)
    })
    .map(|t| Self { _thread: t })
  }
}

async fn run(
  view: Arc<ServingView>,
  dispatch: Arc<Dispatch>,
  mut claims: Claims,
  clock: CronClock,
  mut stop: tokio::sync::watch::Receiver<bool>,
) {
  let mut done = minute_of(clock.now_ms());
  while !*stop.borrow() {
    let now = minute_of(clock.now_ms());
    let from = (done + 60_000).max(now - (MAX_CATCH_UP - 1) * 60_000);
    let mut minute = from;
    while minute <= now {
      fire(&view, &dispatch, &mut claims, minute);
      minute += 60_000;
    }
    done = done.max(now);
    // Until the next minute (or the stop).
    let wait = clock.until(done + 60_000).max(Duration::from_millis(1));
    tokio::select! {
      _ = tokio::time::sleep(wait) => {}
      _ = stop.changed() => {}
    }
  }
}

/// Starts every run due in `minute`.
fn fire(view: &ServingView, dispatch: &Arc<Dispatch>, claims: &mut Claims, minute: i64) {
  let router = view.router();
  for w in router.workers() {
    for schedule in &w.crons {
      if !schedule.fires_at(minute) || !claims.claim(&w.name, schedule.text(), minute) {
        continue;
      }
      let (name, cron, stats) = (w.name.to_string(), schedule.text().to_string(), w.stats.clone());
      let dispatch = dispatch.clone();
      let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("cron", &cron)
        .finish();
      let req = http::Request::get(format!("http://{name}/__scheduled?{query}"))
        .extension(js_api::Scheduled {
          cron: cron.clone(),
          time_ms: minute as f64,
        })
        .body(http_body_util::Empty::<bytes::Bytes>::new());
      let Ok(req) = req else { continue };
      stats.scheduled.inc();
      tokio::spawn(async move {
        match dispatch.handle_with(&name, req, RequestContext::default()).await {
          Ok(h) if h.response.status().is_success() => {
            // The body is empty; reading it ends the run's waitUntil wait.
            let _ = http_body_util::BodyExt::collect(h.response.into_body()).await;
            tracing::debug!(worker = name, cron, "scheduled run done");
          }
          Ok(h) => {
            stats.scheduled_failed.inc();
            tracing::warn!(
              worker = name,
              cron,
              status = h.response.status().as_u16(),
              "scheduled run failed"
            );
          }
          Err(f) => {
            stats.scheduled_failed.inc();
            tracing::warn!(worker = name, cron, error = %f.error, "scheduled run failed");
          }
        }
      });
    }
  }
}
