// Counts the words and bytes of a body as it streams in, a piece at a
// time. Has no route: the store worker reaches it through a service
// binding (env.WORDS, `[[worker.services]]` in workers/edge.toml), in
// process.
export default {
  async fetch(request) {
    if (request.method !== "POST" || request.body === null) {
      return new Response("POST a body to count its words\n", { status: 400 });
    }
    const decoder = new TextDecoder();
    let words = 0, bytes = 0, inWord = false;
    for await (const piece of request.body) {
      bytes += piece.byteLength;
      for (const ch of decoder.decode(piece, { stream: true })) {
        const space = /\s/.test(ch);
        if (!space && !inWord) words++;
        inWord = !space;
      }
    }
    return Response.json({ words, bytes });
  },
};
