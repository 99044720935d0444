// A response built from a ReadableStream: each chunk reaches the client as
// soon as it is enqueued, before the stream ends.
export default {
  fetch(request) {
    const url = new URL(request.url);
    const chunks = Number(url.searchParams.get("chunks") ?? 5);
    const delay = Number(url.searchParams.get("delay") ?? 100);
    let i = 0;
    const body = new ReadableStream({
      async pull(controller) {
        if (i === chunks) {
          controller.close();
          return;
        }
        if (i > 0) await new Promise((r) => setTimeout(r, delay));
        controller.enqueue(new TextEncoder().encode(`chunk ${i++}\n`));
      },
    });
    return new Response(body, { headers: { "content-type": "text/plain" } });
  },
};
