// The smallest worker: answers every request with a greeting from its env.
export default {
  async fetch(request, env, ctx) {
    return new Response(`${env.GREETING ?? "Hello"} from ${new URL(request.url).hostname}\n`);
  },
};
