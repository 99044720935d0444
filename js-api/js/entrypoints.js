// What the bootstrap needs to know of the `cloudflare:workers` module
// (js/workers.js): a worker's default or named export that extends
// WorkerEntrypoint is instantiated per request, as `new Class(ctx, env)`,
// and its methods are the handlers (`fetch(request)`,
// `scheduled(controller)`, `queue(batch)`) and what service bindings call
// over RPC.

import { primordials } from "ext:core/mod.js";
import { WorkerEntrypoint } from "cloudflare:workers";

const {
  ObjectGetPrototypeOf,
  ObjectPrototypeHasOwnProperty,
  ObjectPrototypeIsPrototypeOf,
  TypeError,
} = primordials;

// The module's setters (`setEnv(env)`, `setWaitUntil(f)`), taken from the
// global it left for us while the snapshot is made.
export const workersModule = globalThis.__edgeWorkersModule;
delete globalThis.__edgeWorkersModule;

// Whether `value` is a class extending WorkerEntrypoint.
export function isEntrypointClass(value) {
  return typeof value === "function" &&
    value.prototype !== undefined &&
    value.prototype !== null &&
    ObjectPrototypeIsPrototypeOf(WorkerEntrypoint.prototype, value.prototype);
}

// The method `name` of `instance` that RPC may call: one defined on its
// class or a superclass below WorkerEntrypoint (not the constructor, not
// the handlers, not Object's, not an instance's own property), or throws
// as Workers does.
export function rpcMethod(instance, name) {
  if (name !== "constructor" && name !== "fetch" && name !== "scheduled" && name !== "queue") {
    let proto = ObjectGetPrototypeOf(instance);
    while (proto !== null && proto !== WorkerEntrypoint.prototype) {
      if (ObjectPrototypeHasOwnProperty(proto, name)) {
        const f = proto[name];
        if (typeof f === "function") return f;
        break;
      }
      proto = ObjectGetPrototypeOf(proto);
    }
  }
  throw new TypeError(`The RPC receiver does not implement the method "${name}".`);
}
