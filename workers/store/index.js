// A notes store on a KV namespace (env.NOTES, `[[worker.kv]]` in
// workers/edge.toml): PUT /notes/NAME stores the body (?ttl=SECONDS to let
// it expire), GET /notes/NAME reads it back, DELETE /notes/NAME removes it,
// GET /notes?prefix=P lists names. Each note keeps who wrote it and when as
// KV metadata. The data lives in workers/.edge-state/kv/notes.sqlite3 and
// survives restarts.

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [, root, ...rest] = url.pathname.split("/");
    if (root !== "notes") {
      return new Response("try PUT, GET or DELETE /notes/NAME, or GET /notes?prefix=\n", { status: 404 });
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
          const ttl = url.searchParams.get("ttl");
          await env.NOTES.put(name, request.body ?? "", {
            expirationTtl: ttl === null ? undefined : Number(ttl),
            metadata: { at: new Date().toISOString(), by: request.headers.get("user-agent") ?? "" },
          });
          return new Response(`stored ${name}\n`, { status: 201 });
        }
        case "GET": {
          const { value, metadata } = await env.NOTES.getWithMetadata(name, "stream");
          if (value === null) return new Response(`no note ${name}\n`, { status: 404 });
          return new Response(value, { headers: { "x-note-written": metadata?.at ?? "" } });
        }
        case "DELETE":
          await env.NOTES.delete(name);
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
