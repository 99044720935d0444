//! Module loading for workers: a worker imports modules relative to its main
//! file (JS, JSON with `type: "json"`, and `.wasm` as a compiled
//! `WebAssembly.Module`), from a [`ModuleSource`] the embedder provides, with
//! V8's code cache shared by every isolate of the worker and, given a
//! [`CodeCacheStore`], kept across restarts.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use deno_core::error::ModuleLoaderError;
use deno_core::{
  ModuleLoadOptions, ModuleLoadReferrer, ModuleLoadResponse, ModuleLoader, ModuleSourceCode, ModuleSpecifier,
  ModuleType, RequestedModuleType, ResolutionKind, SourceCodeCacheInfo,
};
use deno_error::JsErrorBox;

/// Where a worker's module files come from (a directory, an upload).
pub trait ModuleSource: Send + Sync {
  /// The bytes of the module at `url`, a URL under the worker's root.
  fn read(&self, url: &ModuleSpecifier) -> Result<Arc<[u8]>, String>;
}

/// Where V8's code cache for module texts is kept across restarts (chosen
/// by the embedder: a directory). `key` identifies the text (a hash of its
/// bytes); V8 checks the cache against the source and its own version and
/// flags, and a cache it rejects is made again and put back.
pub trait CodeCacheStore: Send + Sync {
  fn get(&self, key: u64) -> Option<Vec<u8>>;
  fn put(&self, key: u64, data: &[u8]);
}

/// A worker's KV bindings: the name on `env`, the namespace.
pub type KvNamespaces = Vec<(String, Arc<dyn edge_storage::KvStore>)>;
/// A worker's D1 bindings: the name on `env`, the database.
pub type D1Databases = Vec<(String, Arc<dyn edge_storage::SqlDatabase>)>;
/// A worker's R2 bindings: the name on `env`, the bucket.
pub type R2Buckets = Vec<(String, Arc<dyn edge_storage::ObjectStore>)>;
/// A worker's service bindings: the name on `env`, what it calls.
pub type ServiceNames = Vec<(String, crate::ServiceTarget)>;
/// Which Node built-ins a worker may import, from its
/// `compatibility_flags` as on Workers: all that this runtime has
/// (`nodejs_compat`), `node:async_hooks` only (`nodejs_als`), or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeCompat {
  #[default]
  None,
  Als,
  Full,
}

/// The Node built-ins this runtime has (js/node_*.js, in the snapshot).
pub const NODE_BUILTINS: &[&str] = &["async_hooks", "buffer", "events", "path", "process", "util"];

/// [`NODE_BUILTINS`] as they are imported: `node:async_hooks, ...`.
pub fn node_builtins_list() -> String {
  NODE_BUILTINS
    .iter()
    .map(|n| format!("node:{n}"))
    .collect::<Vec<_>>()
    .join(", ")
}

impl NodeCompat {
  /// From a worker's compatibility flags (others are not about Node).
  pub fn from_flags<S: AsRef<str>>(flags: &[S]) -> Self {
    let has = |f: &str| flags.iter().any(|x| x.as_ref() == f);
    if has("nodejs_compat") || has("nodejs_compat_v2") {
      Self::Full
    } else if has("nodejs_als") {
      Self::Als
    } else {
      Self::None
    }
  }

  fn allows(self, name: &str) -> bool {
    match self {
      Self::Full => NODE_BUILTINS.contains(&name),
      Self::Als => name == "async_hooks",
      Self::None => false,
    }
  }
}

/// A worker's queue producers: the name on `env`, the queue.
pub type QueueProducers = Vec<(String, Arc<dyn edge_storage::MessageQueue>)>;

/// A worker's code: where its modules live and which one is the entry.
/// Shared by all isolates of the worker, on every thread.
pub struct WorkerCode {
  /// The worker's name, used in logs.
  pub name: Arc<str>,
  /// URL of the folder imports must stay under, ending in `/`.
  pub root: ModuleSpecifier,
  /// URL of the main module.
  pub main: ModuleSpecifier,
  pub source: Box<dyn ModuleSource>,
  /// The worker's `env` (module syntax) or globals (service-worker syntax).
  pub vars: Vec<(String, String)>,
  /// Its KV bindings: name on `env`, namespace.
  pub kv: KvNamespaces,
  /// Its D1 bindings: name on `env`, database.
  pub d1: D1Databases,
  /// Its R2 bindings: name on `env`, bucket.
  pub r2: R2Buckets,
  /// Its service bindings: name on `env`, the worker called.
  pub services: ServiceNames,
  /// Its queue producers: name on `env`, queue.
  pub queues: QueueProducers,
  /// Whether it consumes a queue (then its default export needs `queue()`).
  pub queue_consumer: bool,
  /// The Node built-ins it may import (`compatibility_flags`).
  pub node: NodeCompat,
  /// Module texts read so far and the V8 code cache made for them.
  cache: Mutex<HashMap<ModuleSpecifier, CachedModule>>,
  store: Option<Arc<dyn CodeCacheStore>>,
}

#[derive(Clone)]
struct CachedModule {
  /// Where it was found: the URL asked for, or the file an import without
  /// an extension (or of `x.js` for `x.ts`) meant.
  found: ModuleSpecifier,
  bytes: Arc<[u8]>,
  text: Option<Arc<str>>,
  hash: u64,
  code_cache: Option<Arc<[u8]>>,
}

impl WorkerCode {
  pub fn new(
    name: impl Into<Arc<str>>,
    root: ModuleSpecifier,
    main: ModuleSpecifier,
    source: Box<dyn ModuleSource>,
    vars: Vec<(String, String)>,
  ) -> Self {
    Self {
      name: name.into(),
      root,
      main,
      source,
      vars,
      kv: Vec::new(),
      d1: Vec::new(),
      r2: Vec::new(),
      services: Vec::new(),
      queues: Vec::new(),
      queue_consumer: false,
      node: NodeCompat::None,
      cache: Mutex::new(HashMap::new()),
      store: None,
    }
  }

  /// The same code with these KV bindings (name on `env`, namespace).
  pub fn with_kv(mut self, kv: KvNamespaces) -> Self {
    self.kv = kv;
    self
  }

  /// The same code with these D1 bindings (name on `env`, database).
  pub fn with_d1(mut self, d1: D1Databases) -> Self {
    self.d1 = d1;
    self
  }

  /// The same code with these R2 bindings (name on `env`, bucket).
  pub fn with_r2(mut self, r2: R2Buckets) -> Self {
    self.r2 = r2;
    self
  }

  /// The same code with these service bindings (name on `env`, worker).
  pub fn with_services(mut self, services: ServiceNames) -> Self {
    self.services = services;
    self
  }

  /// The same code with these queue producers (name on `env`, queue).
  pub fn with_queues(mut self, queues: QueueProducers) -> Self {
    self.queues = queues;
    self
  }

  /// The same code with these Node built-ins importable.
  pub fn with_node(mut self, node: NodeCompat) -> Self {
    self.node = node;
    self
  }

  /// Keeps the code cache of this worker's modules in `store` too.
  pub fn with_code_cache_store(mut self, store: Arc<dyn CodeCacheStore>) -> Self {
    self.store = Some(store);
    self
  }

  fn module(&self, url: &ModuleSpecifier) -> Result<CachedModule, String> {
    if let Some(m) = self.cache.lock().expect("module cache").get(url) {
      return Ok(m.clone());
    }
    let (found, bytes) = self.find(url)?;
    let path = found.path();
    let text = if path.ends_with(".wasm") {
      None
    } else {
      let s = std::str::from_utf8(&bytes).map_err(|_| format!("{found} is not UTF-8 text"))?;
      // TypeScript is compiled once per worker version, here.
      let s = match edge_ts::is_typescript(path) {
        true => Arc::<str>::from(edge_ts::compile(found.as_str(), s, edge_ts::COMPILE_TIMEOUT)?),
        false => Arc::<str>::from(s),
      };
      Some(s)
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match &text {
      Some(t) => t.hash(&mut h),
      None => bytes.hash(&mut h),
    }
    let hash = h.finish();
    let code_cache = match (&text, &self.store) {
      (Some(_), Some(store)) => store.get(hash).map(Arc::from),
      _ => None,
    };
    let m = CachedModule {
      found,
      bytes,
      text,
      hash,
      code_cache,
    };
    let mut cache = self.cache.lock().expect("module cache");
    if m.found != *url {
      // V8 names the module by where it was found (its code cache too).
      cache.insert(m.found.clone(), m.clone());
    }
    cache.insert(url.clone(), m.clone());
    Ok(m)
  }

  /// The file `url` names, as a bundler resolves it: the file itself, else
  /// for an import without an extension `x.ts`, `x.js`, `x.mjs`,
  /// `x/index.ts`, `x/index.js`, and for `x.js` (`x.mjs`) the TypeScript
  /// `x.ts` (`x.mts`) it is compiled from, as TypeScript's own imports say.
  fn find(&self, url: &ModuleSpecifier) -> Result<(ModuleSpecifier, Arc<[u8]>), String> {
    let first = match self.source.read(url) {
      Ok(bytes) => return Ok((url.clone(), bytes)),
      Err(e) => e,
    };
    let path = url.path();
    let last = path.rsplit('/').next().unwrap_or("");
    let candidates: Vec<String> = if let Some(stem) = path.strip_suffix(".js") {
      vec![format!("{stem}.ts")]
    } else if let Some(stem) = path.strip_suffix(".mjs") {
      vec![format!("{stem}.mts")]
    } else if !last.contains('.') && !last.is_empty() {
      [".ts", ".js", ".mjs", "/index.ts", "/index.js"]
        .iter()
        .map(|e| format!("{path}{e}"))
        .collect()
    } else {
      Vec::new()
    };
    for c in candidates {
      let mut alt = url.clone();
      alt.set_path(&c);
      if !alt.as_str().starts_with(self.root.as_str()) {
        continue;
      }
      if let Ok(bytes) = self.source.read(&alt) {
        return Ok((alt, bytes));
      }
    }
    Err(first)
  }

  fn store_code_cache(&self, url: &ModuleSpecifier, hash: u64, data: &[u8]) {
    if let Some(m) = self.cache.lock().expect("module cache").get_mut(url) {
      if m.hash == hash {
        m.code_cache = Some(Arc::from(data));
      }
    }
    if let Some(store) = &self.store {
      store.put(hash, data);
    }
  }
}

/// The loader of one isolate; it serves whichever worker the isolate is
/// bound to (none while it waits blank in the supply).
#[derive(Default)]
pub(crate) struct WorkerLoader {
  pub(crate) code: RefCell<Option<Arc<WorkerCode>>>,
}

impl WorkerLoader {
  fn code(&self) -> Result<Arc<WorkerCode>, ModuleLoaderError> {
    self
      .code
      .borrow()
      .clone()
      .ok_or_else(|| JsErrorBox::generic("no worker is bound to this isolate"))
  }
}

impl ModuleLoader for WorkerLoader {
  fn resolve(
    &self,
    specifier: &str,
    referrer: &str,
    _kind: ResolutionKind,
  ) -> Result<ModuleSpecifier, ModuleLoaderError> {
    let code = self.code()?;
    // Built into the snapshot (js/workers.js, js/node_*.js): found there,
    // never loaded.
    if specifier == WORKERS_MODULE {
      return Ok(ModuleSpecifier::parse(WORKERS_MODULE).expect("a URL"));
    }
    // `node:events`, and `events` too (as nodejs_compat_v2 allows).
    let node_name = specifier.strip_prefix("node:").unwrap_or(specifier);
    if code.node.allows(node_name) {
      return Ok(ModuleSpecifier::parse(&format!("node:{node_name}")).expect("a URL"));
    }
    if specifier.starts_with("node:") {
      return Err(JsErrorBox::type_error(refused_node(node_name, referrer, code.node)));
    }
    let is_relative = specifier.starts_with("./") || specifier.starts_with("../") || specifier.starts_with('/');
    let url = if is_relative {
      let base = ModuleSpecifier::parse(referrer).unwrap_or_else(|_| code.main.clone());
      base
        .join(specifier)
        .map_err(|e| JsErrorBox::type_error(format!("bad import \"{specifier}\": {e}")))?
    } else {
      match ModuleSpecifier::parse(specifier) {
        Ok(u) if u.scheme() == code.root.scheme() => u,
        _ => return Err(JsErrorBox::type_error(refused_import(specifier, referrer))),
      }
    };
    if !url.as_str().starts_with(code.root.as_str()) {
      return Err(JsErrorBox::type_error(format!(
        "cannot import \"{specifier}\" from {referrer}: it is outside the worker's folder"
      )));
    }
    Ok(url)
  }

  fn load(
    &self,
    url: &ModuleSpecifier,
    _referrer: Option<&ModuleLoadReferrer>,
    options: ModuleLoadOptions,
  ) -> ModuleLoadResponse {
    ModuleLoadResponse::Sync(self.load_sync(url, &options.requested_module_type))
  }

  /// A bundle's `//# sourceMappingURL=index.js.map`: read from the
  /// worker's own files (inline maps deno_core decodes itself), so stack
  /// traces name the sources the bundle was built from.
  fn load_external_source_map(&self, source_map_url: &str) -> Option<Cow<'_, [u8]>> {
    let code = self.code().ok()?;
    let url = ModuleSpecifier::parse(source_map_url).ok()?;
    if !url.as_str().starts_with(code.root.as_str()) {
      return None;
    }
    code.source.read(&url).ok().map(|b| Cow::Owned(b.to_vec()))
  }

  /// A source a map names is named in stack traces whether or not it was
  /// deployed with the bundle (it is what the author wrote).
  fn source_map_source_exists(&self, _source_url: &str) -> Option<bool> {
    Some(true)
  }

  fn code_cache_ready(
    &self,
    url: ModuleSpecifier,
    hash: u64,
    code_cache: &[u8],
  ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    if let Ok(code) = self.code() {
      code.store_code_cache(&url, hash, code_cache);
    }
    Box::pin(std::future::ready(()))
  }
}

impl WorkerLoader {
  fn load_sync(
    &self,
    url: &ModuleSpecifier,
    requested: &RequestedModuleType,
  ) -> Result<deno_core::ModuleSource, ModuleLoaderError> {
    let code = self.code()?;
    let m = code
      .module(url)
      .map_err(|e| JsErrorBox::type_error(format!("cannot load {url}: {e}")))?;
    let path = url.path();
    let is_json = path.ends_with(".json");
    if *requested == RequestedModuleType::Json && !is_json {
      return Err(JsErrorBox::type_error(format!(
        "{url} was imported with type \"json\" but is not a .json file"
      )));
    }
    if is_json && *requested != RequestedModuleType::Json {
      return Err(JsErrorBox::type_error(format!(
        "import {url} with {{ type: \"json\" }} to load it as JSON"
      )));
    }
    let (module_type, source_code) = match (&m.text, is_json) {
      // A `.wasm` import gives a compiled WebAssembly.Module (as on
      // Workers): a JS module compiles the bytes, loaded as a bytes module.
      (None, _) if *requested == RequestedModuleType::Bytes => (
        ModuleType::Bytes,
        ModuleSourceCode::Bytes(deno_core::ModuleCodeBytes::Boxed(m.bytes.to_vec().into_boxed_slice())),
      ),
      (None, _) => {
        let name = url
          .path_segments()
          .and_then(|mut s| s.next_back())
          .unwrap_or("module.wasm");
        let name = serde_json::to_string(&format!("./{name}")).unwrap_or_default();
        let js = format!(
          "import bytes from {name} with {{ type: \"bytes\" }};\nexport default new WebAssembly.Module(bytes);\n"
        );
        (ModuleType::JavaScript, ModuleSourceCode::String(js.into()))
      }
      (Some(text), true) => (ModuleType::Json, ModuleSourceCode::String(text.clone().into())),
      (Some(text), false) => (ModuleType::JavaScript, ModuleSourceCode::String(text.clone().into())),
    };
    let cache = (module_type == ModuleType::JavaScript && m.text.is_some()).then(|| SourceCodeCacheInfo {
      hash: m.hash,
      data: m.code_cache.as_ref().map(|c| Cow::Owned(c.to_vec())),
    });
    Ok(deno_core::ModuleSource::new_with_redirect(
      module_type,
      source_code,
      url,
      &m.found,
      cache,
    ))
  }
}

/// The Workers built-in module this runtime has (WorkerEntrypoint, env,
/// waitUntil; js/workers.js).
const WORKERS_MODULE: &str = "cloudflare:workers";

/// Why the Node built-in `name` cannot be imported under `node`.
fn refused_node(name: &str, referrer: &str, node: NodeCompat) -> String {
  if NODE_BUILTINS.contains(&name) {
    format!(
      "cannot import \"node:{name}\" from {referrer}: Node.js built-ins need compatibility_flags = [\"nodejs_compat\"] in the worker's config{}",
      if name == "async_hooks" { " (or \"nodejs_als\")" } else { "" }
    )
  } else {
    format!(
      "cannot import \"node:{name}\" from {referrer}: the Node.js built-in \"{name}\" is not available here yet (there are {}{}); bundle a polyfill meanwhile",
      node_builtins_list(),
      if node == NodeCompat::Full { "" } else { ", with compatibility_flags = [\"nodejs_compat\"]" }
    )
  }
}

/// Why `specifier` cannot be imported: a built-in this runtime does not
/// have yet, a package (bundle it), or a URL.
fn refused_import(specifier: &str, referrer: &str) -> String {
  let (scheme, _) = specifier.split_once(':').unwrap_or(("", specifier));
  match scheme {
    "cloudflare" => format!(
      "cannot import \"{specifier}\" from {referrer}: the Workers built-in module \"{specifier}\" is not available here (\"cloudflare:workers\" is)"
    ),
    "http" | "https" | "data" | "jsr" | "npm" => format!(
      "cannot import \"{specifier}\" from {referrer}: workers import only their own files; bundle remote and package imports into the worker (esbuild, wrangler's bundler)"
    ),
    _ if !specifier.starts_with('/') && !specifier.contains(':') => format!(
      "cannot import \"{specifier}\" from {referrer}: \"{specifier}\" is a package, not a file; bundle the worker with its dependencies (esbuild) or import a file (\"./x.js\")"
    ),
    _ => format!(
      "cannot import \"{specifier}\" from {referrer}: workers import only files next to their main module (\"./x.js\")"
    ),
  }
}
