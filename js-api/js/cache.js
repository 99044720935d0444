// The Cache API as on Workers: `caches.default` and `caches.open(name)`,
// each a Cache with put, match and delete, over the ops of
// src/ext/cache.rs (the store and its rules are edge_storage::cache). An
// entry belongs to the worker and to the zone (host) of the request that
// put it. A body matched is copied into a buffer made here, so it counts in
// the isolate's memory.

import { core, primordials } from "ext:core/mod.js";

const {
  ArrayPrototypePush,
  ObjectPrototypeIsPrototypeOf,
  String,
  SymbolToStringTag,
  TypeError,
  Uint8Array,
} = primordials;
const { op_edge_cache_put, op_edge_cache_match, op_edge_cache_delete, op_edge_kv_take } = core.ops;

const requestMod = core.loadExtScript("ext:deno_fetch/23_request.js");
const responseMod = core.loadExtScript("ext:deno_fetch/23_response.js");

/** Gives the zone of the request a call belongs to, or throws. */
let zoneOf = () => {
  throw new TypeError("the Cache API is only available during a request");
};

/** Set by the bootstrap (it knows the request a call belongs to). */
export function setCacheZone(fn) {
  zoneOf = fn;
}

function toRequest(r) {
  return ObjectPrototypeIsPrototypeOf(requestMod.RequestPrototype, r) ? r : new requestMod.Request(String(r));
}

function pairs(headers) {
  const out = [];
  for (const [k, v] of headers) ArrayPrototypePush(out, [k, v]);
  return out;
}

function target(cache, req, options) {
  return {
    host: zoneOf(),
    cache,
    method: req.method,
    url: req.url,
    headers: pairs(req.headers),
    ignoreMethod: !!options?.ignoreMethod,
  };
}

class Cache {
  #name;

  constructor(name) {
    this.#name = name;
  }

  async put(request, response) {
    const req = toRequest(request);
    if (!ObjectPrototypeIsPrototypeOf(responseMod.ResponsePrototype, response)) {
      throw new TypeError("Cache.put() takes a Response");
    }
    if (response.bodyUsed) throw new TypeError("Response body is already used");
    const t = target(this.#name, req, undefined);
    const body = new Uint8Array(await response.arrayBuffer());
    op_edge_cache_put(t, { status: response.status, headers: pairs(response.headers) }, body);
  }

  async match(request, options = undefined) {
    const req = toRequest(request);
    const m = op_edge_cache_match(target(this.#name, req, options));
    if (m === null) return undefined;
    const body = new Uint8Array(m.length);
    op_edge_kv_take(m.handle, body);
    const nullBody = m.status === 304 || m.status === 204;
    return new responseMod.Response(nullBody ? null : body, { status: m.status, headers: m.headers });
  }

  async delete(request, options = undefined) {
    return op_edge_cache_delete(target(this.#name, toRequest(request), options));
  }

  get [SymbolToStringTag]() {
    return "Cache";
  }
}

class CacheStorage {
  #default = new Cache("default");

  get default() {
    return this.#default;
  }

  async open(name) {
    name = String(name);
    // A name of its own, never the default's.
    return new Cache("named:" + name);
  }

  get [SymbolToStringTag]() {
    return "CacheStorage";
  }
}

export { Cache, CacheStorage };
export const caches = new CacheStorage();
