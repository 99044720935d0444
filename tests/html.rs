//! HTMLRewriter: every handler kind rewrites as Workers does (sync and
//! async handlers, end tags, the document's doctype, comments and end), a
//! bad selector throws at `on()` (and so does one nested or chained past
//! the bounds that keep the parser's recursion on its stack), a throwing handler errors the body and
//! the worker answers the next request, a body four times the isolate's
//! memory streams through at the reader's pace, and rewriters a worker
//! makes and never reads end at its memory limit.

use http_body_util::BodyExt;

use crate::support::{empty, examples_dir, resident_memory_lock, rss_bytes, Fixture, H1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WORKER: &str = r#"
const PAGE = `<!DOCTYPE html><html><head><title>Hi</title></head><body><!-- note -->` +
  `<a href="http://x.test/a" id=one>one</a><p class="k">text <b>bold</b></p><img src="i.png"><br/></body></html>`;

function big(pieces) {
  // Each 64 KiB piece: a paragraph and one link.
  const filler = "<p>" + "x".repeat(65536 - 25) + "</p>";
  const bytes = new TextEncoder().encode(filler + "<a href='/x'>l</a>");
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent++ === pieces) c.close();
      else c.enqueue(bytes.slice());
    },
  }, { highWaterMark: 0 });
}

export default {
  async fetch(req) {
    const u = new URL(req.url);
    const seen = [];
    if (u.pathname === "/all") {
      return new HTMLRewriter()
        .on("a[href]", {
          element(el) {
            seen.push(`${el.tagName} ${el.getAttribute("HREF")} ${el.hasAttribute("id")} ${el.namespaceURI}`);
            el.setAttribute("href", el.getAttribute("href").replace("http:", "https:"));
            el.removeAttribute("id");
            seen.push([...el.attributes].map((a) => a.join("=")).join(","));
            el.onEndTag((end) => {
              seen.push("end " + end.name);
              end.after("!");
            });
          },
        })
        .on("p.k", {
          async element(el) {
            await new Promise((r) => setTimeout(r, 5));
            el.prepend("<i>pre</i>", { html: true });
            el.tagName = "section";
          },
          text(t) {
            if (t.text !== "") seen.push(`text ${JSON.stringify(t.text)} ${t.lastInTextNode}`);
            if (t.text.includes("text")) t.replace("<TEXT>");
          },
        })
        .on("img", { element(el) { seen.push(`img ${el.canHaveContent}`); el.remove(); } })
        .on("br", { element(el) { seen.push(`br ${el.selfClosing}`); el.replace("<hr>", { html: true }); } })
        .onDocument({
          doctype(d) { seen.push(`doctype ${d.name} ${d.publicId}`); },
          comments(c) { seen.push("comment" + c.text); c.text = " changed "; },
          end(e) { e.append(`<!-- ${seen.join(" | ")} -->`, { html: true }); },
        })
        .transform(new Response(PAGE, { headers: { "content-type": "text/html", "content-length": "999" } }));
    }
    if (u.pathname === "/selector") {
      try {
        new HTMLRewriter().on("a[", { element() {} });
        return new Response("no throw");
      } catch (e) {
        return new Response(`${e.name}: ${e.message}`);
      }
    }
    if (u.pathname === "/stale") {
      let kept;
      const out = await new HTMLRewriter()
        .on("a", { element(el) { kept = el; } })
        .transform(new Response(PAGE)).text();
      try {
        kept.setAttribute("x", "y");
        return new Response("no throw");
      } catch (e) {
        return new Response(`${e.name}: ${e.message.slice(0, 38)} ${out.length}`);
      }
    }
    if (u.pathname === "/doctype") {
      let refused = "";
      const out = await new HTMLRewriter()
        .onDocument({ doctype(d) { d.remove(); seen.push(d.removed); } })
        .on("title", {
          element(el) {
            try { el.append(new ReadableStream()); } catch (e) { refused = e.name; }
          },
        })
        .transform(new Response(PAGE)).text();
      return new Response(`${out.slice(0, 19)} ${seen} ${refused}`);
    }
    if (u.pathname === "/bounds") {
      // Nesting and chains at the bounds work; one more is refused (past
      // them the parser's recursion could overflow a stack).
      const tries = {
        parens16: ":not(".repeat(16) + "b" + ")".repeat(16),
        parens17: ":not(".repeat(17) + "b" + ")".repeat(17),
        chain64: "a ".repeat(33) + "a > ".repeat(31) + "b",
        chain65: "a ".repeat(34) + "a > ".repeat(31) + "b",
        long: "a" + ".c".repeat(2048),
      };
      const got = [];
      for (const [name, sel] of Object.entries(tries)) {
        try {
          const out = await new HTMLRewriter()
            .on(sel, { element(e) { e.setAttribute("hit", ""); } })
            .transform(new Response("<a>".repeat(70) + "<b></b>")).text();
          got.push(`${name} ${out.split("hit").length - 1}`);
        } catch (e) {
          got.push(`${name} ${e.name}: ${e.message}`);
        }
      }
      let many = new HTMLRewriter().on("i, b", { element() {} });
      for (let i = 0; i < 254; i++) many = many.on("a", { element() {} });
      many.transform(new Response("<a>"));
      try {
        many.on("p", { element() {} }).transform(new Response("<a>"));
      } catch (e) {
        got.push(`${e.name}: ${e.message}`);
      }
      return new Response(got.join("\n"));
    }
    if (u.pathname === "/throws") {
      return new HTMLRewriter()
        .on("p", { element() { throw new Error("handler broke"); } })
        .transform(new Response(PAGE));
    }
    if (u.pathname === "/big") {
      const pieces = Number(u.searchParams.get("pieces"));
      let links = 0;
      return new HTMLRewriter()
        .on("a[href]", { element(el) { links++; el.setAttribute("href", "/y"); } })
        .onDocument({ end(e) { e.append(`<!-- links ${links} -->`, { html: true }); } })
        .transform(new Response(big(pieces), { headers: { "content-type": "text/html" } }));
    }
    if (u.pathname === "/hoard") {
      // Rewriters made and kept, never read: each is charged to the budget.
      globalThis.kept = [];
      for (let i = 0; i < 100000; i++) {
        globalThis.kept.push(new HTMLRewriter().on("a", { element() {} }).transform(new Response("<a>")));
      }
      return new Response("kept them all");
    }
    return new Response("ok");
  },
};
"#;

fn engine(f: &Fixture) -> edge::Engine {
  f.file("html.js", WORKER);
  f.start(
    r#"
[listen]
http = "127.0.0.1:0"
[runtime]
threads = 1
[limits]
wall_ms = 60000
[[worker]]
name = "html"
main = "html.js"
routes = ["html.test"]
[worker.limits]
cpu_ms = 30000
memory_mb = 32
"#,
  )
}

#[tokio::test]
async fn every_handler_kind_rewrites_as_on_workers() {
  let f = Fixture::new();
  let e = engine(&f);
  let mut c = H1::connect(e.http_addr().unwrap()).await;
  let got = c.get("html.test", "/all").await;
  assert_eq!(got.status, 200, "{}", got.body);
  assert!(got.headers.get("content-length").is_none(), "{:?}", got.headers);
  assert_eq!(got.headers["content-type"], "text/html");
  let seen = [
    "doctype html null",
    "comment note ",
    "a http://x.test/a true http://www.w3.org/1999/xhtml",
    "href=https://x.test/a",
    "end a",
    "text \"text \" false",
    "text \"bold\" false",
    "img false",
    "br true",
  ]
  .join(" | ");
  assert_eq!(
    got.body,
    format!(
      "<!DOCTYPE html><html><head><title>Hi</title></head><body><!-- changed -->\
       <a href=\"https://x.test/a\">one</a>!<section class=\"k\"><i>pre</i>&lt;TEXT&gt;<b>bold</b></section>\
       <hr></body></html><!-- {seen} -->"
    )
  );

  let got = c.get("html.test", "/selector").await;
  assert!(
    got.body.starts_with("TypeError: Invalid selector \"a[\""),
    "{}",
    got.body
  );
  let got = c.get("html.test", "/doctype").await;
  assert_eq!(got.body, "<html><head><title> true TypeError");
  let got = c.get("html.test", "/bounds").await;
  assert_eq!(
    got.body,
    "parens16 1\n\
     parens17 TypeError: Invalid selector: more than 16 parentheses\n\
     chain64 1\n\
     chain65 TypeError: Invalid selector: more than 64 combinators\n\
     long TypeError: Invalid selector: 4097 bytes, more than the 4096 taken\n\
     TypeError: HTMLRewriter: 257 selectors, more than the 256 taken"
  );
  let got = c.get("html.test", "/stale").await;
  assert_eq!(
    got.body, "TypeError: This content token is no longer valid. 179",
    "{}",
    got.body
  );
}

#[tokio::test]
async fn a_throwing_handler_errors_the_body_and_the_worker_answers_on() {
  let f = Fixture::new();
  let e = engine(&f);
  let addr = e.http_addr().unwrap();
  // The error comes before hyper flushed the head, so the client sees the
  // connection end without a response (never a body that looks whole).
  let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
  stream
    .write_all(b"GET /throws HTTP/1.1\r\nhost: html.test\r\n\r\n")
    .await
    .unwrap();
  let mut got = Vec::new();
  let _ = stream.read_to_end(&mut got).await;
  let got = String::from_utf8_lossy(&got);
  assert!(!got.contains("</html>"), "a failed rewrite must not look whole: {got}");
  let got = H1::connect(addr).await.get("html.test", "/").await;
  assert_eq!((got.status, got.body.as_str()), (200, "ok"));
}

/// Counts `needle` in a body read frame by frame (never held whole): the
/// body's length and the matches.
async fn count_in(res: hyper::Response<hyper::body::Incoming>, needle: &[u8]) -> (usize, usize) {
  let mut b = res.into_body();
  let (mut total, mut found) = (0, 0);
  // The last bytes of what came before, too few to hold a whole match.
  let mut carry: Vec<u8> = Vec::new();
  while let Some(frame) = b.frame().await {
    let frame = frame.expect("body frame");
    let Some(data) = frame.data_ref() else { continue };
    total += data.len();
    carry.extend_from_slice(data);
    found += carry.windows(needle.len()).filter(|w| *w == needle).count();
    let keep = carry.len().min(needle.len() - 1);
    carry.drain(..carry.len() - keep);
  }
  (total, found)
}

#[tokio::test]
async fn a_body_four_times_the_memory_limit_streams_through() {
  let _lock = resident_memory_lock().await;
  let f = Fixture::new();
  let e = engine(&f);
  let addr = e.http_addr().unwrap();
  let before = rss_bytes();
  // 2048 pieces of 64 KiB: 128 MiB through a worker with 32 MB.
  let pieces = 2048;
  let req = hyper::Request::get(format!("/big?pieces={pieces}"))
    .header("host", "html.test")
    .body(empty())
    .unwrap();
  let res = H1::connect(addr).await.send(req).await;
  assert_eq!(res.status(), 200);
  let (total, found) = count_in(res, b"<a href=\"/y\">l</a>").await;
  let trailer = format!("<!-- links {pieces} -->");
  assert_eq!(found, pieces);
  assert_eq!(total, pieces * 65536 + trailer.len());
  let grew = rss_bytes().saturating_sub(before);
  assert!(grew < 96 << 20, "resident memory grew {} MiB", grew >> 20);
}

#[tokio::test]
async fn rewriters_made_and_never_read_end_at_the_memory_limit() {
  let _lock = resident_memory_lock().await;
  let f = Fixture::new();
  let e = engine(&f);
  let addr = e.http_addr().unwrap();
  let got = H1::connect(addr).await.get("html.test", "/hoard").await;
  assert_eq!((got.status, got.limit()), (503, Some("memory")), "{}", got.body);
  let got = H1::connect(addr).await.get("html.test", "/").await;
  assert_eq!((got.status, got.body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn the_bundled_rewrite_example_rewrites_its_page() {
  let f = Fixture::new();
  let e = f.start(&format!(
    "[listen]\nhttp = \"127.0.0.1:0\"\n[[worker]]\nname = \"rewrite\"\nmain = \"{}\"\nroutes = [\"r.test\"]\n",
    examples_dir().join("rewrite/index.js").display()
  ));
  let got = crate::support::get(e.http_addr().unwrap(), "r.test", "/").await;
  assert_eq!(got.status, 200, "{}", got.body);
  let csp = got.headers["content-security-policy"].to_str().unwrap();
  let nonce = csp
    .strip_prefix("script-src 'nonce-")
    .and_then(|n| n.strip_suffix('\''))
    .expect(csp);
  assert_eq!(nonce.len(), 32, "{csp}");
  assert_eq!(
    got.body,
    format!(
      "<!DOCTYPE html>\n<html><head><title>Shop</title><script src=\"/app.js\" nonce=\"{nonce}\"></script></head>\n\
       <body><p class=\"banner\">Served at the edge</p><h1>Shop</h1>\n\
       <a href=\"https://shop.example/tea\">Tea</a> <a href=\"/cakes\">Cakes</a>\n\
       </body></html>\n<!-- 2 links -->\n"
    )
  );
}
