//! The JSON planner and checker behind `JSON.parse` of long texts (pure:
//! no V8). See `js-api/src/ext/json.rs` for how the ops use them.
//!
//! Large JSON texts parsed in parts, so that a CPU or memory limit can stop
//! `JSON.parse` (V8's parser never checks for termination while it runs).
//!
//! `JSON.parse` in js-api's `js/json.js` hands a text longer than [`PART`] to
//! `op_edge_json_plan`, which finds its structure a step at a time (JS
//! loops between steps, and a stopped script stops there): every array or
//! object spanning more than [`PART`] code units is built by JS from runs
//! of its members, each run at most [`PART`] long (one member may be longer
//! if it is not an array or object) and parsed, and so validated, by V8's
//! own `JSON.parse`. The plan is a list of `u32` triples in text order:
//! [`OPEN_ARRAY`] / [`OPEN_OBJECT`] (with the span of the member's key when
//! the parent is an object), [`RUN`] (a span of members), [`CLOSE`]. It is
//! written as the scan goes: a container is known to be large once the scan
//! is [`PART`] past its opening bracket, after its ancestors, so the plan
//! comes out in order with one frame per open container and no tree.
//!
//! The planner only follows brackets, strings and commas. When it finds the
//! text malformed, or V8 refuses a run, `op_edge_json_check` validates the
//! whole text (also a step at a time) for an error message worded as V8's.

/// Longest span V8 parses in one call (~0.6 ms of parsing on this machine
/// for object-heavy JSON).
pub const PART: usize = 64 * 1024;
/// Code units one step looks at before it returns to JS.
pub const STEP: usize = 512 << 10;
/// Deepest nesting a long text may have (a frame per level is kept; V8's
/// own parser has no limit but its memory).
pub const MAX_DEPTH: usize = 65_536;

pub const OPEN_ARRAY: u32 = 1;
pub const OPEN_OBJECT: u32 = 2;
pub const RUN: u32 = 3;
pub const CLOSE: u32 = 4;

/// What a step reports to JS.
pub const MORE: u32 = 0;
/// Planned (from the planner), or valid (from the checker).
pub const DONE: u32 = 1;
/// Malformed: the checker words the error.
pub const INVALID: u32 = 2;
/// No array or object is large enough to split: V8 parses the whole text.
pub const WHOLE: u32 = 3;
/// Nested deeper than [`MAX_DEPTH`], or too many large containers for the
/// text's length (a `RangeError` in JS, whose message `js/json.js` has).
pub const TOO_DEEP: u32 = 4;

struct Frame {
  object: bool,
  open: usize,
  /// Where the member being read starts (its key, in objects).
  member_start: usize,
  has_members: bool,
  /// Start of the run of members not yet in the plan.
  run_start: Option<usize>,
  /// End of the last member read (the comma after it).
  prev_end: usize,
}

/// A plan in progress (one per isolate; `JSON.parse` does not nest while a
/// plan is made, and a new one replaces a stopped one).
#[derive(Default)]
pub struct Planner {
  pos: usize,
  in_string: bool,
  /// The next non-space character starts a member (or closes).
  want_member: bool,
  /// The member just read was a large container (already in the plan):
  /// only a comma or a closing bracket may follow.
  after_large: bool,
  root_open: bool,
  root_large: Option<bool>,
  stack: Vec<Frame>,
  /// How many frames, from the outermost, are large (in the plan).
  large: usize,
  plan: Vec<u32>,
  nodes: usize,
  max_nodes: usize,
}

const WS: u8 = 1;
const OTHER: u8 = 0;

const CLASSES: [u8; 128] = {
  let mut t = [OTHER; 128];
  t[0x20] = WS;
  t[0x09] = WS;
  t[0x0a] = WS;
  t[0x0d] = WS;
  let mut k = 0;
  let marks = *b"\",[]{}";
  while k < marks.len() {
    t[marks[k] as usize] = 2;
    k += 1;
  }
  t
};

/// [`WS`], [`OTHER`], or 2 for what the planner follows: `"`, `,`,
/// brackets and braces.
#[inline(always)]
fn class(c: u32) -> u8 {
  if c < 128 {
    CLASSES[c as usize]
  } else {
    OTHER
  }
}

impl Planner {
  /// The finished plan: `u32` triples in text order.
  pub fn into_plan(self) -> Vec<u32> {
    self.plan
  }

  /// Follows at most about [`STEP`] code units; [`MORE`] until the text
  /// ends.
  pub fn step<C: Unit>(&mut self, text: &[C]) -> u32 {
    let stop = self.pos.saturating_add(STEP).min(text.len());
    self.max_nodes = text.len() / 64 + 1024;
    let mut i = self.pos;
    while i < stop {
      if self.in_string {
        i = match C::find_quote_or_backslash(&text[i..]) {
          None => text.len(),
          Some(k) if text[i + k].get() == 0x5c => i + k + 2,
          Some(k) => {
            self.in_string = false;
            i + k + 1
          }
        };
        continue;
      }
      let c = text[i].get();
      let cls = class(c);
      if cls == WS {
        i += 1;
        continue;
      }
      if self.root_large.is_some() {
        return INVALID;
      }
      if !self.root_open {
        if c != 0x5b && c != 0x7b {
          return WHOLE;
        }
        self.root_open = true;
      }
      let closing = c == 0x5d || c == 0x7d;
      if self.after_large && c != 0x2c && !closing {
        return INVALID;
      }
      if self.want_member && !closing {
        self.want_member = false;
        if let Some(top) = self.stack.last_mut() {
          top.member_start = i;
          top.has_members = true;
        }
      }
      if cls == OTHER {
        i += 1;
        continue;
      }
      match c {
        0x22 => self.in_string = true,
        0x5b | 0x7b => {
          if self.stack.len() >= MAX_DEPTH {
            return TOO_DEEP;
          }
          self.stack.push(Frame {
            object: c == 0x7b,
            open: i,
            member_start: i + 1,
            has_members: false,
            run_start: None,
            prev_end: i + 1,
          });
          self.want_member = true;
        }
        0x2c => {
          if self.want_member || self.stack.is_empty() {
            return INVALID;
          }
          if let Err(r) = self.member_done(text, i) {
            return r;
          }
          self.want_member = true;
        }
        _ => {
          let Some(top) = self.stack.last() else { return INVALID };
          if top.object != (c == 0x7d) || (self.want_member && top.has_members) {
            return INVALID;
          }
          if top.has_members {
            if let Err(r) = self.member_done(text, i) {
              return r;
            }
          }
          if let Err(r) = self.close(text, i) {
            return r;
          }
        }
      }
      i += 1;
    }
    self.pos = i;
    if i < text.len() {
      return MORE;
    }
    match self.root_large {
      Some(true) => DONE,
      Some(false) => WHOLE,
      None => INVALID,
    }
  }

  /// Marks every open container that is [`PART`] behind `at` as large: the
  /// members its parent read before it go into the plan, then its opening.
  #[inline(always)]
  fn mark_large<C: Unit>(&mut self, text: &[C], at: usize) -> Result<(), u32> {
    if self.large < self.stack.len() && at - self.stack[self.large].open > PART {
      self.mark_large_now(text, at)
    } else {
      Ok(())
    }
  }

  #[inline(never)]
  fn mark_large_now<C: Unit>(&mut self, text: &[C], at: usize) -> Result<(), u32> {
    while self.large < self.stack.len() && at - self.stack[self.large].open > PART {
      let n = self.large;
      let mut key = (0, 0);
      if n > 0 {
        self.flush_run(n - 1);
        let parent = &self.stack[n - 1];
        if parent.object {
          let start = parent.member_start;
          if text[start].get() != 0x22 {
            return Err(INVALID);
          }
          let end = string_end(text, start).map_err(|_| INVALID)?;
          let colon = text[end..self.stack[n].open].iter().map(|u| u.get());
          if colon.filter(|c| class(*c) != WS).ne([0x3a]) {
            return Err(INVALID);
          }
          key = (start as u32, end as u32);
        }
      }
      let op = if self.stack[n].object { OPEN_OBJECT } else { OPEN_ARRAY };
      self.plan.extend([op, key.0, key.1]);
      self.large += 1;
      self.nodes += 1;
      if self.nodes > self.max_nodes {
        return Err(TOO_DEEP);
      }
    }
    Ok(())
  }

  fn flush_run(&mut self, n: usize) {
    let f = &mut self.stack[n];
    if let Some(start) = f.run_start.take() {
      self.plan.extend([RUN, start as u32, f.prev_end as u32]);
    }
  }

  /// The member of the innermost container ends at `end` (a comma or the
  /// closing bracket).
  fn member_done<C: Unit>(&mut self, text: &[C], end: usize) -> Result<(), u32> {
    self.mark_large(text, end)?;
    let large_member = std::mem::take(&mut self.after_large);
    let top = self.stack.last_mut().expect("a member is inside a container");
    let start = top.member_start;
    if !large_member {
      match top.run_start {
        None => top.run_start = Some(start),
        Some(run) if run < start && end - run > PART => {
          self.plan.extend([RUN, run as u32, top.prev_end as u32]);
          top.run_start = Some(start);
        }
        Some(_) => {}
      }
    }
    top.prev_end = end;
    Ok(())
  }

  /// Closes the innermost container at its bracket `at`.
  fn close<C: Unit>(&mut self, text: &[C], at: usize) -> Result<(), u32> {
    self.mark_large(text, at + 1)?;
    let depth = self.stack.len() - 1;
    let large = depth < self.large;
    if large {
      self.flush_run(depth);
      self.plan.extend([CLOSE, 0, 0]);
      self.large -= 1;
    }
    self.stack.pop();
    if self.stack.is_empty() {
      self.root_large = Some(large);
    }
    self.after_large = large;
    self.want_member = false;
    Ok(())
  }
}

#[derive(Clone, Copy, PartialEq)]
enum Expect {
  Value,
  ValueOrClose,
  Key,
  KeyOrClose,
  Colon,
  CommaOrClose,
  End,
}

/// Validation of a whole text, for the error message of a malformed one.
#[derive(Default)]
pub struct Checker {
  pos: usize,
  expect: Option<Expect>,
  /// Open containers: true for objects.
  stack: Vec<bool>,
  error: Option<String>,
}

impl Checker {
  /// The error the validation found, worded as V8's.
  pub fn into_error(self) -> Option<String> {
    self.error
  }

  fn fail<C: Unit>(&mut self, text: &[C], what: &str, at: usize) -> u32 {
    self.error = Some(message(text, what, at));
    INVALID
  }

  /// Checks at most about [`STEP`] code units; [`MORE`] until the text
  /// ends, then [`DONE`] or [`INVALID`].
  pub fn step<C: Unit>(&mut self, text: &[C]) -> u32 {
    let stop = self.pos.saturating_add(STEP);
    let mut expect = self.expect.unwrap_or(Expect::Value);
    loop {
      let mut i = self.pos;
      while i < text.len() && class(text[i].get()) == WS {
        i += 1;
      }
      self.pos = i;
      self.expect = Some(expect);
      if i >= text.len() {
        return match expect {
          Expect::End => DONE,
          Expect::CommaOrClose => self.fail(text, comma_expected(&self.stack), i),
          _ => self.fail(text, END, i),
        };
      }
      if i >= stop {
        return MORE;
      }
      if self.stack.len() > MAX_DEPTH {
        return TOO_DEEP;
      }
      let c = text[i].get();
      let close = |object: bool| if object { 0x7d } else { 0x5d };
      match expect {
        Expect::End => return self.fail(text, "Unexpected non-whitespace character after JSON", i),
        Expect::Colon => {
          if c != 0x3a {
            return self.fail(text, "Expected ':' after property name", i);
          }
          self.pos = i + 1;
          expect = Expect::Value;
        }
        Expect::Key | Expect::KeyOrClose => {
          if c == 0x7d && expect == Expect::KeyOrClose {
            self.stack.pop();
            self.pos = i + 1;
            expect = self.after_value();
            continue;
          }
          if c != 0x22 {
            return self.fail(text, "Expected double-quoted property name", i);
          }
          match string_end(text, i) {
            Ok(end) => self.pos = end,
            Err((what, at)) => return self.fail(text, what, at),
          }
          expect = Expect::Colon;
        }
        Expect::CommaOrClose => {
          let object = *self.stack.last().expect("inside a container");
          if c == 0x2c {
            self.pos = i + 1;
            expect = if object { Expect::Key } else { Expect::Value };
          } else if c == close(object) {
            self.stack.pop();
            self.pos = i + 1;
            expect = self.after_value();
          } else {
            return self.fail(text, comma_expected(&self.stack), i);
          }
        }
        Expect::Value | Expect::ValueOrClose => {
          if c == 0x5d && expect == Expect::ValueOrClose {
            self.stack.pop();
            self.pos = i + 1;
            expect = self.after_value();
            continue;
          }
          if c == 0x5b || c == 0x7b {
            self.stack.push(c == 0x7b);
            self.pos = i + 1;
            expect = if c == 0x7b {
              Expect::KeyOrClose
            } else {
              Expect::ValueOrClose
            };
            continue;
          }
          match primitive_end(text, i) {
            Ok(end) => self.pos = end,
            Err((what, at)) => return self.fail(text, what, at),
          }
          expect = self.after_value();
        }
      }
    }
  }

  fn after_value(&self) -> Expect {
    if self.stack.is_empty() {
      Expect::End
    } else {
      Expect::CommaOrClose
    }
  }
}

/// A code unit of a one-byte or two-byte V8 string.
pub trait Unit: Copy {
  fn get(self) -> u32;
  /// Index of the first `"` or `\\` in `s`.
  fn find_quote_or_backslash(s: &[Self]) -> Option<usize>;
}
impl Unit for u8 {
  #[inline(always)]
  fn get(self) -> u32 {
    self.into()
  }
  #[inline(always)]
  fn find_quote_or_backslash(s: &[u8]) -> Option<usize> {
    // Most strings in JSON are short: look at a few bytes before memchr.
    let head = s.len().min(16);
    match s[..head].iter().position(|b| *b == b'"' || *b == b'\\') {
      Some(k) => Some(k),
      None => memchr::memchr2(b'"', b'\\', &s[head..]).map(|k| k + head),
    }
  }
}
impl Unit for u16 {
  #[inline(always)]
  fn get(self) -> u32 {
    self.into()
  }
  fn find_quote_or_backslash(s: &[u16]) -> Option<usize> {
    s.iter().position(|u| *u == 0x22 || *u == 0x5c)
  }
}

type Bad = (&'static str, usize);

pub const END: &str = "Unexpected end of JSON input";
const TOKEN: &str = "Unexpected token";

fn comma_expected(stack: &[bool]) -> &'static str {
  match stack.last() {
    Some(true) => "Expected ',' or '}' after property value",
    _ => "Expected ',' or ']' after array element",
  }
}

/// An error message as V8's parser words it: the unexpected character with
/// up to 10 characters of context each side, or what was expected with the
/// position, line and column.
fn message<C: Unit>(text: &[C], what: &str, at: usize) -> String {
  const CONTEXT: usize = 10;
  let chars = |a: usize, b: usize| -> String {
    let units: Vec<u16> = text[a..b.min(text.len())].iter().map(|u| u.get() as u16).collect();
    String::from_utf16_lossy(&units)
  };
  if what == END {
    return END.into();
  }
  if what == TOKEN {
    let token = chars(at, at + 1);
    let context = if text.len() < 2 * CONTEXT + 1 {
      format!("\"{}\"", chars(0, text.len()))
    } else if at < CONTEXT {
      format!("\"{}\"...", chars(0, at + CONTEXT))
    } else if at < text.len() - CONTEXT {
      format!("...\"{}\"...", chars(at - CONTEXT, at + CONTEXT))
    } else {
      format!("...\"{}\"", chars(at - CONTEXT, text.len()))
    };
    return format!("Unexpected token '{token}', {context} is not valid JSON");
  }
  let (mut line, mut line_start, mut i) = (1, 0, 0);
  while i < at.min(text.len()) {
    let c = text[i].get();
    if c == 0x0d && i + 1 < at && text[i + 1].get() == 0x0a {
      i += 1;
    }
    if c == 0x0d || c == 0x0a {
      line += 1;
      line_start = i + 1;
    }
    i += 1;
  }
  let column = at - line_start + 1;
  let what = what
    .strip_suffix(" after JSON")
    .map_or_else(|| format!("{what} in JSON"), |w| format!("{w} after JSON"));
  format!("{what} at position {at} (line {line} column {column})")
}

/// End (one past the closing quote) of the string literal opening at `at`.
fn string_end<C: Unit>(text: &[C], at: usize) -> Result<usize, Bad> {
  let mut i = at + 1;
  while i < text.len() {
    i += plain_run(&text[i..]);
    if i >= text.len() {
      break;
    }
    match text[i].get() {
      0x22 => return Ok(i + 1),
      0x5c => {
        let Some(e) = text.get(i + 1) else { break };
        match e.get() {
          0x22 | 0x5c | 0x2f | 0x62 | 0x66 | 0x6e | 0x72 | 0x74 => i += 2,
          0x75 => {
            let hex = text.get(i + 2..i + 6).ok_or(("Bad Unicode escape", i))?;
            if !hex
              .iter()
              .all(|h| char::from_u32(h.get()).is_some_and(|c| c.is_ascii_hexdigit()))
            {
              return Err(("Bad Unicode escape", i));
            }
            i += 6;
          }
          _ => return Err(("Bad escaped character", i + 1)),
        }
      }
      c if c < 0x20 => return Err(("Bad control character in string literal", i)),
      _ => i += 1,
    }
  }
  Err(("Unterminated string", text.len()))
}

/// How many code units from the start of `s` need no look inside a string
/// literal (not `"`, `\\` or a control character): 32 at a time, in a form
/// the compiler turns into vector instructions.
fn plain_run<C: Unit>(s: &[C]) -> usize {
  let special = |u: &C| {
    let c = u.get();
    c == 0x22 || c == 0x5c || c < 0x20
  };
  let mut n = 0;
  for chunk in s.chunks_exact(32) {
    if chunk.iter().fold(false, |any, u| any | special(u)) {
      break;
    }
    n += 32;
  }
  n + s[n..].iter().position(special).unwrap_or(s.len() - n)
}

/// End of the number, `true`, `false`, `null` or string starting at `at`.
fn primitive_end<C: Unit>(text: &[C], at: usize) -> Result<usize, Bad> {
  let c = text[at].get();
  if c == 0x22 {
    return string_end(text, at);
  }
  for word in ["true", "false", "null"] {
    let w = word.as_bytes();
    if c == u32::from(w[0]) {
      let same = |k: &usize| text.get(at + k).is_some_and(|u| u.get() == u32::from(w[*k]));
      return match (0..w.len()).find(|k| !same(k)) {
        None => Ok(at + w.len()),
        Some(k) if at + k >= text.len() => Err((END, at + k)),
        Some(k) => Err((TOKEN, at + k)),
      };
    }
  }
  let digit = |i: usize| text.get(i).is_some_and(|d| (0x30..=0x39).contains(&d.get()));
  let is = |i: usize, ch: u8| text.get(i).is_some_and(|d| d.get() == u32::from(ch));
  let mut i = at;
  if is(i, b'-') {
    i += 1;
    if !digit(i) {
      return Err(("No number after minus sign", i));
    }
  } else if !digit(i) {
    return Err((TOKEN, at));
  }
  if is(i, b'0') {
    i += 1;
  } else {
    while digit(i) {
      i += 1;
    }
  }
  if is(i, b'.') {
    i += 1;
    if !digit(i) {
      return Err(("Unterminated fractional number", i));
    }
    while digit(i) {
      i += 1;
    }
  }
  if is(i, b'e') || is(i, b'E') {
    i += 1;
    if is(i, b'+') || is(i, b'-') {
      i += 1;
    }
    if !digit(i) {
      return Err(("Exponent part is missing a number", i));
    }
    while digit(i) {
      i += 1;
    }
  }
  Ok(i)
}

#[cfg(test)]
mod tests;
