//! Every own property of the builtins in js-api/builtins.txt is classified
//! there, and the classification is true of this V8: a `guard` is our JS in
//! front of the builtin, anything else is V8's own. A V8 upgrade that adds,
//! drops or changes one fails here until somebody decides.

use std::collections::BTreeMap;

use crate::support::{get, Fixture};

const LIST: &str = include_str!("../js-api/builtins.txt");

const WORKER: &str = r#"
const TypedArray = Object.getPrototypeOf(Uint8Array);
const holders = {
  "Array.prototype": Array.prototype, "Array": Array,
  "String.prototype": String.prototype, "String": String,
  "Object": Object, "JSON": JSON, "RegExp.prototype": RegExp.prototype,
  "TypedArray.prototype": TypedArray.prototype, "TypedArray": TypedArray,
};
export default {
  fetch() {
    const out = [];
    for (const [holder, o] of Object.entries(holders)) {
      for (const key of Reflect.ownKeys(o)) {
        const d = Object.getOwnPropertyDescriptor(o, key);
        const f = d.value ?? d.get;
        const kind = typeof f !== "function" ? "value"
          : Function.prototype.toString.call(f).includes("[native code]") ? "native" : "js";
        out.push(`${holder}.${String(key)} ${kind}`);
      }
    }
    return new Response(out.join("\n"));
  },
};
"#;

#[tokio::test]
async fn every_builtin_is_classified_and_guards_are_in_place() {
  let f = Fixture::new();
  f.file("names.js", WORKER);
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"names\"\nmain = \"names.js\"\nroutes = [\"names.test\"]\n",
  );
  let got = get(e.http_addr().unwrap(), "names.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  let listed: BTreeMap<&str, &str> = LIST
    .lines()
    .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    .map(|l| l.rsplit_once(' ').unwrap_or_else(|| panic!("builtins.txt: {l:?}")))
    .collect();
  for class in listed.values() {
    assert!(
      ["constant", "input", "guard", "backstop"].contains(class),
      "builtins.txt: unknown class {class}"
    );
  }
  let mut problems = Vec::new();
  let mut seen = Vec::new();
  for line in got.body.lines() {
    let (name, kind) = line.rsplit_once(' ').unwrap();
    seen.push(name);
    match listed.get(name) {
      None => problems.push(format!("{name}: not classified in js-api/builtins.txt")),
      Some(&"guard") if kind != "js" => problems.push(format!("{name}: classified guard, but no guard is installed")),
      Some(c) if *c != "guard" && kind == "js" => problems.push(format!("{name}: guarded by our JS, classified {c}")),
      _ => {}
    }
  }
  for name in listed.keys() {
    if !seen.contains(name) {
      problems.push(format!("{name}: in js-api/builtins.txt, gone from V8"));
    }
  }
  assert!(problems.is_empty(), "{}", problems.join("\n"));
}
