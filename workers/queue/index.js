// Queues (`[worker.queues]` in workers/edge.toml): POST /jobs sends its
// JSON body to the queue `jobs` (env.JOBS); the node hands batches of them
// to queue(), which records each job in KV (env.DONE) and acks it. A job
// with "fail": true is retried (twice, a second apart), then lands in the
// dead-letter queue `jobs-dead`, which this worker consumes too. GET /
// lists what was done and what died.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (request.method === "POST" && url.pathname === "/jobs") {
      const job = await request.json();
      await env.JOBS.send(job, { contentType: "json", delaySeconds: Number(url.searchParams.get("delay") ?? 0) });
      return new Response("queued\n", { status: 202 });
    }
    const done = [];
    for (const { name } of (await env.DONE.list()).keys) done.push({ key: name, ...(await env.DONE.get(name, "json")) });
    return Response.json(done);
  },

  async queue(batch, env) {
    for (const message of batch.messages) {
      const dead = batch.queue === "jobs-dead";
      if (!dead && message.body.fail) {
        message.retry();
        continue;
      }
      await env.DONE.put(`${batch.queue}:${message.id}`, JSON.stringify({
        job: message.body,
        attempts: message.attempts,
        sent: message.timestamp.toISOString(),
      }));
      message.ack();
    }
  },
};
