// The HTMLRewriter benchmark's worker (benches/html.sh): the same file on
// edge and workerd. `GET /?mib=N&mode=plain|rewrite` answers N MiB of a
// page made of one 4 KiB block (links, paragraphs, an image, a comment)
// repeated; `rewrite` passes it through an HTMLRewriter that rewrites
// every link, reads every paragraph's text, drops every image's
// attribute and every comment. The script times whole downloads from the
// client; rewrite less plain is the rewriter's cost.
const row = (i) =>
  `<div class="item"><a href="http://shop.example/p/${i}">Product ${i}</a>` +
  `<p>Some text about product ${i}, with <b>bold</b> words &amp; an entity.</p>` +
  `<img src="/i/${i}.png" loading="lazy"><!-- row ${i} --></div>\n`;
let block = "";
for (let i = 0; block.length < 4096; i++) block += row(i);
const BLOCK = new TextEncoder().encode(block.slice(0, 4096));
const PIECE = new Uint8Array(64 * 1024);
for (let o = 0; o < PIECE.length; o += BLOCK.length) PIECE.set(BLOCK.subarray(0, Math.min(BLOCK.length, PIECE.length - o)), o);

function page(mib) {
  let left = mib * 16;
  return new ReadableStream({
    pull(c) {
      if (left-- <= 0) c.close();
      else c.enqueue(PIECE.slice());
    },
  }, { highWaterMark: 0 });
}

export default {
  async fetch(request) {
    const u = new URL(request.url);
    const mib = Number(u.searchParams.get("mib") || 1);
    const res = new Response(page(mib), { headers: { "content-type": "text/html" } });
    if (u.searchParams.get("mode") !== "rewrite") return res;
    let chars = 0;
    return new HTMLRewriter()
      .on("a[href]", { element(a) { a.setAttribute("href", a.getAttribute("href").replace("http:", "https:")); } })
      .on("p", { text(t) { chars += t.text.length; } })
      .on("img", { element(i) { i.removeAttribute("loading"); } })
      .onDocument({ comments(c) { c.remove(); } })
      .transform(res);
  },
};
