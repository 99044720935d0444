//! Builds the V8 startup snapshot: every Web API script a worker needs,
//! loaded and evaluated once here, so an isolate starts from a heap image.
//! Also writes the sources of the lazy scripts the snapshot did not consume.

#[path = "src/ext/mod.rs"]
#[allow(dead_code)]
mod ext;

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
  let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
  let output = deno_core::snapshot::create_snapshot(
    deno_core::snapshot::CreateSnapshotOptions {
      cargo_manifest_dir: env!("CARGO_MANIFEST_DIR"),
      startup_snapshot: None,
      skip_op_registration: false,
      extensions: ext::list::extensions(Default::default()),
      extension_transpiler: None,
      with_runtime_cb: None,
    },
    None,
  )
  .expect("creating the V8 startup snapshot");
  std::fs::write(out.join("SNAPSHOT.bin"), &output.output).expect("writing SNAPSHOT.bin");
  for path in &output.files_loaded_during_snapshot {
    println!("cargo:rerun-if-changed={}", path.display());
  }

  // Lazy scripts that nothing loaded while the snapshot was made stay
  // loadable at run time from these sources.
  let consumed: std::collections::HashSet<&str> = output.consumed_lazy_specifiers.iter().map(String::as_str).collect();
  let mut js: Vec<(&str, String)> = Vec::new();
  let mut esm: Vec<(&str, String)> = Vec::new();
  let exts = ext::list::extensions(Default::default());
  for e in &exts {
    for (files, list) in [(&e.lazy_loaded_js_files, &mut js), (&e.lazy_loaded_esm_files, &mut esm)] {
      for f in files.iter() {
        if !consumed.contains(f.specifier) {
          let code = f.load().expect("reading a lazy extension script");
          list.push((f.specifier, code.as_str().to_string()));
        }
      }
    }
  }
  // deno_core looks these up by binary search.
  js.sort_by(|a, b| a.0.cmp(b.0));
  esm.sort_by(|a, b| a.0.cmp(b.0));
  let table = |name: &str, list: &[(&str, String)]| {
    let mut t = format!("pub static {name}: &[(&str, &str)] = &[\n");
    for (spec, code) in list {
      writeln!(t, "  ({spec:?}, {code:?}),").unwrap();
    }
    t.push_str("];\n");
    t
  };
  let (js, esm) = (table("RESIDUAL_LAZY_JS", &js), table("RESIDUAL_LAZY_ESM", &esm));
  std::fs::write(out.join("residual.rs"), js + &esm).expect("writing residual.rs");
  println!("cargo:rerun-if-changed=js");
  println!("cargo:rerun-if-changed=src/ext");
}
