// Globals that persist between warm requests, console output, and work that
// continues after the response through ctx.waitUntil.
let count = 0;
let lastBackground = "none";

export default {
  async fetch(request, env, ctx) {
    count += 1;
    const { pathname } = new URL(request.url);
    console.log(`request ${count} for ${pathname}`);
    if (pathname === "/background") {
      ctx.waitUntil(
        new Promise((resolve) => setTimeout(resolve, 50)).then(() => {
          lastBackground = `finished after request ${count}`;
          console.log("background work done");
        }),
      );
    }
    return Response.json({ count, lastBackground, name: env.NAME ?? null });
  },
};
