//! Steps 1-3 of a request, the front door: accept a connection
//! ([`accept`]), TLS by SNI ([`tls`]), HTTP/1.1 or HTTP/2 and the host's
//! worker ([`http`], [`routing`]), reading only the [`view::ServingView`].

pub mod accept;
pub mod client;
pub mod geo;
pub mod guard;
pub mod head;
pub mod http;
pub mod routing;
pub mod slow;
pub mod tls;
pub mod view;

use std::rc::Rc;
use std::sync::Arc;

use crate::exec::context::ThreadContext;
use view::ServingView;

/// The front door of one executor thread: its context and the view.
pub struct FrontDoor {
  pub ctx: Rc<ThreadContext>,
  pub view: Arc<ServingView>,
}
