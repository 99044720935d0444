// A notes store on a KV namespace (env.NOTES, `[[worker.kv]]` in
// workers/edge.toml): PUT /notes/NAME stores the body (?ttl=SECONDS to let
// it expire), GET /notes/NAME reads it back, DELETE /notes/NAME removes it,
// GET /notes?prefix=P lists names. Each note keeps who wrote it and when as
// KV metadata. Every change is also logged in a D1 database (env.LOG,
// `[[worker.d1]]`): GET /log shows the last 20. Notes read are kept in the
// Cache API (caches.default) for 30 s, so a second read is a cache hit
// (`cf-cache-status: HIT`); a write or delete drops the cached copy.
// GET /stats/NAME streams the note to the `words` worker through a service
// binding (env.WORDS, `[[worker.services]]`) and answers its count.
// PUT /files/NAME keeps any body in an R2 bucket (env.FILES,
// `[[worker.r2]]`) with its Content-Type; GET /files/NAME streams it back
// (a `Range: bytes=a-b` gets 206 and only those bytes, `If-None-Match` with
// its ETag gets 304). The data lives in workers/.edge-state/
// (kv/notes.sqlite3, d1/log.sqlite3, r2/files.sqlite3) and survives
// restarts.

// Made once per isolate, before its first change is logged.
let logReady = null;
function log(env, action, name) {
  logReady ??= env.LOG.exec(
    "CREATE TABLE IF NOT EXISTS changes (id INTEGER PRIMARY KEY, at TEXT NOT NULL, action TEXT NOT NULL, name TEXT NOT NULL)",
  ).catch((e) => {
    logReady = null;
    throw e;
  });
  return logReady.then(() =>
    env.LOG.prepare("INSERT INTO changes (at, action, name) VALUES (?, ?, ?)")
      .bind(new Date().toISOString(), action, name)
      .run()
  );
}

// Files in the R2 bucket, streamed both ways.
async function file(request, env, name) {
  if (name === "") return new Response("PUT or GET /files/NAME\n", { status: 404 });
  if (request.method === "PUT") {
    const stored = await env.FILES.put(name, request.body, {
      httpMetadata: { contentType: request.headers.get("content-type") ?? "application/octet-stream" },
    });
    return new Response(`stored ${name}: ${stored.size} bytes, etag ${stored.etag}\n`, { status: 201 });
  }
  if (request.method !== "GET") return new Response("PUT or GET\n", { status: 405 });
  const object = await env.FILES.get(name, { range: request.headers, onlyIf: request.headers });
  if (object === null) return new Response(`no file ${name}\n`, { status: 404 });
  const headers = new Headers({ etag: object.httpEtag });
  object.writeHttpMetadata(headers);
  if (!("body" in object)) return new Response(null, { status: 304, headers });
  if (request.headers.has("range")) {
    const { offset, length } = object.range;
    headers.set("content-range", `bytes ${offset}-${offset + length - 1}/${object.size}`);
    return new Response(object.body, { status: 206, headers });
  }
  return new Response(object.body, { headers });
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const [, root, ...rest] = url.pathname.split("/");
    if (root === "log") {
      await log(env, "read", "log").catch(() => {});
      const { results } = await env.LOG.prepare("SELECT at, action, name FROM changes ORDER BY id DESC LIMIT 20").all();
      return Response.json(results);
    }
    if (root === "files") return file(request, env, decodeURIComponent(rest.join("/")));
    if (root === "stats") {
      const value = await env.NOTES.get(decodeURIComponent(rest.join("/")), "stream");
      if (value === null) return new Response("no such note\n", { status: 404 });
      return env.WORDS.fetch("https://words/count", { method: "POST", body: value });
    }
    if (root !== "notes") {
      return new Response("try PUT, GET or DELETE /notes/NAME, GET /notes?prefix=, GET /stats/NAME, PUT or GET /files/NAME, or GET /log\n", {
        status: 404,
      });
    }
    const name = decodeURIComponent(rest.join("/"));
    if (name === "") {
      if (request.method !== "GET") return new Response("GET /notes lists\n", { status: 405 });
      const listing = await env.NOTES.list({ prefix: url.searchParams.get("prefix") ?? "", limit: 100 });
      return Response.json({
        notes: listing.keys.map((k) => ({ name: k.name, ...k.metadata, expiration: k.expiration })),
        more: !listing.list_complete,
      });
    }
    try {
      switch (request.method) {
        case "PUT": {
          await caches.default.delete(url.href);
          const ttl = url.searchParams.get("ttl");
          await env.NOTES.put(name, request.body ?? "", {
            expirationTtl: ttl === null ? undefined : Number(ttl),
            metadata: { at: new Date().toISOString(), by: request.headers.get("user-agent") ?? "" },
          });
          await log(env, "put", name);
          return new Response(`stored ${name}\n`, { status: 201 });
        }
        case "GET": {
          const cached = await caches.default.match(request);
          if (cached) return cached;
          const { value, metadata } = await env.NOTES.getWithMetadata(name, "stream");
          if (value === null) return new Response(`no note ${name}\n`, { status: 404 });
          const response = new Response(value, {
            headers: { "x-note-written": metadata?.at ?? "", "cache-control": "max-age=30" },
          });
          ctx.waitUntil(caches.default.put(url.href, response.clone()));
          return response;
        }
        case "DELETE":
          await caches.default.delete(url.href);
          await env.NOTES.delete(name);
          await log(env, "delete", name);
          return new Response(null, { status: 204 });
        default:
          return new Response("PUT, GET or DELETE\n", { status: 405 });
      }
    } catch (e) {
      // Cloudflare's KV messages carry the status: "KV PUT failed: 400 ...".
      const status = Number(/failed: (\d{3})/.exec(e.message)?.[1] ?? 500);
      return new Response(e.message + "\n", { status });
    }
  },
};
