//! TypeScript workers: a `.ts` / `.mts` / `.cts` module compiled to
//! JavaScript before V8 compiles it, by SWC's TypeScript transform (through
//! `swc_ts_fast_strip`, the stripper Node's type stripping uses, in its
//! transform mode).
//!
//! Transform rather than strip-in-place, because erasing types alone keeps
//! `import { T } from "./types"` of a type-only export, which then fails at
//! link time; the transform drops imports used only as types (as tsc and
//! esbuild do, and wrangler's bundler with them) and compiles `enum`,
//! `namespace` and parameter properties. Positions move, so the output
//! carries its source map inline (`//# sourceMappingURL=data:...`), which
//! deno_core applies to stack traces. Types are not checked (as with
//! wrangler and `deno run`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use swc_common::errors::{DiagnosticBuilder, Emitter, Handler};
use swc_common::sync::Lrc;
use swc_common::{BytePos, SourceMap, GLOBALS};
use swc_ts_fast_strip::{operate, Mode, Options};

/// Whether a module at `path` is TypeScript by its extension (`.d.ts`
/// included: it strips to nothing). `.tsx` is not: JSX needs a bundler.
pub fn is_typescript(path: &str) -> bool {
  [".ts", ".mts", ".cts"].iter().any(|e| path.ends_with(e))
}

/// `source` (the module `name`, a path or URL, named in errors) as
/// JavaScript with its source map inline. `Err` is a message naming each
/// problem with its line and column (`name:3:7: ...`).
pub fn strip(name: &str, source: &str) -> Result<String, String> {
  stacker::grow(STACK, || GLOBALS.set(&Default::default(), || run(name, source)))
}

/// The stack SWC runs on (reserved, touched only as deep as it recurses).
const STACK: usize = 256 << 20;

/// How long [`compile`] waits for its child.
pub const COMPILE_TIMEOUT: Duration = Duration::from_secs(10);

/// The memory [`compile`]'s child may allocate past what it was forked
/// with.
const CHILD_MEMORY: u64 = 1 << 30;

/// [`strip`] behind a process boundary: SWC recurses as deep as the code
/// nests and has no depth limit, so a module of nested brackets or
/// operators could overflow any stack (an abort of the whole process) or
/// take memory without end. The work runs in a child forked for it (it
/// touches nothing but its input and a pipe, then `_exit`s), which may
/// allocate [`CHILD_MEMORY`] more than it was forked with, is the OOM
/// killer's first choice, and is killed after `timeout`; a child that
/// dies or is killed is an error naming the module. Forking a large
/// process costs its page tables (milliseconds); a module is compiled
/// once per worker version.
pub fn compile(name: &str, source: &str, timeout: Duration) -> Result<String, String> {
  let mut fds = [0 as libc::c_int; 2];
  // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
  if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
    return Err(format!(
      "{name}: cannot compile TypeScript: pipe: {}",
      std::io::Error::last_os_error()
    ));
  }
  let (read_fd, write_fd) = (fds[0], fds[1]);
  // SAFETY: fork has no preconditions; the child below only computes on
  // memory it inherited, writes to its pipe and `_exit`s (no destructors,
  // no atexit handlers, no other thread's state touched).
  let pid = unsafe { libc::fork() };
  if pid < 0 {
    let e = std::io::Error::last_os_error();
    // SAFETY: both are open descriptors this function owns.
    unsafe {
      libc::close(read_fd);
      libc::close(write_fd);
    }
    return Err(format!("{name}: cannot compile TypeScript: fork: {e}"));
  }
  if pid == 0 {
    child(name, source, read_fd, write_fd);
  }
  // SAFETY: the parent's copy of the write end, owned here.
  unsafe { libc::close(write_fd) };
  let out = read_child(read_fd, timeout);
  // SAFETY: the read end, owned here.
  unsafe { libc::close(read_fd) };
  let timed_out = out.is_none();
  if timed_out {
    // SAFETY: `pid` is our child, not yet waited for.
    unsafe { libc::kill(pid, libc::SIGKILL) };
  }
  let mut status = 0;
  // SAFETY: `pid` is our child; `status` is a valid int.
  unsafe { libc::waitpid(pid, &mut status, 0) };
  if timed_out {
    return Err(format!(
      "{name}: compiling this TypeScript took over {} s and was stopped",
      timeout.as_secs()
    ));
  }
  let out = out.unwrap_or_default();
  match out.split_first() {
    Some((0, code)) => String::from_utf8(code.to_vec()).map_err(|_| format!("{name}: compiled to invalid UTF-8")),
    Some((1, message)) => Err(String::from_utf8_lossy(message).into_owned()),
    _ => Err(format!(
      "{name}: the TypeScript compiler died on this module ({}): it nests too deep or is too large; bundle it first (esbuild)",
      if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
      } else {
        format!("exit {}", libc::WEXITSTATUS(status))
      }
    )),
  }
}

/// The forked child: compiles, writes `0 code` or `1 message`, `_exit`s.
fn child(name: &str, source: &str, read_fd: libc::c_int, write_fd: libc::c_int) -> ! {
  // SAFETY: the child's copy of the read end, unused here.
  unsafe { libc::close(read_fd) };
  let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
  if let Some(now) = data_bytes() {
    let limit = libc::rlimit {
      rlim_cur: now + CHILD_MEMORY,
      rlim_max: now + CHILD_MEMORY,
    };
    // SAFETY: `limit` is a valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) };
  }
  let mut out = match strip(name, source) {
    Ok(code) => {
      let mut v = vec![0u8];
      v.extend_from_slice(code.as_bytes());
      v
    }
    Err(m) => {
      let mut v = vec![1u8];
      v.extend_from_slice(m.as_bytes());
      v
    }
  };
  let mut at = 0;
  while at < out.len() {
    // SAFETY: writes from a live buffer's remaining bytes.
    let n = unsafe { libc::write(write_fd, out[at..].as_ptr().cast(), out.len() - at) };
    if n <= 0 {
      break;
    }
    at += n as usize;
  }
  out.clear();
  // SAFETY: ends the child at once, as a forked child must.
  unsafe { libc::_exit(0) }
}

/// This process's data segment (VmData), in bytes.
fn data_bytes() -> Option<u64> {
  let status = std::fs::read_to_string("/proc/self/status").ok()?;
  let line = status.lines().find(|l| l.starts_with("VmData:"))?;
  let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
  Some(kb * 1024)
}

/// All the child writes, or `None` if it takes longer than `timeout`.
fn read_child(fd: libc::c_int, timeout: Duration) -> Option<Vec<u8>> {
  let deadline = Instant::now() + timeout;
  let mut out = Vec::new();
  let mut buf = vec![0u8; 64 * 1024];
  loop {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
      return None;
    }
    let mut pfd = libc::pollfd {
      fd,
      events: libc::POLLIN,
      revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
    if ready < 0 {
      if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
        continue;
      }
      return Some(out);
    }
    if ready == 0 {
      continue;
    }
    // SAFETY: reads into a live buffer of `buf.len()` bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
      continue;
    }
    if n <= 0 {
      return Some(out);
    }
    out.extend_from_slice(&buf[..n as usize]);
  }
}

/// A diagnostic as SWC reports it: message and where.
type Diagnostic = (String, Option<BytePos>);

/// The diagnostics of one run.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<Diagnostic>>>);

impl Emitter for Collected {
  fn emit(&mut self, db: &mut DiagnosticBuilder<'_>) {
    let at = db.span.primary_span().map(|s| s.lo);
    let message = db.message();
    self.0.lock().expect("diagnostics").push((message, at));
  }
}

fn run(name: &str, source: &str) -> Result<String, String> {
  let cm: Lrc<SourceMap> = Default::default();
  let collected = Collected::default();
  let handler = Handler::with_emitter(true, false, Box::new(collected.clone()));
  let options = Options {
    module: Some(true),
    filename: Some(name.to_string()),
    mode: Mode::Transform,
    source_map: true,
    ..Default::default()
  };
  match operate(&cm, &handler, source.to_string(), options) {
    Ok(out) => Ok(match out.map {
      Some(map) => format!(
        "{}\n//# sourceMappingURL=data:application/json;base64,{}\n",
        out.code,
        base64::engine::general_purpose::STANDARD.encode(map)
      ),
      None => out.code,
    }),
    Err(e) => {
      let list = collected.0.lock().expect("diagnostics").clone();
      let mut lines: Vec<String> = list
        .into_iter()
        .map(|(m, at)| match at {
          Some(pos) if pos.0 > 0 => {
            let loc = cm.lookup_char_pos(pos);
            format!("{name}:{}:{}: {m}", loc.line, loc.col_display + 1)
          }
          _ => format!("{name}: {m}"),
        })
        .collect();
      if lines.is_empty() {
        lines.push(format!("{name}: {e}"));
      }
      Err(lines.join("\n"))
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn types_go_and_a_source_map_comes() {
    let src = "interface A { x: number }\nconst a: A = { x: 1 } as A;\nexport function f<T>(v: T): T { return v; }\n";
    let out = strip("a.ts", src).unwrap();
    assert!(out.contains("const a = {"), "{out}");
    assert!(!out.contains("interface") && !out.contains(": A"), "{out}");
    assert!(out.contains("export function f(v)"), "{out}");
    assert!(out.contains("//# sourceMappingURL=data:application/json;base64,"));
  }

  #[test]
  fn type_only_imports_go_and_value_imports_stay() {
    let src = "import { T } from \"./types\";\nimport { v } from \"./values\";\nexport const x: T = v;\n";
    let out = strip("i.ts", src).unwrap();
    assert!(!out.contains("./types"), "{out}");
    assert!(out.contains("./values"), "{out}");
  }

  #[test]
  fn enums_and_parameter_properties_are_compiled() {
    let src = "export enum Color { Red, Green }\nexport class P { constructor(private x: number) {} get() { return this.x; } }\n";
    let out = strip("b.ts", src).unwrap();
    assert!(out.contains("Color[\"Red\"]") || out.contains("Color.Red"), "{out}");
    assert!(out.contains("this.x = x"), "{out}");
  }

  #[test]
  fn syntax_errors_name_the_file_line_and_column() {
    let err = strip("src/c.ts", "const a = 1;\nlet b: number = ;\n").unwrap_err();
    assert!(err.starts_with("src/c.ts:2:"), "{err}");
  }

  #[test]
  fn only_typescript_extensions_are_typescript() {
    assert!(is_typescript("/w/index.ts") && is_typescript("/w/a.mts") && is_typescript("/w/a.d.ts"));
    assert!(!is_typescript("/w/index.js") && !is_typescript("/w/a.tsx") && !is_typescript("/w/ts"));
  }
}

#[cfg(test)]
mod hostile {
  use super::*;

  /// Deep nesting ends as an error or a result, never as a stack overflow
  /// (an abort of the whole process) or memory without end: the compile
  /// runs in a child process.
  #[test]
  fn deep_nesting_is_contained_in_the_child() {
    let depth = 200_000;
    let sources = [
      format!("export const a = {}1{};", "(".repeat(depth), ")".repeat(depth)),
      format!("export const a = {}{};", "[".repeat(depth), "]".repeat(depth)),
      format!(
        "export type T = {}number{};",
        "Array<".repeat(depth / 10),
        ">".repeat(depth / 10)
      ),
      format!("export const a = {}1;", "-".repeat(depth)),
      format!("export const f = {}1;", "() => ".repeat(depth / 10)),
      format!("{}{}", "if (1) {".repeat(depth / 10), "}".repeat(depth / 10)),
    ];
    for src in sources {
      let t = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || compile("deep.ts", &src, Duration::from_secs(5)))
        .unwrap();
      match t.join().expect("no panic") {
        Ok(code) => assert!(code.contains("export")),
        Err(e) => assert!(e.starts_with("deep.ts"), "{e}"),
      }
    }
    // And ordinary code still compiles the same way.
    let ok = compile("ok.ts", "export const x: number = 1;\n", COMPILE_TIMEOUT).unwrap();
    assert!(ok.contains("export const x = 1"), "{ok}");
    let err = compile("bad.ts", "let a: = 1;\n", COMPILE_TIMEOUT).unwrap_err();
    assert!(err.starts_with("bad.ts:1:"), "{err}");
  }
}
