// A worker with bugs on purpose: /sync throws, /async rejects, /never
// returns a promise that nothing can settle, anything else answers.
export default {
  async fetch(request) {
    const { pathname } = new URL(request.url);
    if (pathname === "/sync") throw new Error("boom (sync)");
    if (pathname === "/async") {
      await null;
      throw new TypeError("boom (async)");
    }
    if (pathname === "/never") return new Promise(() => {});
    if (pathname === "/not-a-response") return "just a string";
    return new Response("still serving\n");
  },
};
