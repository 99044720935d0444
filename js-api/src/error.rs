//! Errors of the JS layer: what went wrong creating, binding or calling an
//! isolate. The server maps them to HTTP responses in one place.

use deno_core::error::{CoreError, CoreErrorKind, JsError};

/// A JavaScript exception, as text: the message for clients, the stack for
/// the log.
#[derive(Debug, Clone)]
pub struct JsException {
  pub message: String,
  pub stack: Option<String>,
}

impl std::fmt::Display for JsException {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str(&self.message)
  }
}

impl JsException {
  pub(crate) fn from_js(e: &JsError) -> Self {
    let message = e.exception_message.clone();
    let stack = e.stack.clone().or_else(|| Some(e.to_string()));
    Self { message, stack }
  }
}

#[derive(Debug, thiserror::Error)]
pub enum JsApiError {
  /// V8 could not make an isolate (out of memory, a bad snapshot).
  #[error("creating a V8 isolate failed: {0}")]
  Create(String),
  /// A module of the worker could not be found, read or parsed.
  #[error("loading the worker's modules failed: {0}")]
  Load(String),
  /// The worker's top-level code threw.
  #[error("the worker threw while starting: {0}")]
  Startup(JsException),
  /// The worker has neither `export default { fetch }` nor a fetch listener.
  #[error("{0}")]
  NoHandler(String),
  /// The handler threw, rejected, or returned something not a Response.
  #[error("the worker threw an exception: {0}")]
  Threw(JsException),
  /// The handler's promise is pending and nothing is left that could settle it.
  #[error("the worker's response promise can never settle: nothing it waits on is pending")]
  NeverSettles,
  /// V8 stopped the script (a limit was hit; the caller knows which).
  #[error("the worker's execution was terminated")]
  Terminated,
}

impl JsApiError {
  /// Converts a deno_core error met while running worker code.
  pub(crate) fn from_core(e: CoreError, startup: bool) -> Self {
    match e.into_kind() {
      CoreErrorKind::Js(js) => Self::from_js(&js, startup),
      CoreErrorKind::PendingPromiseResolution => Self::NeverSettles,
      other => {
        let text = other.to_string();
        if startup {
          Self::Load(text)
        } else {
          Self::Threw(JsException {
            message: text,
            stack: None,
          })
        }
      }
    }
  }

  pub(crate) fn from_js(js: &JsError, startup: bool) -> Self {
    let ex = JsException::from_js(js);
    if startup {
      Self::Startup(ex)
    } else {
      Self::Threw(ex)
    }
  }
}
