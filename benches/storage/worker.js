// The storage benchmark's worker, the same file on edge and under
// `wrangler dev` (benches/storage.sh): each op runs n times in one request,
// one after another, as a worker awaiting its store does. KV, the Cache
// API, R2 and a service binding (to itself).
const VALUE = "v".repeat(100);
const KEYS = 10000;

export default {
  async fetch(req, env) {
    const u = new URL(req.url);
    const op = u.searchParams.get("op");
    const n = Number(u.searchParams.get("n") ?? 1);
    switch (op) {
      case "direct":
        return new Response(VALUE);
      case "seed": {
        const from = Number(u.searchParams.get("from") ?? 0);
        for (let i = from; i < from + n; i++) await env.KV.put("k" + i, VALUE);
        await caches.default.put("https://bench.test/hit", new Response(VALUE, { headers: { "cache-control": "max-age=3600" } }));
        await env.R2.put("o0", VALUE);
        return new Response("seeded");
      }
      case "kv-get-hot":
        for (let i = 0; i < n; i++) if ((await env.KV.get("k0")) !== VALUE) throw new Error("wrong value");
        break;
      case "kv-get-cold":
        for (let i = 0; i < n; i++) await env.KV.get("k" + Math.floor(Math.random() * KEYS));
        break;
      case "kv-get-miss":
        for (let i = 0; i < n; i++) await env.KV.get("missing" + i);
        break;
      case "kv-put":
        for (let i = 0; i < n; i++) await env.KV.put("p" + (i % 100), VALUE);
        break;
      case "cache-hit":
        for (let i = 0; i < n; i++) {
          const r = await caches.default.match("https://bench.test/hit");
          if (!r) throw new Error("cache miss");
          await r.text();
        }
        if (n === 1) return new Response(VALUE);
        break;
      case "cache-put":
        for (let i = 0; i < n; i++) {
          await caches.default.put(
            "https://bench.test/p" + (i % 100),
            new Response(VALUE, { headers: { "cache-control": "max-age=3600" } }),
          );
        }
        break;
      case "r2-get":
        for (let i = 0; i < n; i++) if ((await (await env.R2.get("o0")).text()) !== VALUE) throw new Error("wrong object");
        break;
      case "r2-put":
        for (let i = 0; i < n; i++) await env.R2.put("p" + (i % 100), VALUE);
        break;
      case "svc-call":
        // A service binding to this worker itself, answering as "direct".
        for (let i = 0; i < n; i++) if ((await (await env.SELF.fetch("http://bench/?op=direct")).text()) !== VALUE) throw new Error("wrong answer");
        if (n === 1) return new Response(VALUE);
        break;
      default:
        return new Response("unknown op", { status: 400 });
    }
    return new Response("done");
  },
};
