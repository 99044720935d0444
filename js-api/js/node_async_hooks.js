// `node:async_hooks` (with `compatibility_flags = ["nodejs_compat"]` or
// `["nodejs_als"]`): AsyncLocalStorage and AsyncResource, as on Workers,
// on V8's continuation-preserved embedder data, the async context that
// already carries each continuation's request number (bootstrap.js).
//
// The context is that number, or a frozen pair [number, Map of storage ->
// store] once a storage holds a store. A frame taken in one place and run
// in another (AsyncResource, snapshot(), bind()) brings its stores only:
// the request stays the one whose code runs, so a resource made at the top
// level and run in a request does not run outside it.

import { core, primordials } from "ext:core/mod.js";

const {
  ObjectDefineProperty,
  ObjectFreeze,
  ReflectApply,
  SafeMap,
  TypeError,
} = primordials;
const { getAsyncContext, setAsyncContext } = core;

function requestOf(frame) {
  if (typeof frame === "number") return frame;
  return frame === undefined || frame === null ? 0 : frame[0];
}

function storesOf(frame) {
  return typeof frame === "object" && frame !== null ? frame[1] : null;
}

// The context for request `request` with `stores` (a Map, or null).
function frameOf(request, stores) {
  if (stores === null || stores.size === 0) return request === 0 ? undefined : request;
  return ObjectFreeze([request, stores]);
}

// The current frame with `storage` holding `store` (or nothing, for
// `remove`).
function withStore(storage, store, remove) {
  const frame = getAsyncContext();
  const old = storesOf(frame);
  const stores = new SafeMap();
  if (old !== null) old.forEach((value, key) => stores.set(key, value));
  if (remove) stores.delete(storage);
  else stores.set(storage, store);
  return frameOf(requestOf(frame), stores);
}

// Runs `fn` with the context `frame`, then puts back what was.
function runIn(frame, fn, thisArg, args) {
  const prev = getAsyncContext();
  setAsyncContext(frame);
  try {
    return ReflectApply(fn, thisArg, args);
  } finally {
    setAsyncContext(prev);
  }
}

// The stores of `captured` under the request that runs now.
function replay(captured) {
  return frameOf(requestOf(getAsyncContext()), storesOf(captured));
}

function checkFunction(fn, name) {
  if (typeof fn !== "function") {
    throw new TypeError(`The "${name}" argument must be of type function. Received ${typeof fn}`);
  }
}

export class AsyncLocalStorage {
  getStore() {
    const stores = storesOf(getAsyncContext());
    return stores === null ? undefined : stores.get(this);
  }

  run(store, callback, ...args) {
    checkFunction(callback, "callback");
    return runIn(withStore(this, store, false), callback, undefined, args);
  }

  exit(callback, ...args) {
    checkFunction(callback, "callback");
    return runIn(withStore(this, undefined, true), callback, undefined, args);
  }

  // For the rest of the synchronous code and what it starts.
  enterWith(store) {
    setAsyncContext(withStore(this, store, false));
  }

  disable() {
    setAsyncContext(withStore(this, undefined, true));
  }

  static bind(fn) {
    return AsyncResource.bind(fn);
  }

  // A function that runs its argument with the stores of now.
  static snapshot() {
    const captured = getAsyncContext();
    return (fn, ...args) => {
      checkFunction(fn, "fn");
      return runIn(replay(captured), fn, undefined, args);
    };
  }
}

export class AsyncResource {
  #frame;
  #type;

  constructor(type, _options = undefined) {
    if (typeof type !== "string") {
      throw new TypeError(`The "type" argument must be of type string. Received ${typeof type}`);
    }
    this.#type = type;
    this.#frame = getAsyncContext();
  }

  get type() {
    return this.#type;
  }

  runInAsyncScope(fn, thisArg, ...args) {
    checkFunction(fn, "fn");
    return runIn(replay(this.#frame), fn, thisArg, args);
  }

  bind(fn, thisArg = undefined) {
    checkFunction(fn, "fn");
    const resource = this;
    const bound = function (...args) {
      return resource.runInAsyncScope(fn, thisArg === undefined ? this : thisArg, ...args);
    };
    ObjectDefineProperty(bound, "length", { value: fn.length, configurable: true });
    return bound;
  }

  static bind(fn, type = undefined, thisArg = undefined) {
    checkFunction(fn, "fn");
    return new AsyncResource(type ?? (fn.name || "bound-anonymous-fn")).bind(fn, thisArg);
  }

  emitDestroy() {
    return this;
  }

  asyncId() {
    return 0;
  }

  triggerAsyncId() {
    return 0;
  }
}

// What Workers has of the rest of async_hooks: nothing that tracks.
export function executionAsyncId() {
  return 0;
}

export function triggerAsyncId() {
  return 0;
}

export function executionAsyncResource() {
  return {};
}

export function createHook() {
  throw new TypeError("async_hooks.createHook() is not supported (as on Workers)");
}

export default {
  AsyncLocalStorage,
  AsyncResource,
  createHook,
  executionAsyncId,
  executionAsyncResource,
  triggerAsyncId,
};
