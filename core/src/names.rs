//! Names a worker's settings use: the worker's own and its module paths.

/// Letters, digits, `-` and `_`, 1 to 128 of them.
pub fn check_worker_name(name: &str) -> Result<(), String> {
  if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
    return Err(format!("{name:?}: a worker name uses letters, digits, '-' and '_'"));
  }
  Ok(())
}

/// The longest module path, and the longest name in it (a file system's).
pub const MAX_MODULE_PATH: usize = 512;
pub const MAX_MODULE_NAME: usize = 255;

/// A relative path of `/`-separated plain names ending in .js, .mjs,
/// .ts, .mts, .cts, .json, .wasm or .map.
pub fn check_module_path(p: &str) -> Result<(), String> {
  if p.len() > MAX_MODULE_PATH {
    return Err(format!("a module path of {} bytes: at most {MAX_MODULE_PATH}", p.len()));
  }
  let ok_ext = [".js", ".mjs", ".ts", ".mts", ".cts", ".json", ".wasm", ".map"]
    .iter()
    .any(|e| p.ends_with(e));
  let ok_parts = !p.is_empty()
    && p.split('/').all(|part| {
      !part.is_empty()
        && part.len() <= MAX_MODULE_NAME
        && part != "."
        && part != ".."
        && part
          .chars()
          .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    });
  if ok_ext && ok_parts {
    Ok(())
  } else {
    Err(format!(
      "{p:?}: a module path is relative, of letters, digits, '-', '_' and '.', and ends in .js, .mjs, .ts, .mts, .cts, .json, .wasm or .map (a source map)"
    ))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn worker_names() {
    for ok in ["a", "hello-world", "A_1", &"x".repeat(128)] {
      assert!(check_worker_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "a b", "a/b", "é", "a.b", &"x".repeat(129)] {
      assert!(check_worker_name(bad).is_err(), "{bad:?}");
    }
  }

  #[test]
  fn module_paths() {
    for ok in [
      "index.js",
      "lib/a.mjs",
      "data.json",
      "m/x.wasm",
      "a.b.js",
      "src/index.ts",
      "index.js.map",
    ] {
      assert!(check_module_path(ok).is_ok(), "{ok}");
    }
    for bad in [
      "",
      "/abs.js",
      "../up.js",
      "a/../b.js",
      "./a.js",
      "a//b.js",
      "a.tsx",
      "a b.js",
      "a\\b.js",
      "lib/",
      &format!("{}.js", "a".repeat(253)),
      &format!("{}/a.js", ["d"; 256].join("/")),
    ] {
      assert!(check_module_path(bad).is_err(), "{bad:?}");
    }
    assert!(check_module_path(&format!("{}.js", "a".repeat(252))).is_ok());
  }
}
