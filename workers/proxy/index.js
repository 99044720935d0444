// Subrequests: fetches env.UPSTREAM (plus the request's path) and passes
// the answer on, with a header saying it went through this worker.
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const target = new URL(url.pathname + url.search, env.UPSTREAM);
    try {
      const upstream = await fetch(target, { method: request.method, headers: { "x-via": "edge" } });
      const res = new Response(upstream.body, upstream);
      res.headers.set("x-proxied-by", "edge");
      return res;
    } catch (err) {
      return new Response(`${err.name}: ${err.message}\n`, { status: 502 });
    }
  },
};
