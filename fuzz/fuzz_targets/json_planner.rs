//! The JSON planner and checker on any text: they never panic, always
//! finish, and a plan's spans stay inside the text, in order, balanced.
#![no_main]

use edge_core::json::{Checker, Planner, CLOSE, DONE, MORE, OPEN_ARRAY, OPEN_OBJECT, RUN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
  // Repeat the input so that large containers (over a part) occur.
  let mut text = data.to_vec();
  while !text.is_empty() && text.len() < 3 * edge_core::json::PART {
    text.extend_from_slice(data);
  }
  let mut p = Planner::default();
  let mut steps = 0usize;
  let r = loop {
    let r = p.step(&text[..]);
    steps += 1;
    assert!(steps <= text.len() / 1024 + 16, "the planner makes progress");
    if r != MORE {
      break r;
    }
  };
  if r == DONE {
    let plan = p.into_plan();
    assert_eq!(plan.len() % 3, 0);
    let mut depth = 0i64;
    let mut last = 0u32;
    for t in plan.chunks(3) {
      match t[0] {
        OPEN_ARRAY | OPEN_OBJECT => depth += 1,
        CLOSE => depth -= 1,
        RUN => {
          assert!(t[1] < t[2] && t[2] as usize <= text.len());
          assert!(t[1] >= last, "runs in text order");
          last = t[2];
        }
        op => panic!("unknown op {op}"),
      }
      assert!(depth >= 0);
    }
    assert_eq!(depth, 0);
  }
  let mut c = Checker::default();
  while c.step(&text[..]) == MORE {}
});
