// `node:process` and the `process` global (with `compatibility_flags =
// ["nodejs_compat"]`), as Workers has them: `process.env` holds the
// worker's text vars and secrets, `nextTick` queues a microtask. No
// version is claimed (code that checks for Node would then reach for what
// is not here).

import { primordials } from "ext:core/mod.js";
import { EventEmitter } from "node:events";

const { ObjectAssign, ReflectApply, TypeError } = primordials;

const process = new EventEmitter();
process.env = {};
process.argv = [];
process.execArgv = [];
process.exitCode = undefined;
process.nextTick = (callback, ...args) => {
  if (typeof callback !== "function") {
    throw new TypeError(`The "callback" argument must be of type function. Received ${typeof callback}`);
  }
  queueMicrotask(() => ReflectApply(callback, undefined, args));
};
process.emitWarning = (warning, ...rest) => {
  const text = typeof warning === "string" ? warning : warning?.message;
  const kind = typeof rest[0] === "string" ? rest[0] : (warning?.name ?? "Warning");
  globalThis.console?.warn(`(node) ${kind}: ${text}`);
};
process.cwd = () => "/";
process.exit = (code = undefined) => {
  throw new TypeError(`process.exit(${code ?? ""}) is not supported in a worker (as on Workers)`);
};
process.features = {};

// Called once per isolate by the bootstrap, with the worker's text vars
// and secrets.
export function setProcessEnv(vars) {
  ObjectAssign(process.env, vars);
}

export const env = process.env;
export const nextTick = process.nextTick;
export const emitWarning = process.emitWarning;
export const cwd = process.cwd;
export default process;
