//! The ops of `JSON.parse` in parts (`js/json.js`): a planning step and a
//! validation step over a V8 string, seen without a copy; the planner and
//! checker themselves are in `edge_core::json` (pure, unit-tested).

use deno_core::op2;
use deno_core::v8;
use deno_core::OpState;
use edge_core::json::{
  Checker, Planner, Unit, CLOSE, DONE, END, INVALID, MAX_DEPTH, MORE, OPEN_ARRAY, OPEN_OBJECT, PART, RUN, TOO_DEEP,
  WHOLE,
};
/// A scan of a text that goes a step at a time, kept in the isolate's
/// `OpState` between steps.
trait Scan: Default + 'static {
  fn step<C: Unit>(&mut self, text: &[C]) -> u32;
}

impl Scan for Planner {
  fn step<C: Unit>(&mut self, text: &[C]) -> u32 {
    Planner::step(self, text)
  }
}

impl Scan for Checker {
  fn step<C: Unit>(&mut self, text: &[C]) -> u32 {
    Checker::step(self, text)
  }
}

/// One step of the scan `S` over `text`, from the start when `restart`.
fn scan_step<S: Scan>(
  scope: &mut v8::PinScope,
  state: &mut OpState,
  text: v8::Local<v8::String>,
  restart: bool,
) -> u32 {
  if restart || !state.has::<S>() {
    state.put(S::default());
  }
  let scan = state.borrow_mut::<S>();
  let view = v8::ValueView::new(scope, text);
  match view.data() {
    v8::ValueViewData::OneByte(b) => scan.step(b),
    v8::ValueViewData::TwoByte(u) => scan.step(u),
  }
}

/// One planning step over `text` (from the start when `restart`): 0 more
/// to do, 1 planned ([`op_edge_json_take_plan`]), 2 malformed (check it),
/// 3 parse it whole, 4 too deep.
#[op2(fast)]
pub fn op_edge_json_plan(
  scope: &mut v8::PinScope,
  state: &mut OpState,
  text: v8::Local<v8::String>,
  restart: bool,
) -> u32 {
  let r = scan_step::<Planner>(scope, state, text, restart);
  if r != MORE && r != DONE {
    state.try_take::<Planner>();
  }
  r
}

/// The finished plan, as little-endian `u32`s.
#[op2]
#[buffer]
pub fn op_edge_json_take_plan(state: &mut OpState) -> Vec<u8> {
  let plan = state.try_take::<Planner>().map(Planner::into_plan).unwrap_or_default();
  plan.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// One validation step over `text` (from the start when `restart`): 0 more
/// to do, 1 valid, 2 malformed and 4 too deep
/// ([`op_edge_json_error`]).
#[op2(fast)]
pub fn op_edge_json_check(
  scope: &mut v8::PinScope,
  state: &mut OpState,
  text: v8::Local<v8::String>,
  restart: bool,
) -> u32 {
  scan_step::<Checker>(scope, state, text, restart)
}

/// The error the last validation found.
#[op2]
#[string]
pub fn op_edge_json_error(state: &mut OpState) -> String {
  state
    .try_take::<Checker>()
    .and_then(Checker::into_error)
    .unwrap_or_else(|| END.into())
}

/// The constants `js/json.js` shares with the planner, in the order it
/// destructures them (read once, while the snapshot is made).
#[op2]
#[serde]
pub fn op_edge_json_constants() -> Vec<u32> {
  vec![
    PART as u32,
    MAX_DEPTH as u32,
    OPEN_ARRAY,
    OPEN_OBJECT,
    RUN,
    CLOSE,
    MORE,
    DONE,
    INVALID,
    WHOLE,
    TOO_DEEP,
  ]
}
