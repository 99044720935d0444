//! Executor threads: each owns a single-threaded tokio runtime, its isolate
//! pool, and a share of the listeners. A connection accepted on a thread is
//! served there, its requests run in that thread's isolates: no hand-off
//! between threads on the request path. Embedders on other threads reach an
//! executor through its job channel.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use http::Response;
use js_api::JsRequest;
use tokio::sync::{mpsc, oneshot, watch};

use crate::body::BodyOverLimit;
use crate::body::{EdgeBody, SendBody};
use crate::engine::Shared;
use crate::error::RequestError;
use crate::invoke::RunInfo;
use crate::limits::Watch;
use crate::logging::{ConsoleSink, RequestId};
use crate::pool::Pool;
use crate::worker::Worker;

/// Work sent to an executor from another thread.
pub enum Job {
  Request {
    worker: Arc<Worker>,
    req: JsRequest,
    body_over: Option<BodyOverLimit>,
    reply: oneshot::Sender<Result<Response<SendBody>, RequestError>>,
  },
  /// Load and evaluate a new worker version in an isolate, which then stays
  /// idle (warm) for its first request.
  Prepare {
    worker: Arc<Worker>,
    reply: oneshot::Sender<Result<(), RequestError>>,
  },
  /// Drop the idle isolates of a replaced or removed worker version.
  Retire(Arc<Worker>),
}

/// Listening sockets, cloned into every executor thread.
#[derive(Default)]
pub struct Listeners {
  pub http: Option<std::net::TcpListener>,
  pub https: Option<std::net::TcpListener>,
}

impl Listeners {
  fn try_clone(&self) -> std::io::Result<Self> {
    Ok(Self {
      http: self.http.as_ref().map(|l| l.try_clone()).transpose()?,
      https: self.https.as_ref().map(|l| l.try_clone()).transpose()?,
    })
  }
}

/// The per-thread state every request on the thread uses.
pub struct Executor {
  pub index: usize,
  /// This thread's CPU deadline, read by the watchdog.
  pub watch: Arc<Watch>,
  pub shared: Arc<Shared>,
  pub pool: Rc<Pool>,
  /// Becomes true when the server drains (stops accepting, finishes what
  /// it has).
  pub draining: watch::Receiver<bool>,
  next_request: Cell<u64>,
}

impl Executor {
  /// A process-unique request id: thread index in the top bits.
  pub fn next_request_id(&self) -> RequestId {
    let n = self.next_request.get().wrapping_add(1);
    self.next_request.set(n);
    RequestId(((self.index as u64) << 48) | (n & 0xffff_ffff_ffff))
  }
}

/// Handle to a running executor thread.
pub struct ExecutorHandle {
  pub jobs: mpsc::UnboundedSender<Job>,
  pub thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts executor thread `index`. `ready` fires once its blank isolates
/// exist and it accepts connections.
pub fn spawn(
  index: usize,
  shared: Arc<Shared>,
  listeners: &Listeners,
  shutdown: watch::Receiver<bool>,
  ready: std::sync::mpsc::Sender<()>,
) -> std::io::Result<ExecutorHandle> {
  let (tx, rx) = mpsc::unbounded_channel();
  let listeners = listeners.try_clone()?;
  let thread = std::thread::Builder::new()
    .name(format!("edge-exec-{index}"))
    .spawn(move || thread_main(index, shared, listeners, rx, shutdown, ready))?;
  Ok(ExecutorHandle {
    jobs: tx,
    thread: Some(thread),
  })
}

fn thread_main(
  index: usize,
  shared: Arc<Shared>,
  listeners: Listeners,
  mut jobs: mpsc::UnboundedReceiver<Job>,
  mut shutdown: watch::Receiver<bool>,
  ready: std::sync::mpsc::Sender<()>,
) {
  let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
    Ok(rt) => rt,
    Err(e) => {
      tracing::error!("executor {index}: cannot build its runtime: {e}");
      return;
    }
  };
  let local = tokio::task::LocalSet::new();
  let pool = local.block_on(&rt, async {
    let watch = shared.watchdog.watch_this_thread();
    let pool = Pool::new(
      shared.isolate_config.clone(),
      Rc::new(ConsoleSink::new(
        shared.stats.clone(),
        shared.config.log.console_lines_per_s,
      )),
      shared.pool_limits.clone(),
      shared.stats.clone(),
      watch.clone(),
    );
    // Fill the blank supply before taking traffic.
    pool.schedule_refill();
    while pool.blank_ready() < shared.config.runtime.blank_isolates && pool.refilling() {
      tokio::task::yield_now().await;
    }
    let exec = Rc::new(Executor {
      index,
      watch,
      shared: shared.clone(),
      pool: pool.clone(),
      draining: shared.draining.subscribe(),
      next_request: Cell::new(0),
    });
    if let Some(l) = listeners.http {
      spawn_accept(exec.clone(), l, false);
    }
    if let Some(l) = listeners.https {
      spawn_accept(exec.clone(), l, true);
    }
    let _ = ready.send(());
    loop {
      tokio::select! {
        job = jobs.recv() => match job {
          Some(job) => run_job(&exec, job),
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

fn spawn_accept(exec: Rc<Executor>, listener: std::net::TcpListener, tls: bool) {
  let listener = match listener
    .set_nonblocking(true)
    .and_then(|_| tokio::net::TcpListener::from_std(listener))
  {
    Ok(l) => l,
    Err(e) => {
      tracing::error!("executor {}: cannot use its listener: {e}", exec.index);
      return;
    }
  };
  tokio::task::spawn_local(async move {
    let mut draining = exec.draining.clone();
    loop {
      let accepted = tokio::select! {
        a = listener.accept() => a,
        // Draining: close the listener, keep the connections.
        _ = draining.wait_for(|d| *d) => return,
      };
      match accepted {
        Ok((tcp, peer)) => {
          let _ = tcp.set_nodelay(true);
          let exec = exec.clone();
          tokio::task::spawn_local(crate::server::serve_tcp(exec, tcp, peer, tls));
        }
        Err(e) => {
          // Out of file descriptors and the like: pause, keep serving.
          tracing::warn!("accept failed: {e}");
          tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
      }
    }
  });
}

fn run_job(exec: &Rc<Executor>, job: Job) {
  match job {
    Job::Request {
      worker,
      req,
      body_over,
      reply,
    } => {
      let exec = exec.clone();
      tokio::task::spawn_local(async move {
        let started = std::time::Instant::now();
        let request_id = exec.next_request_id();
        let mut info = RunInfo::default();
        let res = crate::invoke::run(&exec, &worker, req, body_over, request_id, &mut info).await;
        // The embedder maps errors itself; they are counted and logged.
        let (status, limit) = match &res {
          Ok(r) => (r.status(), None),
          Err(e) => {
            e.log(request_id);
            (e.status(), e.limit_kind())
          }
        };
        worker.stats.finished(status, limit, started.elapsed(), info.cpu);
        let res = res.map(|r| r.map(EdgeBody::into_send));
        let _ = reply.send(res);
      });
    }
    Job::Prepare { worker, reply } => {
      let pool = exec.pool.clone();
      tokio::task::spawn_local(async move {
        let res = pool.acquire(&worker).await.map(drop);
        let _ = reply.send(res);
      });
    }
    Job::Retire(worker) => exec.pool.retire(&worker),
  }
}
