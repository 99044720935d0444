// `import { WorkerEntrypoint, env, waitUntil } from "cloudflare:workers"`:
// the Workers built-in module. `env` is the worker's env, set before its
// main module evaluates (so top-level code may read it).
//
// A module that is not `ext:` may import no `ext:` module, so this one
// hands its two setters to js/entrypoints.js through a global that exists
// only while the snapshot is made (entrypoints.js deletes it).

export class WorkerEntrypoint {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

// The base class of a Durable Object. Exporting one is allowed (a worker
// written for Workers loads); binding one is not supported on this node,
// so nothing instantiates it here.
export class DurableObject {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

export class WorkflowEntrypoint {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

// On Workers, instances pass over RPC by reference; here RPC passes
// values only (structured clone), so this is a base class and no more.
export class RpcTarget {}

export let env = {};
let extend = null;

// Extends the request whose code calls it, as `ctx.waitUntil()` does.
export function waitUntil(promise) {
  extend(promise);
}

Object.defineProperty(globalThis, "__edgeWorkersModule", {
  value: {
    setEnv(value) {
      env = value;
    },
    setWaitUntil(f) {
      extend = f;
    },
  },
  configurable: true,
});
