//! The planner and checker against texts built here; a plan is checked by
//! putting the text back together from it.

use super::*;

fn plan(text: &str) -> (u32, Vec<u32>) {
  let mut p = Planner::default();
  let mut steps = 0;
  loop {
    let r = p.step(text.as_bytes());
    steps += 1;
    assert!(steps < 10_000, "the planner makes progress");
    if r != MORE {
      return (r, p.into_plan());
    }
  }
}

fn check(text: &str) -> (u32, Option<String>) {
  let mut c = Checker::default();
  loop {
    let r = c.step(text.as_bytes());
    if r != MORE {
      return (r, c.into_error());
    }
  }
}

/// Puts the text back together from its plan the way `js/json.js`
/// builds the value: containers opened and closed, runs of members.
fn rebuild(text: &str, plan: &[u32]) -> String {
  struct Open {
    object: bool,
    key: Option<String>,
    parts: Vec<String>,
  }
  let mut stack: Vec<Open> = Vec::new();
  let mut root = None;
  for t in plan.chunks(3) {
    let span = |i: usize| -> &str { &text[t[1] as usize..t[2] as usize][..i.min(t[2] as usize - t[1] as usize)] };
    match t[0] {
      RUN => {
        let run = span(usize::MAX).to_string();
        assert!(!run.is_empty());
        stack.last_mut().expect("a run is inside a container").parts.push(run);
      }
      CLOSE => {
        let f = stack.pop().expect("balanced");
        let (open, close) = if f.object { ('{', '}') } else { ('[', ']') };
        let value = format!("{open}{}{close}", f.parts.join(","));
        let member = match f.key {
          Some(k) => format!("{k}:{value}"),
          None => value,
        };
        match stack.last_mut() {
          Some(parent) => parent.parts.push(member),
          None => root = Some(member),
        }
      }
      op => {
        let in_object = stack.last().is_some_and(|f| f.object);
        stack.push(Open {
          object: op == OPEN_OBJECT,
          key: in_object.then(|| span(usize::MAX).to_string()),
          parts: Vec::new(),
        });
      }
    }
  }
  assert!(stack.is_empty(), "every container closed");
  root.expect("a root value")
}

fn big_array(n: usize) -> String {
  let items: Vec<String> = (0..n)
    .map(|i| format!("{{\"id\":{i},\"name\":\"item-{i}\"}}"))
    .collect();
  format!("[{}]", items.join(","))
}

#[test]
fn short_or_flat_texts_are_parsed_whole() {
  assert_eq!(plan("[1,2,3]").0, WHOLE);
  assert_eq!(plan(&format!("\"{}\"", "x".repeat(PART * 2))).0, WHOLE);
  assert_eq!(plan("  42").0, WHOLE);
}

#[test]
fn a_large_array_is_planned_in_runs_no_longer_than_a_part() {
  let text = big_array(20_000);
  assert!(text.len() > 4 * PART);
  let (r, p) = plan(&text);
  assert_eq!(r, DONE);
  assert_eq!(p[0], OPEN_ARRAY);
  for t in p.chunks(3).filter(|t| t[0] == RUN) {
    assert!((t[2] - t[1]) as usize <= PART + 64, "run of {}", t[2] - t[1]);
  }
  assert_eq!(rebuild(&text, &p), text);
}

#[test]
fn nested_large_containers_keep_their_keys_and_order() {
  let text = format!(
    "{{\"a\":1,\"list\":{},\"obj\":{{\"inner\":{}}},\"z\":\"end\"}}",
    big_array(5_000),
    big_array(5_000)
  );
  let (r, p) = plan(&text);
  assert_eq!(r, DONE);
  assert_eq!(rebuild(&text, &p), text);
}

#[test]
fn malformed_texts_are_handed_to_the_checker() {
  let text = format!("{},]", &big_array(5_000)[..big_array(5_000).len() - 1]);
  assert_eq!(plan(&text).0, INVALID);
  let (r, e) = check(&text);
  assert_eq!(r, INVALID);
  assert!(e.unwrap().starts_with("Unexpected token ']'"));
}

#[test]
fn checker_words_errors_as_v8() {
  assert_eq!(check("[1,2]").0, DONE);
  assert_eq!(check("{\"a\":[true,false,null]}").0, DONE);
  assert_eq!(check("[1,").1.as_deref(), Some(END));
  assert_eq!(
    check("[1,2").1.as_deref(),
    Some("Expected ',' or ']' after array element in JSON at position 4 (line 1 column 5)")
  );
  assert_eq!(
    check("[1 2]").1.as_deref(),
    Some("Expected ',' or ']' after array element in JSON at position 3 (line 1 column 4)")
  );
  assert_eq!(
    check("{\"a\":1 \"b\"}").1.as_deref(),
    Some("Expected ',' or '}' after property value in JSON at position 7 (line 1 column 8)")
  );
  assert_eq!(
    check("[x]").1.as_deref(),
    Some("Unexpected token 'x', \"[x]\" is not valid JSON")
  );
}

#[test]
fn too_deep_is_refused() {
  let depth = MAX_DEPTH + 10;
  let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
  assert_eq!(plan(&text).0, TOO_DEEP);
}
