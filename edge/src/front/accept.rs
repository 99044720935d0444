//! Step 1 of a request: accept. Every executor thread accepts on the same
//! listening sockets; a connection stays on the thread that accepted it.
//! A connection past the caps (`front::guard`) is closed at once.

use std::rc::Rc;

use super::FrontDoor;

/// Listening sockets, cloned into every executor thread.
#[derive(Default)]
pub struct Listeners {
  pub http: Option<std::net::TcpListener>,
  pub https: Option<std::net::TcpListener>,
}

impl Listeners {
  pub fn try_clone(&self) -> std::io::Result<Self> {
    Ok(Self {
      http: self.http.as_ref().map(|l| l.try_clone()).transpose()?,
      https: self.https.as_ref().map(|l| l.try_clone()).transpose()?,
    })
  }
}

/// Accepts on `listeners` in tasks of this thread until the server drains.
pub fn spawn_accept_loops(door: &Rc<FrontDoor>, listeners: Listeners) {
  if let Some(l) = listeners.http {
    spawn_accept(door.clone(), l, false);
  }
  if let Some(l) = listeners.https {
    spawn_accept(door.clone(), l, true);
  }
}

fn spawn_accept(door: Rc<FrontDoor>, listener: std::net::TcpListener, tls: bool) {
  let listener = match listener
    .set_nonblocking(true)
    .and_then(|_| tokio::net::TcpListener::from_std(listener))
  {
    Ok(l) => l,
    Err(e) => {
      tracing::error!("executor {}: cannot use its listener: {e}", door.ctx.index);
      return;
    }
  };
  tokio::task::spawn_local(async move {
    let mut draining = door.view.draining();
    let last_refusal_log = std::cell::Cell::new(None);
    loop {
      let accepted = tokio::select! {
        a = listener.accept() => a,
        // Draining: close the listener, keep the connections.
        _ = draining.wait_for(|d| *d) => return,
      };
      match accepted {
        Ok((tcp, peer)) => {
          // Past a cap the connection is closed at once (dropped).
          let slot = match door.view.connections.admit(peer.ip(), &door.view.door) {
            Ok(slot) => slot,
            Err(why) => {
              super::guard::note_refused(&door.view.stats, why, peer.ip(), &last_refusal_log);
              continue;
            }
          };
          let _ = tcp.set_nodelay(true);
          tokio::task::spawn_local(super::http::serve_tcp(door.clone(), tcp, peer, tls, slot));
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
