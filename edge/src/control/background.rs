//! [`Background`]: a control-plane thread of its own (admin listener, cron
//! triggers, queue consumers), one task on a current-thread tokio runtime,
//! told to stop and joined when dropped.

use std::future::Future;
use std::thread::JoinHandle;

use tokio::sync::watch;

/// A running control-plane thread; stopped and joined when dropped (tasks
/// it spawned are dropped with its runtime).
pub struct Background {
  stop: watch::Sender<bool>,
  thread: Option<JoinHandle<()>>,
}

impl Background {
  /// Starts thread `name` running `task`, which is handed the flag that
  /// turns true when it should end. `what` names it in the log if its
  /// runtime cannot be built.
  pub fn start<F, Fut>(name: &str, what: &'static str, task: F) -> std::io::Result<Self>
  where
    F: FnOnce(watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
  {
    let (stop, flag) = watch::channel(false);
    let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
      let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
          tracing::error!("{what} not started: {e}");
          return;
        }
      };
      rt.block_on(task(flag));
    })?;
    Ok(Self {
      stop,
      thread: Some(thread),
    })
  }
}

impl Drop for Background {
  fn drop(&mut self) {
    let _ = self.stop.send(true);
    if let Some(t) = self.thread.take() {
      let _ = t.join();
    }
  }
}
