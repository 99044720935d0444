//! `edge init`: a new worker project, as `wrangler init` makes one: a
//! `wrangler.toml`, a TypeScript module and a `.gitignore`, ready for
//! `edge dev`, `edge check` and `edge deploy`. Writes nothing over an
//! existing file.

use std::path::Path;

use anyhow::{bail, Context};

const INDEX: &str = r#"// A worker: `edge dev .` serves it on http://127.0.0.1:8787,
// `edge check .` loads it as a deploy would, `edge deploy . --admin URL`
// uploads it to a node.
interface Env {
  GREETING: string;
}

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/json") {
      return Response.json({ greeting: env.GREETING, path: url.pathname });
    }
    return new Response(`${env.GREETING} from ${url.hostname}\n`);
  },
};
"#;

const GITIGNORE: &str = ".edge-state/\n.dev.vars\nnode_modules/\n";

/// Makes the project in `dir` for a worker named `name` (default: the
/// folder's name).
pub fn run(dir: &Path, name: Option<&str>) -> anyhow::Result<()> {
  // The folder may not exist yet: its name is the path's last part.
  let abs = std::env::current_dir()
    .map(|c| c.join(dir))
    .unwrap_or_else(|_| dir.to_path_buf());
  let folder = abs
    .components()
    .filter_map(|c| match c {
      std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
      std::path::Component::ParentDir => None,
      _ => None,
    })
    .next_back();
  let name = match name {
    Some(n) => n.to_string(),
    None => folder
      .unwrap_or_else(|| "worker".into())
      .chars()
      .map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
          c.to_ascii_lowercase()
        } else {
          '-'
        }
      })
      .collect(),
  };
  edge_core::names::check_worker_name(&name).map_err(|m| anyhow::anyhow!("worker name {name:?}: {m}"))?;
  let wrangler = format!(
    "name = \"{name}\"\nmain = \"src/index.ts\"\ncompatibility_date = \"2025-01-01\"\n\n[vars]\nGREETING = \"Hello\"\n"
  );
  let files = [
    ("wrangler.toml", wrangler.as_str()),
    ("src/index.ts", INDEX),
    (".gitignore", GITIGNORE),
  ];
  for (rel, _) in &files {
    if dir.join(rel).exists() {
      bail!(
        "{} exists: edge init writes a new project only",
        dir.join(rel).display()
      );
    }
  }
  for (rel, text) in &files {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
      std::fs::create_dir_all(parent).with_context(|| format!("{}", parent.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("{}", path.display()))?;
    println!("wrote {}", path.display());
  }
  println!("next: edge dev {}", dir.display());
  Ok(())
}
