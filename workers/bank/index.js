// Calls the accounts worker over RPC (`env.ACCOUNTS.balance(name)`) and
// its named entrypoint Audit over fetch (`env.AUDIT.fetch(...)`): both are
// service bindings in workers/edge.toml. Its own default export is a
// WorkerEntrypoint class too: a fresh instance per request, with
// `this.env` and `this.ctx`.
//   curl -H 'Host: bank.localhost' http://127.0.0.1:8080/balance/ada
//   curl -H 'Host: bank.localhost' -X POST 'http://127.0.0.1:8080/deposit/ada?amount=5'
//   curl -H 'Host: bank.localhost' http://127.0.0.1:8080/audit
import { WorkerEntrypoint } from "cloudflare:workers";

export default class Bank extends WorkerEntrypoint {
  async fetch(request) {
    const url = new URL(request.url);
    const [, action, name] = url.pathname.split("/");
    try {
      if (action === "balance" && name) {
        return Response.json(await this.env.ACCOUNTS.balance(name));
      }
      if (action === "deposit" && name && request.method === "POST") {
        const amount = Number(url.searchParams.get("amount"));
        return Response.json(await this.env.ACCOUNTS.deposit(name, amount));
      }
      if (action === "audit") {
        return this.env.AUDIT.fetch("https://accounts.internal/audit");
      }
    } catch (err) {
      // The callee's RangeError arrives as a RangeError.
      if (err instanceof RangeError) return new Response(`${err.message}\n`, { status: 400 });
      throw err;
    }
    return new Response("GET /balance/NAME, POST /deposit/NAME?amount=N, GET /audit\n", { status: 404 });
  }
}
