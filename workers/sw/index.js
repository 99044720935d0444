// Service-worker syntax: vars are globals, the event answers with respondWith.
addEventListener("fetch", (event) => {
  event.respondWith(handle(event.request));
});

async function handle(request) {
  return new Response(`service worker says ${typeof GREETING === "string" ? GREETING : "hi"} to ${request.method}\n`);
}
