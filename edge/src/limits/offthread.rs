//! CPU time of an executor thread's blocking pool: where deno's
//! `crypto.subtle` work (digests, signatures, PBKDF2, RSA key generation)
//! runs, off the isolate's thread. Each blocking thread's CPU clock is
//! registered when it starts (a tokio runtime hook), so that the pool's
//! time can be read and charged to the requests that had such work in
//! flight (`pool::Pool::charge_offthread`).

use std::sync::Mutex;
use std::time::Duration;

use js_api::shares::{cpu_clock, thread_cpu};

#[derive(Default)]
pub struct BlockingCpu {
  inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
  threads: Vec<(std::thread::ThreadId, libc::clockid_t)>,
  /// CPU time of blocking threads that have exited.
  retired: Duration,
}

impl BlockingCpu {
  /// A blocking thread starts (call on it).
  pub fn register_current(&self) {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: pthread_self() is the calling thread; `clock` is writable.
    if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } != 0 {
      return;
    }
    let id = std::thread::current().id();
    self.inner.lock().expect("blocking cpu").threads.push((id, clock));
  }

  /// A blocking thread exits (call on it): its time is kept.
  pub fn unregister_current(&self) {
    let id = std::thread::current().id();
    let used = thread_cpu();
    let mut inner = self.inner.lock().expect("blocking cpu");
    if let Some(pos) = inner.threads.iter().position(|(t, _)| *t == id) {
      inner.threads.swap_remove(pos);
      inner.retired += used;
    }
  }

  /// CPU time the pool's threads have used so far.
  pub fn total(&self) -> Duration {
    let inner = self.inner.lock().expect("blocking cpu");
    inner.retired + inner.threads.iter().map(|(_, c)| cpu_clock(*c)).sum::<Duration>()
  }
}
