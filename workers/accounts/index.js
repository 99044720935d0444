// A WorkerEntrypoint whose methods other workers call over RPC: the bank
// worker's `env.ACCOUNTS.deposit("ada", 5)` (a service binding,
// `[[worker.services]]` in workers/edge.toml). Arguments, results and
// errors are structured-cloned between the two isolates. No route: only
// its callers reach it.
import { WorkerEntrypoint, env } from "cloudflare:workers";

// `env` from cloudflare:workers is there at the top level too.
const currency = env.CURRENCY;

export default class Accounts extends WorkerEntrypoint {
  async balance(name) {
    const stored = await this.env.BALANCES.get(name);
    return { name, balance: Number(stored ?? 0), currency };
  }

  async deposit(name, amount) {
    if (typeof amount !== "number" || !(amount > 0)) {
      throw new RangeError(`a deposit must be a positive number, not ${amount}`);
    }
    const { balance } = await this.balance(name);
    await this.env.BALANCES.put(name, String(balance + amount));
    return this.balance(name);
  }
}

// A named entrypoint: a service binding with `entrypoint = "Audit"` calls
// this class instead of the default export.
export class Audit extends WorkerEntrypoint {
  async fetch(request) {
    const names = (await this.env.BALANCES.list()).keys.map((k) => k.name);
    return Response.json({ path: new URL(request.url).pathname, accounts: names });
  }
}
