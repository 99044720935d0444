// The benchmark worker, run unchanged by edge, `deno serve` and workerd:
//   GET  /        "Hello World!"
//   POST /json    parses a JSON order, answers a JSON summary of it
//   GET  /stream  1 MiB streamed in 16 chunks of 64 KiB
//   GET  /sleep   "slept" after a 50 ms timer (I/O-bound: benches/concurrency.sh)
//   GET  /upstream?u=URL  the body of a fetch() of URL
//   GET  /spin    spins until its CPU limit stops it
const CHUNK = new Uint8Array(64 * 1024).fill(120);

export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/json") {
      const order = await request.json();
      return Response.json({
        id: order.id,
        customer: order.customer.name.toUpperCase(),
        lines: order.items.length,
        total: order.items.reduce((sum, i) => sum + i.price * i.qty, 0),
        tags: order.tags.map((t) => t.toUpperCase()).sort(),
      });
    }
    if (path === "/sleep") {
      await new Promise((resolve) => setTimeout(resolve, 50));
      return new Response("slept");
    }
    if (path === "/upstream") {
      const u = new URL(request.url).searchParams.get("u");
      const res = await fetch(u);
      return new Response(await res.text());
    }
    if (path === "/spin") {
      for (;;);
    }
    if (path === "/stream") {
      let sent = 0;
      const body = new ReadableStream({
        pull(controller) {
          if (sent === 16) {
            controller.close();
            return;
          }
          sent++;
          controller.enqueue(CHUNK.slice());
        },
      });
      return new Response(body, { headers: { "content-type": "application/octet-stream" } });
    }
    return new Response("Hello World!");
  },
};
