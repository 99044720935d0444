// The worker of benches/abuse.sh: the bystander's constant answer, a 401
// that never reads its upload, a 64 MB response, and a body read whole.
export default {
  async fetch(req) {
    const u = new URL(req.url);
    if (u.hostname === "bystander.test") return new Response("good");
    if (u.pathname === "/deny") return new Response("no", { status: 401 });
    if (u.pathname === "/big") {
      const chunk = new Uint8Array(1 << 20);
      let n = 0;
      return new Response(new ReadableStream({ pull(c) { if (n++ < 64) c.enqueue(chunk); else c.close(); } }));
    }
    return new Response("read " + (await req.arrayBuffer()).byteLength);
  },
};
