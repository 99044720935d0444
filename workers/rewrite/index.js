// HTMLRewriter: proxies a page (env.ORIGIN, or a built-in page when unset)
// and rewrites it as it streams: http links become https, scripts get the
// response's CSP nonce, a banner goes first in <body>, and the document
// ends with a count of the links it saw.
const PAGE = `<!DOCTYPE html>
<html><head><title>Shop</title><script src="/app.js"></script></head>
<body><h1>Shop</h1>
<a href="http://shop.example/tea">Tea</a> <a href="/cakes">Cakes</a>
</body></html>
`;

export default {
  async fetch(request, env) {
    const upstream = env.ORIGIN
      ? await fetch(new URL(new URL(request.url).pathname, env.ORIGIN))
      : new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } });
    if (!(upstream.headers.get("content-type") || "").startsWith("text/html")) return upstream;

    const nonce = crypto.randomUUID().replaceAll("-", "");
    let links = 0;
    const res = new HTMLRewriter()
      .on("a[href]", {
        element(a) {
          links++;
          const href = a.getAttribute("href");
          if (href.startsWith("http://")) a.setAttribute("href", "https://" + href.slice(7));
        },
      })
      .on("script", { element(s) { s.setAttribute("nonce", nonce); } })
      .on("body", { element(b) { b.prepend(`<p class="banner">Served at the edge</p>`, { html: true }); } })
      .onDocument({ end(end) { end.append(`<!-- ${links} links -->\n`, { html: true }); } })
      .transform(upstream);
    const out = new Response(res.body, res);
    out.headers.set("content-security-policy", `script-src 'nonce-${nonce}'`);
    return out;
  },
};
