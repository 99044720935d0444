// The benchmark worker, run unchanged by edge, `deno serve` and workerd:
//   GET  /        "Hello World!"
//   POST /json    parses a JSON order, answers a JSON summary of it
//   GET  /stream  1 MiB streamed in 16 chunks of 64 KiB
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
