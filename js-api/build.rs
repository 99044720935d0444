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
  let mut js = String::from("pub static RESIDUAL_LAZY_JS: &[(&str, &str)] = &[\n");
  let mut esm = String::from("pub static RESIDUAL_LAZY_ESM: &[(&str, &str)] = &[\n");
  for e in ext::list::extensions(Default::default()) {
    for (files, buf) in [(&e.lazy_loaded_js_files, &mut js), (&e.lazy_loaded_esm_files, &mut esm)] {
      for f in files.iter() {
        if consumed.contains(f.specifier) {
          continue;
        }
        let code = f.load().expect("reading a lazy extension script");
        writeln!(buf, "  ({:?}, {:?}),", f.specifier, code.as_str()).unwrap();
      }
    }
  }
  js.push_str("];\n");
  esm.push_str("];\n");
  std::fs::write(out.join("residual.rs"), js + &esm).expect("writing residual.rs");
  println!("cargo:rerun-if-changed=js");
  println!("cargo:rerun-if-changed=src/ext");
}
