// A cron trigger (`[worker.triggers] crons` in workers/edge.toml): every
// minute scheduled() keeps a heartbeat in KV (env.BEATS): the last run's
// cron and time and how many runs there were. GET / shows them.
// Under `edge dev --test-scheduled workers/cron/index.js --kv BEATS`,
// GET /__scheduled?cron=*+*+*+*+* runs scheduled() at once.
export default {
  async scheduled(controller, env, ctx) {
    const count = Number((await env.BEATS.get("count")) ?? 0) + 1;
    await env.BEATS.put("count", String(count));
    ctx.waitUntil(
      env.BEATS.put("last", JSON.stringify({ cron: controller.cron, at: new Date(controller.scheduledTime).toISOString() })),
    );
  },

  async fetch(request, env) {
    const last = await env.BEATS.get("last", "json");
    const count = Number((await env.BEATS.get("count")) ?? 0);
    return Response.json({ runs: count, last });
  },
};
