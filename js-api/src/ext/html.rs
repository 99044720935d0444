//! HTMLRewriter's engine: Cloudflare's streaming rewriter (`lol_html`) run
//! in a stackful coroutine on the isolate's own thread.
//!
//! lol_html calls its content handlers synchronously from inside `write`,
//! and a worker's handlers may be async. As in workerd (a fiber) and
//! miniflare (asyncify), the rewriter runs on a stack of its own: when it
//! reaches a matched element, text chunk, comment, doctype, end tag or the
//! document's end, the coroutine suspends and hands the op the unit (tag,
//! attributes, text); JS calls the handler, awaits it if it is async, and
//! resumes the coroutine with the mutations the handler asked for, which
//! are applied before lol_html goes on. No OS thread waits on a slow
//! handler or reader, and the rewriter's time is spent inside this
//! request's ops, so its CPU limit covers it.
//!
//! Bounded: JS feeds input in pieces of at most 64 KiB and takes the output
//! after each step, lol_html's own buffer (a tag or a comment split across
//! pieces) is capped, and each live rewriter is charged to the isolate's
//! memory budget for its cap and its stack.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use deno_core::{op2, GarbageCollected, OpState, ToJsBuffer};
use deno_error::JsErrorBox;
use lol_html::html_content::{Comment, ContentType, Doctype, DocumentEnd, Element, EndTag, TextChunk};
use lol_html::{
  AsciiCompatibleEncoding, DocumentContentHandlers, ElementContentHandlers, HandlerResult, HtmlRewriter,
  MemorySettings, Selector, Settings,
};
use serde::{Deserialize, Serialize};

use super::codec::NativeMemory;

/// What lol_html may buffer at once: a start tag, comment or doctype that
/// spans input pieces (an inline `data:` URL in an attribute, say).
pub const MAX_BUFFER: usize = 1 << 20;
/// The coroutine's stack (lol_html's parser and selector matching are
/// iterative; the handlers only copy a unit out and suspend).
const STACK: usize = 256 << 10;

type Budget = Arc<dyn NativeMemory>;
type Error = Box<dyn std::error::Error + Send + Sync>;

/// One `on(selector, ...)` or `onDocument(...)` of the JS rewriter, in
/// order: the index is the handler's number in events.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerSpec {
  /// `None` for a document handler.
  selector: Option<String>,
  #[serde(default)]
  element: bool,
  #[serde(default)]
  comments: bool,
  #[serde(default)]
  text: bool,
  #[serde(default)]
  doctype: bool,
  #[serde(default)]
  end: bool,
}

/// A unit JS is asked to handle. `h` is the handler's number.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Event {
  #[serde(rename_all = "camelCase")]
  Element {
    h: u32,
    tag: String,
    attrs: Vec<(String, String)>,
    self_closing: bool,
    can_have_content: bool,
    ns: &'static str,
  },
  /// An end tag `onEndTag` asked for; `id` names that handler.
  EndTag {
    id: u32,
    name: String,
  },
  Text {
    h: u32,
    text: String,
    last: bool,
  },
  Comment {
    h: u32,
    text: String,
  },
  #[serde(rename_all = "camelCase")]
  Doctype {
    h: u32,
    name: Option<String>,
    public_id: Option<String>,
    system_id: Option<String>,
  },
  End {
    h: u32,
  },
}

/// What a handler did to its unit, in the order it did it. `op` is one of
/// the `OP_*` numbers (js/html.js has the same table).
#[derive(Deserialize)]
pub struct Mutation {
  op: u8,
  #[serde(default)]
  s: String,
  #[serde(default)]
  v: String,
  #[serde(default)]
  html: bool,
  #[serde(default)]
  id: u32,
}

const OP_BEFORE: u8 = 0;
const OP_AFTER: u8 = 1;
const OP_PREPEND: u8 = 2;
const OP_APPEND: u8 = 3;
const OP_REPLACE: u8 = 4;
const OP_SET_INNER: u8 = 5;
const OP_REMOVE: u8 = 6;
const OP_REMOVE_KEEP: u8 = 7;
const OP_SET_ATTR: u8 = 8;
const OP_REMOVE_ATTR: u8 = 9;
const OP_SET_NAME: u8 = 10;
const OP_SET_TEXT: u8 = 11;
const OP_ON_END_TAG: u8 = 12;

/// What one step of the rewriter gave: output made so far, and a unit to
/// handle, or the end, or neither (it wants more input).
#[derive(Serialize)]
pub struct Step {
  out: Option<ToJsBuffer>,
  ev: Option<Event>,
  done: bool,
}

/// What the coroutine is resumed with.
enum Input {
  Chunk(Vec<u8>),
  End,
  Reply(Vec<Mutation>),
  /// The stream was cancelled or dropped: handlers fail, the coroutine ends.
  Cancel,
}

/// What the coroutine suspends with.
enum Ask {
  More,
  Event(Event),
}

type Co = Coroutine<Input, Ask, Result<(), String>, DefaultStack>;

/// One transform's rewriter, owned by its JS stream.
pub struct Rewriter {
  co: RefCell<Option<Co>>,
  out: Rc<RefCell<Vec<u8>>>,
  budget: Option<Budget>,
  charged: Cell<usize>,
}

// SAFETY: Rewriter holds no V8 handles; cppgc only needs a name for it.
unsafe impl GarbageCollected for Rewriter {
  fn trace(&self, _visitor: &mut deno_core::v8::cppgc::Visitor) {}
  fn get_name(&self) -> &'static std::ffi::CStr {
    c"HTMLRewriter"
  }
}

impl Rewriter {
  fn resume(&self, input: Input) -> Result<Step, JsErrorBox> {
    let mut co = self.co.borrow_mut();
    let Some(c) = co.as_mut() else {
      return Err(JsErrorBox::type_error("The HTMLRewriter's stream has ended"));
    };
    let r = c.resume(input);
    let out = std::mem::take(&mut *self.out.borrow_mut());
    let out = (!out.is_empty()).then(|| out.into());
    match r {
      CoroutineResult::Yield(Ask::More) => Ok(Step {
        out,
        ev: None,
        done: false,
      }),
      CoroutineResult::Yield(Ask::Event(ev)) => Ok(Step {
        out,
        ev: Some(ev),
        done: false,
      }),
      CoroutineResult::Return(r) => {
        co.take();
        drop(co);
        self.release();
        r.map(|()| Step {
          out,
          ev: None,
          done: true,
        })
        .map_err(JsErrorBox::type_error)
      }
    }
  }

  /// Ends the coroutine (its handlers fail, lol_html returns) and gives
  /// back what the rewriter was charged.
  fn close(&self) {
    if let Some(mut co) = self.co.borrow_mut().take() {
      // Each resume with Cancel makes the pending handler fail, which ends
      // lol_html's write; a few are plenty (Drop would unwind it anyway).
      for _ in 0..4 {
        if co.done() || !co.started() {
          break;
        }
        let _ = co.resume(Input::Cancel);
      }
    }
    self.release();
  }

  fn release(&self) {
    if let Some(b) = &self.budget {
      b.uncharge(self.charged.replace(0));
    }
  }
}

impl Drop for Rewriter {
  fn drop(&mut self) {
    self.close();
  }
}

/// The coroutine's side of a handler call: suspend with the unit, get the
/// handler's mutations (or the news that the stream is gone).
struct Bridge<'y> {
  y: &'y Yielder<Input, Ask>,
}

impl Bridge<'_> {
  fn ask(&self, ev: Event) -> Result<Vec<Mutation>, Error> {
    match self.y.suspend(Ask::Event(ev)) {
      Input::Reply(m) => Ok(m),
      Input::Cancel => Err("the HTMLRewriter's stream was cancelled".into()),
      Input::Chunk(_) | Input::End => Err("HTMLRewriter: input while a handler runs".into()),
    }
  }
}

fn content_type(html: bool) -> ContentType {
  if html {
    ContentType::Html
  } else {
    ContentType::Text
  }
}

fn unexpected(op: u8, what: &str) -> Error {
  format!("HTMLRewriter: mutation {op} does not apply to {what}").into()
}

fn apply_element(el: &mut Element, m: Mutation, bridge: *const Bridge<'_>) -> HandlerResult {
  let ct = content_type(m.html);
  match m.op {
    OP_BEFORE => el.before(&m.s, ct),
    OP_AFTER => el.after(&m.s, ct),
    OP_PREPEND => el.prepend(&m.s, ct),
    OP_APPEND => el.append(&m.s, ct),
    OP_REPLACE => el.replace(&m.s, ct),
    OP_SET_INNER => el.set_inner_content(&m.s, ct),
    OP_REMOVE => el.remove(),
    OP_REMOVE_KEEP => el.remove_and_keep_content(),
    OP_SET_ATTR => el.set_attribute(&m.s, &m.v)?,
    OP_REMOVE_ATTR => el.remove_attribute(&m.s),
    OP_SET_NAME => el.set_tag_name(&m.s)?,
    OP_ON_END_TAG => {
      let id = m.id;
      let bridge = bridge as usize;
      el.on_end_tag(Box::new(move |end: &mut EndTag| {
        // SAFETY: end tag handlers run only inside the rewriter's write or
        // end, which run only in the coroutine's body while the Bridge
        // `bridge` points at (a local of that body, declared before the
        // rewriter, so dropped after it) is alive.
        let bridge = unsafe { &*(bridge as *const Bridge<'_>) };
        let muts = bridge.ask(Event::EndTag { id, name: end.name() })?;
        for m in muts {
          let ct = content_type(m.html);
          match m.op {
            OP_BEFORE => end.before(&m.s, ct),
            OP_AFTER => end.after(&m.s, ct),
            OP_REPLACE => end.replace(&m.s, ct),
            OP_REMOVE => end.remove(),
            OP_SET_NAME => end.set_name_str(m.s),
            op => return Err(unexpected(op, "an end tag")),
          }
        }
        Ok(())
      }))?
    }
    op => return Err(unexpected(op, "an element")),
  }
  Ok(())
}

/// Before, after, replace and remove: what text chunks and comments share.
macro_rules! apply_common {
  ($unit:expr, $m:expr, $what:literal, { $($extra:tt)* }) => {{
    let ct = content_type($m.html);
    match $m.op {
      OP_BEFORE => $unit.before(&$m.s, ct),
      OP_AFTER => $unit.after(&$m.s, ct),
      OP_REPLACE => $unit.replace(&$m.s, ct),
      OP_REMOVE => $unit.remove(),
      $($extra)*
      op => return Err(unexpected(op, $what)),
    }
  }};
}

fn apply_text(t: &mut TextChunk, m: Mutation) -> HandlerResult {
  apply_common!(t, m, "a text chunk", {});
  Ok(())
}

fn apply_comment(c: &mut Comment, m: Mutation) -> HandlerResult {
  apply_common!(c, m, "a comment", { OP_SET_TEXT => c.set_text(&m.s)?, });
  Ok(())
}

fn apply_end(d: &mut DocumentEnd, m: Mutation) -> HandlerResult {
  match m.op {
    OP_APPEND => d.append(&m.s, content_type(m.html)),
    op => return Err(unexpected(op, "the document end")),
  }
  Ok(())
}

fn text_event(h: u32, t: &TextChunk) -> Event {
  Event::Text {
    h,
    text: t.as_str().to_string(),
    last: t.last_in_text_node(),
  }
}

fn comment_event(h: u32, c: &Comment) -> Event {
  Event::Comment { h, text: c.text() }
}

fn doctype_event(h: u32, d: &Doctype) -> Event {
  Event::Doctype {
    h,
    name: d.name(),
    public_id: d.public_id(),
    system_id: d.system_id(),
  }
}

/// The longest selector taken. Parsing and compiling cost memory the
/// budget is charged for by length (`SELECTOR_CHARGE`).
pub const MAX_SELECTOR: usize = 4096;
/// The most `(` a selector may have. The selector parser and lol_html's
/// compiler recurse once per nested function (`:not(:not(...))`): 1,000
/// levels overflowed an executor thread's stack and ended the process.
/// Every level of nesting needs a literal `(` (escapes and strings never
/// open one), so counting them all, quoted or not, bounds the depth.
pub const MAX_SELECTOR_PARENS: usize = 16;
/// The most combinators a selector may have. lol_html's compiler recurses
/// once per compound selector of a chain: 300 descendant combinators
/// overflowed the coroutine's stack (debug build; 200 did not). A
/// combinator needs at least one whitespace, `>`, `+` or `~` byte, so
/// the number of runs of those bytes, quoted or not, bounds the chain.
pub const MAX_SELECTOR_COMBINATORS: usize = 64;
/// The most selectors a rewriter takes, counting each item of a
/// comma-separated list. lol_html compares each selector it adds with all
/// before it, in one uninterruptible op: 16,000 took 1.4 s of CPU and
/// 100,000 took 50 s (debug build), past any `cpu_ms`.
pub const MAX_SELECTORS: usize = 256;
/// Native memory charged per selector byte for its parsed and compiled
/// form (measured: see ARCHITECTURE.md).
const SELECTOR_CHARGE: usize = 64;

/// Runs of bytes a combinator is made of (at least the selector's
/// combinators).
fn combinator_runs(s: &str) -> usize {
  let is = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'>' | b'+' | b'~');
  let b = s.as_bytes();
  (0..b.len())
    .filter(|&i| is(&b[i]) && (i == 0 || !is(&b[i - 1])))
    .count()
}

fn parse_selector(s: &str) -> Result<Selector, JsErrorBox> {
  if s.len() > MAX_SELECTOR {
    return Err(JsErrorBox::type_error(format!(
      "Invalid selector: {} bytes, more than the {MAX_SELECTOR} taken",
      s.len()
    )));
  }
  if s.bytes().filter(|&b| b == b'(').count() > MAX_SELECTOR_PARENS {
    return Err(JsErrorBox::type_error(format!(
      "Invalid selector: more than {MAX_SELECTOR_PARENS} parentheses"
    )));
  }
  if combinator_runs(s) > MAX_SELECTOR_COMBINATORS {
    return Err(JsErrorBox::type_error(format!(
      "Invalid selector: more than {MAX_SELECTOR_COMBINATORS} combinators"
    )));
  }
  s.parse::<Selector>()
    .map_err(|e| JsErrorBox::type_error(format!("Invalid selector {s:?}: {e}")))
}

/// The rewriter's run: feed what JS gives until the end, calling out for
/// every unit a handler wants.
fn run(
  y: &Yielder<Input, Ask>,
  first: Input,
  specs: Vec<(Option<Selector>, HandlerSpec)>,
  encoding: AsciiCompatibleEncoding,
  out: Rc<RefCell<Vec<u8>>>,
) -> Result<(), String> {
  let bridge = Bridge { y };
  let b = &bridge;
  let bp: *const Bridge<'_> = &bridge;
  let mut settings = Settings::new()
    .with_encoding(encoding)
    .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(MAX_BUFFER));
  for (h, (selector, spec)) in specs.into_iter().enumerate() {
    let h = h as u32;
    match selector {
      Some(sel) => {
        let mut handlers = ElementContentHandlers::default();
        if spec.element {
          handlers = handlers.element(move |el: &mut Element| {
            let ev = Event::Element {
              h,
              tag: el.tag_name(),
              attrs: el.attributes().iter().map(|a| (a.name(), a.value())).collect(),
              self_closing: el.is_self_closing(),
              can_have_content: el.can_have_content(),
              ns: el.namespace_uri(),
            };
            for m in b.ask(ev)? {
              apply_element(el, m, bp)?;
            }
            Ok(())
          });
        }
        if spec.comments {
          handlers = handlers.comments(move |c: &mut Comment| {
            for m in b.ask(comment_event(h, c))? {
              apply_comment(c, m)?;
            }
            Ok(())
          });
        }
        if spec.text {
          handlers = handlers.text(move |t: &mut TextChunk| {
            for m in b.ask(text_event(h, t))? {
              apply_text(t, m)?;
            }
            Ok(())
          });
        }
        settings = settings.append_element_content_handler((Cow::Owned(sel), handlers));
      }
      None => {
        let mut handlers = DocumentContentHandlers::default();
        if spec.doctype {
          handlers = handlers.doctype(move |d: &mut Doctype| {
            // A doctype takes one mutation: remove().
            for m in b.ask(doctype_event(h, d))? {
              match m.op {
                OP_REMOVE => d.remove(),
                op => return Err(format!("mutation {op} does not apply to a doctype").into()),
              }
            }
            Ok(())
          });
        }
        if spec.comments {
          handlers = handlers.comments(move |c: &mut Comment| {
            for m in b.ask(comment_event(h, c))? {
              apply_comment(c, m)?;
            }
            Ok(())
          });
        }
        if spec.text {
          handlers = handlers.text(move |t: &mut TextChunk| {
            for m in b.ask(text_event(h, t))? {
              apply_text(t, m)?;
            }
            Ok(())
          });
        }
        if spec.end {
          handlers = handlers.end(move |d: &mut DocumentEnd| {
            for m in b.ask(Event::End { h })? {
              apply_end(d, m)?;
            }
            Ok(())
          });
        }
        settings = settings.append_document_content_handler(handlers);
      }
    }
  }
  let sink = out.clone();
  let mut rw = HtmlRewriter::new(settings, move |c: &[u8]| sink.borrow_mut().extend_from_slice(c));
  let mut input = first;
  loop {
    match input {
      Input::Chunk(c) => rw.write(&c).map_err(|e| e.to_string())?,
      Input::End => return rw.end().map_err(|e| e.to_string()),
      Input::Cancel => return Err("the HTMLRewriter's stream was cancelled".into()),
      Input::Reply(_) => return Err("HTMLRewriter: a reply with no handler running".into()),
    }
    input = y.suspend(Ask::More);
  }
}

/// Checks a selector (`HTMLRewriter.on` throws at once on a bad one).
#[op2(fast)]
pub fn op_edge_html_selector(#[string] selector: &str) -> Result<(), JsErrorBox> {
  parse_selector(selector).map(drop)
}

/// A rewriter for `handlers`, reading input in `charset` (a label; UTF-8
/// when unknown or not ASCII-compatible, as on Workers).
#[op2]
#[cppgc]
pub fn op_edge_html_new(
  state: &mut OpState,
  #[serde] handlers: Vec<HandlerSpec>,
  #[string] charset: &str,
) -> Result<Rewriter, JsErrorBox> {
  // Each comma may separate two selectors (or sit in a string: counted
  // anyway, which only errs on the side of refusing).
  let count: usize = handlers
    .iter()
    .filter_map(|spec| spec.selector.as_ref())
    .map(|s| 1 + s.bytes().filter(|&b| b == b',').count())
    .sum();
  if count > MAX_SELECTORS {
    return Err(JsErrorBox::type_error(format!(
      "HTMLRewriter: {count} selectors, more than the {MAX_SELECTORS} taken"
    )));
  }
  let mut specs = Vec::with_capacity(handlers.len());
  for spec in handlers {
    let sel = spec.selector.as_deref().map(parse_selector).transpose()?;
    specs.push((sel, spec));
  }
  let selectors: usize = specs
    .iter()
    .filter_map(|(_, spec)| spec.selector.as_ref())
    .map(String::len)
    .sum();
  let encoding = encoding_rs::Encoding::for_label(charset.as_bytes())
    .and_then(AsciiCompatibleEncoding::new)
    .unwrap_or_else(AsciiCompatibleEncoding::utf_8);
  let stack = DefaultStack::new(STACK).map_err(|e| JsErrorBox::generic(format!("HTMLRewriter: no stack: {e}")))?;
  let out = Rc::new(RefCell::new(Vec::new()));
  let sink = out.clone();
  let co = Coroutine::with_stack(stack, move |y: &Yielder<Input, Ask>, first: Input| {
    run(y, first, specs, encoding, sink)
  });
  let budget = state.try_borrow::<Budget>().cloned();
  let charged = MAX_BUFFER + STACK + selectors * SELECTOR_CHARGE;
  if let Some(b) = &budget {
    b.charge(charged);
  }
  Ok(Rewriter {
    co: RefCell::new(Some(co)),
    out,
    budget,
    charged: Cell::new(charged),
  })
}

/// Feeds a piece of the input (JS slices it to at most 64 KiB).
#[op2]
#[serde]
pub fn op_edge_html_write(#[cppgc] rw: &Rewriter, #[anybuffer] chunk: &[u8]) -> Result<Step, JsErrorBox> {
  rw.resume(Input::Chunk(chunk.to_vec()))
}

/// The input has ended.
#[op2]
#[serde]
pub fn op_edge_html_end(#[cppgc] rw: &Rewriter) -> Result<Step, JsErrorBox> {
  rw.resume(Input::End)
}

/// The handler of the last event is done; these are its mutations.
#[op2]
#[serde]
pub fn op_edge_html_reply(#[cppgc] rw: &Rewriter, #[serde] mutations: Vec<Mutation>) -> Result<Step, JsErrorBox> {
  rw.resume(Input::Reply(mutations))
}

/// Ends the rewriter early (the stream was cancelled, a handler threw).
#[op2(fast)]
pub fn op_edge_html_close(#[cppgc] rw: &Rewriter) {
  rw.close();
}
