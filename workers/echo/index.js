// Streams the request body straight back: uploads of any size keep the
// server's memory flat because nothing is buffered.
export default {
  fetch(request) {
    return new Response(request.body, {
      headers: { "content-type": request.headers.get("content-type") ?? "application/octet-stream" },
    });
  },
};
