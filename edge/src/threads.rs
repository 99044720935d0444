//! Executor threads: each owns a single-threaded tokio runtime, its isolate
//! pool, and a share of the listeners. A connection accepted on a thread is
//! served there, its requests run in that thread's isolates: no hand-off
//! between threads on the request path. Other threads (embedders, deploys)
//! reach an executor through [`Executors`], which owns their job channels.
//!
//! One more executor, the quarantine lane, accepts no connections and runs
//! at the lowest OS priority: the front door sends it the requests of
//! abusive workers (`edge_core::abuse`), so that a tenant spinning to its
//! CPU limit delays nobody else's requests by its 50 ms entries.

use std::rc::Rc;
use std::sync::Arc;

use js_api::IsolateConfig;
use tokio::sync::{mpsc, watch};

use crate::config::ConsoleLimits;
use crate::exec::context::ThreadContext;
use crate::exec::jobs::{run_job, Job};
use crate::front::accept::{spawn_accept_loops, Listeners};
use crate::front::view::ServingView;
use crate::front::FrontDoor;
use crate::limits::Watchdog;
use crate::obs::logging::ConsoleSink;
use crate::obs::observer::{ConsoleOutput, RequestObserver};
use crate::pool::{Pool, PoolLimits};

/// What each executor thread is started with, by value.
#[derive(Clone)]
pub struct ThreadParams {
  pub isolate_config: IsolateConfig,
  pub pool_limits: PoolLimits,
  pub console_limits: ConsoleLimits,
  /// The engine's random request id prefix.
  pub id_prefix: u64,
  pub observer: Option<Arc<dyn RequestObserver>>,
  pub console: Option<Arc<dyn ConsoleOutput>>,
  /// `server.encode_bytes_per_s`.
  pub encode_rate: u64,
}

/// The running executor threads and their job channels.
pub struct Executors {
  jobs: Vec<mpsc::UnboundedSender<Job>>,
  threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
  shutdown: watch::Sender<bool>,
  /// Stops JS that runs past its CPU deadline, on every executor.
  _watchdog: Watchdog,
  stats: Arc<crate::obs::stats::Stats>,
}

impl Executors {
  /// Starts `count` threads serving `listeners` (if any) with `view`, and
  /// returns once each has its blank isolates and accepts.
  pub fn start(
    count: usize,
    params: ThreadParams,
    view: Arc<ServingView>,
    listeners: &Listeners,
  ) -> std::io::Result<Self> {
    let watchdog = Watchdog::start(view.stats.clone())?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut jobs = Vec::with_capacity(count + 1);
    let mut threads = Vec::with_capacity(count + 1);
    for index in 0..=count {
      let quarantine = index == count;
      let (tx, rx) = mpsc::unbounded_channel();
      let mut params = params.clone();
      if quarantine {
        // Rarely used: it makes blank isolates when it needs them.
        params.pool_limits.blank_target = 0;
      }
      let start = Start {
        index,
        quarantine,
        params,
        view: view.clone(),
        listeners: if quarantine {
          Listeners::default()
        } else {
          listeners.try_clone()?
        },
        deadline: watchdog.deadline_maker(),
        jobs: rx,
        shutdown: shutdown_rx.clone(),
        ready: ready_tx.clone(),
      };
      let name = if quarantine {
        "edge-quarantine".to_string()
      } else {
        format!("edge-exec-{index}")
      };
      let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || thread_main(start))?;
      if quarantine {
        view.set_quarantine(tx.clone());
      }
      jobs.push(tx);
      threads.push(thread);
    }
    drop(ready_tx);
    let executors = Self {
      jobs,
      threads: std::sync::Mutex::new(threads),
      shutdown,
      _watchdog: watchdog,
      stats: view.stats.clone(),
    };
    for _ in 0..=count {
      if ready_rx.recv().is_err() {
        executors.join();
        return Err(std::io::Error::other("an executor thread failed to start"));
      }
    }
    Ok(executors)
  }

  /// Sends `job` to the executor of the worker named `worker`: the same
  /// one every time, so its isolates there stay warm. False if the
  /// executors have stopped.
  pub fn send_to(&self, worker: &str, job: Job) -> bool {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    worker.hash(&mut h);
    // Not the quarantine lane (the last one).
    let i = (h.finish() as usize) % (self.jobs.len() - 1);
    self.jobs[i].send(job).is_ok()
  }

  /// Loads and evaluates `worker` in an isolate of its executor, kept
  /// warm there if `keep` (a deploy) or dropped (the check at start).
  /// `None`: the executors have stopped.
  pub fn prepare(
    &self,
    worker: &Arc<crate::worker::Worker>,
    keep: bool,
  ) -> Option<tokio::sync::oneshot::Receiver<Result<(), crate::error::RequestError>>> {
    let (reply, rx) = tokio::sync::oneshot::channel();
    let job = Job::Prepare {
      worker: worker.clone(),
      keep,
      reply,
    };
    self.send_to(&worker.name, job).then_some(rx)
  }

  /// Sends a job made by `make` to every executor.
  pub fn broadcast(&self, make: impl Fn() -> Job) {
    for tx in &self.jobs {
      let _ = tx.send(make());
    }
  }

  /// Ends the threads (their connections and isolates go with them) and
  /// waits for them.
  /// A thread wedged in JS (see the watchdog) is left running rather
  /// than waited for without end.
  pub fn join(&self) {
    let _ = self.shutdown.send(true);
    let threads = std::mem::take(&mut *self.threads.lock().expect("threads"));
    for t in threads {
      while !t.is_finished() && self.stats.wedged_threads.get() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
      }
      if t.is_finished() {
        let _ = t.join();
      } else {
        tracing::error!("stopping: an executor thread is wedged in JS and is left running");
      }
    }
  }
}

impl Drop for Executors {
  fn drop(&mut self) {
    self.join();
  }
}

/// Everything a thread starts with.
struct Start {
  index: usize,
  quarantine: bool,
  params: ThreadParams,
  view: Arc<ServingView>,
  listeners: Listeners,
  deadline: crate::limits::watchdog::DeadlineMaker,
  jobs: mpsc::UnboundedReceiver<Job>,
  shutdown: watch::Receiver<bool>,
  ready: std::sync::mpsc::Sender<()>,
}

fn thread_main(s: Start) {
  let Start {
    index,
    quarantine,
    params,
    view,
    listeners,
    deadline,
    mut jobs,
    mut shutdown,
    ready,
  } = s;
  if quarantine {
    lowest_priority();
  }
  let blocking = Arc::new(crate::limits::offthread::BlockingCpu::default());
  let (on_start, on_stop) = (blocking.clone(), blocking.clone());
  let rt = match tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .on_thread_start(move || on_start.register_current())
    .on_thread_stop(move || on_stop.unregister_current())
    .build()
  {
    Ok(rt) => rt,
    Err(e) => {
      tracing::error!("executor {index}: cannot build its runtime: {e}");
      return;
    }
  };
  let local = tokio::task::LocalSet::new();
  let pool = local.block_on(&rt, async {
    let deadline = deadline.for_this_thread(blocking);
    let console = ConsoleSink::new(view.stats.clone(), params.console_limits, params.console.clone());
    let pool = Pool::new(
      params.isolate_config,
      Rc::new(console),
      params.pool_limits.clone(),
      view.stats.clone(),
      deadline,
    );
    // Fill the blank supply before taking traffic.
    pool.schedule_refill();
    while pool.blank_ready() < params.pool_limits.blank_target && pool.refilling() {
      tokio::task::yield_now().await;
    }
    let ctx = Rc::new(ThreadContext::new(
      index,
      pool.clone(),
      params.id_prefix,
      params.observer.clone(),
      params.encode_rate,
    ));
    let door = Rc::new(FrontDoor { ctx: ctx.clone(), view });
    spawn_accept_loops(&door, listeners);
    let _ = ready.send(());
    loop {
      tokio::select! {
        job = jobs.recv() => match job {
          Some(job) => run_job(&ctx, job),
          None => break,
        },
        _ = shutdown.changed() => break,
      }
    }
    pool
  });
  // Connections and tasks end with the LocalSet; then the isolates go.
  drop(local);
  pool.clear();
  drop(rt);
}

/// The calling thread runs only when the node's other threads leave it the
/// CPU (nice 19: about 1.5% of a core against a busy one).
fn lowest_priority() {
  // SAFETY: gettid has no preconditions; setpriority on our own thread id
  // changes only this thread's nice value.
  let rc = unsafe {
    let tid = libc::gettid();
    libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
  };
  if rc != 0 {
    tracing::warn!(
      "the quarantine thread keeps its priority: {}",
      std::io::Error::last_os_error()
    );
  }
}
