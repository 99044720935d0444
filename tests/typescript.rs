//! TypeScript workers run directly: `.ts` modules compiled on load (types
//! dropped, type-only imports gone, enums compiled), imports without an
//! extension or of `x.js` for `x.ts` found as a bundler finds them, stack
//! traces mapped back to the TypeScript lines, and a compile error naming
//! the file and line at start.

use crate::support::{Fixture, H1};

const INDEX: &str = r#"import type { Greeting } from "./types";
import { Shape } from "./types";
import { shout } from "./util";
import { area } from "./geometry.js";

enum Mode { Plain = "plain", Loud = "loud" }

interface Env { NAME: string }

class Greeter {
  constructor(private readonly env: Env, public mode: Mode) {}
  greet(): Greeting {
    const text: string = `hello ${this.env.NAME}`;
    return { text: this.mode === Mode.Loud ? shout(text) : text };
  }
}

export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname === "/throw") {
      throw new Error("thrown from TypeScript");
    }
    if (url.pathname === "/stack") {
      return new Response(new Error("where").stack!);
    }
    const g = new Greeter(env, url.searchParams.has("loud") ? Mode.Loud : Mode.Plain);
    const s: Shape = { w: 3, h: 4 };
    return Response.json({ ...g.greet(), area: area(s) });
  },
} satisfies ExportedHandler<Env>;
"#;

const TYPES: &str = "export interface Greeting { text: string }\nexport type Shape = { w: number; h: number };\n";
const UTIL: &str = "export const shout = (s: string): string => s.toUpperCase() + \"!\";\n";
const GEOMETRY: &str =
  "import type { Shape } from \"./types.ts\";\nexport function area({ w, h }: Shape): number { return w * h; }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_worker_runs_with_its_imports_and_mapped_stacks() {
  let f = Fixture::new();
  f.file("app/src/index.ts", INDEX)
    .file("app/src/types.ts", TYPES)
    .file("app/src/util.ts", UTIL)
    .file("app/src/geometry.ts", GEOMETRY);
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"ts\"\nmain = \"app/src/index.ts\"\nroutes = [\"ts.test\"]\nvars = { NAME = \"edge\" }\n",
  );
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("ts.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert_eq!(got.body, r#"{"text":"hello edge","area":12}"#);
  assert_eq!(
    c.get("ts.test", "/?loud").await.body,
    r#"{"text":"HELLO EDGE!","area":12}"#
  );
  // err.stack points into the TypeScript source: line 25, where `new
  // Error("where")` is written (the compiled code has no such line).
  let stack = c.get("ts.test", "/stack").await.body;
  assert!(stack.contains("app/src/index.ts:25:27"), "{stack}");
  let thrown = c.get("ts.test", "/throw").await;
  assert_eq!(thrown.status, 500);
}

#[test]
fn a_typescript_compile_error_stops_the_start_naming_file_and_line() {
  let f = Fixture::new();
  f.file(
    "bad.ts",
    "const a: number = 1;\nexport default { fetch(): Response { return new Response(a as); } };\n",
  );
  let toml = "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"bad\"\nmain = \"bad.ts\"\n";
  let err = edge::Engine::start(f.config(toml).unwrap())
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
  assert!(err.contains("bad.ts:2:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundles_external_source_map_names_its_sources_in_stacks() {
  let f = Fixture::new();
  // What a bundler writes: one line of code, and a map of it back to
  // src/handler.ts line 3, column 10.
  f.file(
    "dist/index.js",
    "export default { fetch() { return new Response(new Error(\"x\").stack); } };\n//# sourceMappingURL=index.js.map\n",
  );
  f.file(
    "dist/index.js.map",
    r#"{"version":3,"sources":["../src/handler.ts"],"names":[],"mappings":"AAEU"}"#,
  );
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"b\"\nmain = \"dist/index.js\"\nroutes = [\"b.test\"]\n",
  );
  let stack = H1::connect(e.http_addr().unwrap()).await.get("b.test", "/").await.body;
  assert!(stack.contains("src/handler.ts:3:11"), "{stack}");
}

#[test]
fn typescript_that_kills_the_compiler_is_refused_and_the_node_lives() {
  let f = Fixture::new();
  let depth = 200_000;
  f.file(
    "deep.ts",
    format!(
      "export default {{ fetch() {{ return new Response(String({}1{})); }} }};\n",
      "(".repeat(depth),
      ")".repeat(depth)
    ),
  );
  let toml = "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"deep\"\nmain = \"deep.ts\"\n";
  let err = edge::Engine::start(f.config(toml).unwrap())
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
  assert!(err.contains("the TypeScript compiler died on this module"), "{err}");
}
