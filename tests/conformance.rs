//! Web platform behaviour a worker relies on, beside what workerd and the
//! specs do: errors raised in Rust by the deno ext crates reach JS as the
//! class the spec names.

use crate::support::{Fixture, H1};

/// These cases are about behaviour, not CPU: a debug build on a slow day
/// takes more than the default 50 ms for a few crypto operations.
fn engine(f: &Fixture, js: &str) -> edge::Engine {
  f.file("w.js", js);
  f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[limits]\ncpu_ms = 5000\n[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\n",
  )
}

/// Each case's error as `<constructor> <name>` (`DOMException
/// OperationError`), one line per case.
const ERRORS: &str = r#"
const subtle = crypto.subtle;
const cases = {
  "aes-gcm tag": async () => {
    const k = await subtle.generateKey({ name: "AES-GCM", length: 128 }, false, ["decrypt"]);
    await subtle.decrypt({ name: "AES-GCM", iv: new Uint8Array(12) }, k, new Uint8Array(32));
  },
  "spki bytes": () => subtle.importKey("spki", new Uint8Array([1, 2, 3]), { name: "ECDSA", namedCurve: "P-256" }, true, ["verify"]),
  "pkcs8 bytes": () => subtle.importKey("pkcs8", new Uint8Array(10), { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, true, ["sign"]),
  "atob": () => atob("!"),
  "fatal decode": () => new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff])),
};
export default {
  async fetch() {
    const out = [];
    for (const [name, run] of Object.entries(cases)) {
      let got = "no error";
      try { await run(); } catch (e) {
        got = e === undefined ? "undefined" : `${e instanceof DOMException ? "DOMException" : e.constructor.name} ${e.name}`;
      }
      out.push(`${name}: ${got}`);
    }
    return new Response(out.join("\n"));
  },
};
"#;

#[tokio::test]
async fn errors_from_rust_are_the_classes_the_spec_names() {
  let f = Fixture::new();
  let e = engine(&f, ERRORS);
  let got = H1::connect(e.http_addr().unwrap()).await.get("w.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert_eq!(
    got.body,
    "aes-gcm tag: DOMException OperationError\n\
     spki bytes: DOMException DataError\n\
     pkcs8 bytes: DOMException DataError\n\
     atob: DOMException InvalidCharacterError\n\
     fatal decode: TypeError TypeError"
  );
}

/// Every error class the deno crates in Cargo.lock raise by name (`#[class("X")]`,
/// `JsErrorBox::new("X", ..)`, `"DOMExceptionX"`, deno_error's io classes)
/// is registered by the bootstrap (or by deno_core itself): an upgrade that
/// adds one fails here instead of throwing `undefined` in a worker.
#[test]
fn every_error_class_the_deno_crates_raise_is_registered() {
  let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
  let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
  let bootstrap = std::fs::read_to_string(root.join("js-api/js/bootstrap.js")).unwrap();
  let cargo_home = std::env::var_os("CARGO_HOME")
    .map(std::path::PathBuf::from)
    .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
  let registries: Vec<_> = std::fs::read_dir(cargo_home.join("registry/src"))
    .expect("the cargo registry's sources")
    .map(|e| e.unwrap().path())
    .collect();
  let mut classes = std::collections::BTreeSet::new();
  let mut crates = 0;
  let mut lines = lock.lines();
  while let Some(line) = lines.next() {
    let Some(name) = line.strip_prefix("name = \"deno_").and_then(|s| s.strip_suffix('"')) else {
      continue;
    };
    let version = lines
      .next()
      .unwrap()
      .trim_start_matches("version = \"")
      .trim_end_matches('"');
    let dir = format!("deno_{name}-{version}");
    let Some(dir) = registries.iter().map(|r| r.join(&dir)).find(|d| d.is_dir()) else {
      // (Platform crates cargo did not fetch here, e.g. Windows-only.)
      continue;
    };
    crates += 1;
    for file in rust_files(&dir) {
      let text = std::fs::read_to_string(&file).unwrap_or_default();
      for (open, close) in [
        ("#[class(\"", "\")]"),
        ("JsErrorBox::new(\"", "\""),
        ("\"DOMException", "\""),
      ] {
        for (i, _) in text.match_indices(open) {
          let rest = &text[i + open.len()..];
          let Some(end) = rest.find(close) else { continue };
          let name = &rest[..end];
          if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic()) {
            let name = if open.starts_with("\"DOMException") {
              format!("DOMException{name}")
            } else {
              name.to_string()
            };
            classes.insert(name);
          }
        }
      }
      if name == "error" && file.ends_with("lib.rs") {
        for (i, _) in text.match_indices("=> \"") {
          let rest = &text[i + 4..];
          let name = &rest[..rest.find('"').unwrap()];
          if name.starts_with(|c: char| c.is_ascii_uppercase()) && name.chars().all(|c| c.is_ascii_alphabetic()) {
            classes.insert(name.to_string());
          }
        }
      }
    }
  }
  assert!(
    crates >= 5,
    "found the sources of only {crates} deno crates under {}",
    cargo_home.display()
  );
  assert!(
    classes.contains("DOMExceptionOperationError") && classes.contains("NotFound"),
    "{classes:?}"
  );
  // deno_core registers these itself (01_core.js), and V8's own.
  let by_core = [
    "BadResource",
    "Interrupted",
    "NotCapable",
    "Error",
    "TypeError",
    "RangeError",
    "SyntaxError",
    "URIError",
    "ReferenceError",
  ];
  let missing: Vec<_> = classes
    .iter()
    .filter(|c| !by_core.contains(&c.as_str()))
    .filter(|c| !bootstrap.contains(&format!("\"{}\"", c.strip_prefix("DOMException").unwrap_or(c))))
    .collect();
  assert!(
    missing.is_empty(),
    "error classes no builder is registered for (js-api/js/bootstrap.js): {missing:?}"
  );
}

fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
  let mut out = Vec::new();
  let mut dirs = vec![dir.to_path_buf()];
  while let Some(d) = dirs.pop() {
    for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
      let p = e.path();
      if p.is_dir() {
        dirs.push(p);
      } else if p.extension().is_some_and(|x| x == "rs") {
        out.push(p);
      }
    }
  }
  out
}

#[tokio::test]
async fn timing_safe_equal_is_there_as_on_workers() {
  let f = Fixture::new();
  let e = engine(
    &f,
    r#"
export default {
  fetch() {
    const s = crypto.subtle;
    const enc = (t) => new TextEncoder().encode(t);
    const err = (f) => { try { f(); return "no error"; } catch (e) { return e.constructor.name; } };
    const out = [
      s.timingSafeEqual(enc("secret"), enc("secret")),
      s.timingSafeEqual(enc("secret"), enc("secreT")),
      s.timingSafeEqual(enc("ab").buffer, new DataView(enc("xab").buffer, 1)),
      s.timingSafeEqual(new ArrayBuffer(0), new Uint8Array(0)),
      err(() => s.timingSafeEqual(enc("a"), enc("ab"))),
      err(() => s.timingSafeEqual("a", "a")),
      err(() => s.timingSafeEqual.call({}, enc("a"), enc("a"))),
    ];
    return new Response(out.join(" "));
  },
};
"#,
  );
  let got = H1::connect(e.http_addr().unwrap()).await.get("w.test", "/").await;
  assert_eq!(got.body, "true false true true TypeError TypeError TypeError");
}

// `FetchEvent.request` is an own property (workerd's too), so a wrapper
// made with `Object.create(event)` reads it.
#[tokio::test]
async fn a_wrapped_fetch_event_still_has_its_request() {
  let f = Fixture::new();
  let e = engine(
    &f,
    r#"
addEventListener("fetch", (event) => {
  const wrapped = Object.create(event);
  const own = Object.getOwnPropertyDescriptor(event, "request");
  event.respondWith(new Response(`${new URL(wrapped.request.url).pathname} ${own.writable} ${event.request === wrapped.request}`));
});
"#,
  );
  let got = H1::connect(e.http_addr().unwrap()).await.get("w.test", "/p").await;
  assert_eq!(got.body, "/p false true");
}

/// GET `path` on a fresh connection, accepting gzip and br: status,
/// Content-Encoding, raw body.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, Option<String>, Vec<u8>) {
  get_accepting(addr, path, Some("gzip, br")).await
}

async fn get_accepting(addr: std::net::SocketAddr, path: &str, accept: Option<&str>) -> (u16, Option<String>, Vec<u8>) {
  let mut c = H1::connect(addr).await;
  let mut req = hyper::Request::get(path).header("host", "w.test");
  if let Some(a) = accept {
    req = req.header("accept-encoding", a);
  }
  let req = req.body(crate::support::empty()).unwrap();
  let res = c.send(req).await;
  let status = res.status().as_u16();
  let coding = res
    .headers()
    .get("content-encoding")
    .map(|v| v.to_str().unwrap().to_string());
  let body = http_body_util::BodyExt::collect(res.into_body())
    .await
    .unwrap()
    .to_bytes()
    .to_vec();
  (status, coding, body)
}

fn gunzip(b: &[u8]) -> String {
  let mut out = String::new();
  std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(b), &mut out).expect("a gzip body");
  out
}

fn unbrotli(b: &[u8]) -> String {
  let mut out = String::new();
  std::io::Read::read_to_string(&mut brotli::Decompressor::new(b, 4096), &mut out).expect("a brotli body");
  out
}

/// An origin answering every request with `text`, gzipped.
async fn gzip_origin(text: &'static str) -> std::net::SocketAddr {
  let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
  let addr = listener.local_addr().unwrap();
  tokio::spawn(async move {
    loop {
      let Ok((tcp, _)) = listener.accept().await else { return };
      tokio::spawn(async move {
        let svc = hyper::service::service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
          let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
          std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
          Ok::<_, std::convert::Infallible>(
            hyper::Response::builder()
              .header("content-encoding", "gzip")
              .body(http_body_util::Full::new(bytes::Bytes::from(gz.finish().unwrap())))
              .unwrap(),
          )
        });
        let _ = hyper::server::conn::http1::Builder::new()
          .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
          .await;
      });
    }
  });
  addr
}

// A worker's `Content-Encoding: gzip` (or br) over a plain body: the
// server encodes it, as workerd does, for a client that accepts it (else
// it is sent unencoded without the header); `encodeBody: "manual"` and a
// fetch() answer are not encoded twice; no Content-Encoding, nothing done.
#[tokio::test]
async fn content_encoding_set_by_a_worker_is_applied_by_the_server() {
  let origin = gzip_origin("from the origin, gzipped").await;
  let f = Fixture::new();
  f.file(
    "w.js",
    format!(
      r#"
const text = "hello edge ".repeat(2000);
export default {{
  async fetch(req) {{
    const p = new URL(req.url).pathname;
    if (p === "/gzip") return new Response(text, {{ headers: {{ "content-encoding": "gzip" }} }});
    if (p === "/br") return new Response(text, {{ headers: {{ "Content-Encoding": "br" }} }});
    if (p === "/stream") {{
      const enc = new TextEncoder();
      const body = new ReadableStream({{
        async pull(c) {{
          for (let i = 0; i < 50; i++) c.enqueue(enc.encode("chunk " + i + ";"));
          c.close();
        }},
      }});
      return new Response(body, {{ headers: {{ "content-encoding": "gzip" }} }});
    }}
    if (p === "/manual") {{
      const gz = new Response(new Blob([text]).stream().pipeThrough(new CompressionStream("gzip")));
      return new Response(await gz.arrayBuffer(), {{ encodeBody: "manual", headers: {{ "content-encoding": "gzip" }} }});
    }}
    if (p === "/proxy") return fetch("http://{origin}/");
    if (p === "/rewrap") {{
      const r = await fetch("http://{origin}/");
      return new Response(r.body, r);
    }}
    return new Response(text);
  }},
}};
"#
    ),
  );
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\nallow_private_network = true\n",
  );
  let addr = e.http_addr().unwrap();
  let text = "hello edge ".repeat(2000);
  let (status, coding, body) = raw_get(addr, "/gzip").await;
  assert_eq!((status, coding.as_deref()), (200, Some("gzip")));
  let mut c = H1::connect(addr).await;
  let vary = c.get("w.test", "/gzip").await.headers.get("vary").cloned();
  assert_eq!(vary.as_ref().map(|v| v.to_str().unwrap()), Some("accept-encoding"));
  assert!(body.len() < text.len() / 10, "compressed to {} bytes", body.len());
  assert_eq!(gunzip(&body), text);
  let (_, coding, body) = raw_get(addr, "/br").await;
  assert_eq!(coding.as_deref(), Some("br"));
  assert_eq!(unbrotli(&body), text);
  let (_, _, body) = raw_get(addr, "/stream").await;
  let want: String = (0..50).map(|i| format!("chunk {i};")).collect();
  assert_eq!(gunzip(&body), want);
  let (_, coding, body) = raw_get(addr, "/manual").await;
  assert_eq!(coding.as_deref(), Some("gzip"));
  assert_eq!(gunzip(&body), text, "encoded once");
  for path in ["/proxy", "/rewrap"] {
    let (status, coding, body) = raw_get(addr, path).await;
    assert_eq!((status, coding.as_deref()), (200, Some("gzip")), "{path}");
    assert_eq!(gunzip(&body), "from the origin, gzipped", "{path}");
  }
  for accept in [None, Some("identity"), Some("gzip;q=0, br")] {
    let (status, coding, body) = get_accepting(addr, "/gzip", accept).await;
    assert_eq!((status, coding.as_deref()), (200, None), "{accept:?}");
    assert_eq!(body, text.as_bytes(), "{accept:?}");
  }
  let (_, coding, body) = get_accepting(addr, "/proxy", None).await;
  assert_eq!((coding.as_deref(), &body[..]), (None, &b"from the origin, gzipped"[..]));
  let (_, coding, body) = raw_get(addr, "/plain").await;
  assert_eq!((coding, body), (None, text.into_bytes()));
}

// `fetch(request)` passing an incoming POST on sends its Content-Length
// (not chunked), as workerd does, and no `Accept-Language` the client did
// not send (deno_fetch adds `*`); one it sent goes on.
#[tokio::test]
async fn a_passed_on_request_keeps_its_content_length() {
  let origin = crate::support::Upstream::start(None).await;
  let f = Fixture::new();
  f.file(
    "w.js",
    format!(
      r#"export default {{ fetch(req) {{
  const u = new URL(req.url);
  return fetch(new Request("http://{}" + u.pathname, req));
}} }};"#,
      origin.addr
    ),
  );
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\nallow_private_network = true\n",
  );
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let req = hyper::Request::post("/echo-head")
    .header("host", "w.test")
    .header("content-length", "11")
    .body(crate::support::body("hello world"))
    .unwrap();
  let got = crate::support::collect(c.send(req).await).await;
  assert_eq!(got.status, 200, "{}", got.body);
  let heads = origin.heads();
  let head = heads.last().expect("the origin saw the request");
  assert_eq!(
    head.get("content-length").map(|v| v.to_str().unwrap()),
    Some("11"),
    "{head:?}"
  );
  assert!(head.get("transfer-encoding").is_none(), "{head:?}");
  assert!(head.get("accept-language").is_none(), "{head:?}");
  assert!(head.get("edge-fetch-defaulted").is_none(), "{head:?}");
  let req = hyper::Request::get("/lang")
    .header("host", "w.test")
    .header("accept-language", "fr")
    .body(crate::support::empty())
    .unwrap();
  assert_eq!(crate::support::collect(c.send(req).await).await.status, 200);
  let heads = origin.heads();
  let head = heads.last().unwrap();
  assert_eq!(
    head.get("accept-language").map(|v| v.to_str().unwrap()),
    Some("fr"),
    "{head:?}"
  );
}

// The server's compression for one worker is capped at
// server.encode_bytes_per_s: past a second's worth its bodies slow down
// (here 2.5 MiB at 1 MiB/s: at least 1.5 s), and still decode whole.
#[tokio::test]
async fn server_side_compression_is_within_the_workers_budget() {
  let f = Fixture::new();
  f.file(
    "w.js",
    r#"export default { fetch() {
  const piece = new TextEncoder().encode("x".repeat(64 * 1024));
  let left = 40;
  const body = new ReadableStream({ pull(c) { if (left-- > 0) c.enqueue(piece); else c.close(); } });
  return new Response(body, { headers: { "content-encoding": "gzip" } });
} };"#,
  );
  let e = f.start(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[server]\nencode_bytes_per_s = 1048576\n[[worker]]\nname = \"w\"\nmain = \"w.js\"\nroutes = [\"w.test\"]\n",
  );
  let started = std::time::Instant::now();
  let (status, coding, body) = raw_get(e.http_addr().unwrap(), "/").await;
  let took = started.elapsed();
  assert_eq!((status, coding.as_deref()), (200, Some("gzip")));
  assert_eq!(gunzip(&body).len(), 40 * 64 * 1024);
  assert!(
    took >= std::time::Duration::from_millis(1400),
    "2.5 MiB compressed in {took:?}"
  );
}

// structuredClone's `transfer` detaches what it moves (deno_core copies
// and detaches nothing without a store for the moved memory), so the
// WPT cases built on a detached buffer hold: encodeInto() into one writes
// nothing; a byte stream's enqueue() after its BYOB request's buffer was
// detached throws.
#[tokio::test]
async fn a_transferred_buffer_is_detached() {
  let f = Fixture::new();
  let e = engine(
    &f,
    r#"
const detach = (b) => structuredClone(b, { transfer: [b] });
export default { async fetch() {
  const buffer = new ArrayBuffer(10), view = new Uint8Array(buffer);
  view[0] = 7;
  const moved = detach(buffer);
  const into = new TextEncoder().encodeInto("test", view);
  const byob = await new Promise((res) => {
    const stream = new ReadableStream({
      type: "bytes",
      pull(c) {
        detach(c.byobRequest.view.buffer);
        try { c.enqueue(new Uint8Array([1])); res("no error"); } catch (x) { res(x.constructor.name); }
      },
    });
    stream.getReader({ mode: "byob" }).read(new Uint8Array(3)).catch(() => {});
  });
  let twice;
  try { detach(buffer); twice = "no error"; } catch (x) { twice = x.name; }
  return new Response([buffer.detached, buffer.byteLength, view.length, moved.byteLength,
    new Uint8Array(moved)[0], into.read, into.written, byob, twice].join(" "));
} };
"#,
  );
  let got = H1::connect(e.http_addr().unwrap()).await.get("w.test", "/").await;
  assert_eq!(got.body, "true 0 0 10 7 0 0 TypeError DataCloneError");
}
