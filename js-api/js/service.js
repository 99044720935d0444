// Service bindings (`env.NAME` for a `[[worker.services]]`): Cloudflare's
// Fetcher. `fetch()` runs the request through another worker of this node
// in process (src/ext/service.rs); the answer comes back through
// deno_fetch's response resource, its body streamed as the callee writes it.
// Any other method is an RPC call (`env.NAME.add(1, 2)`) to the callee's
// WorkerEntrypoint: the arguments and the answer are structured-cloned
// (values only: no functions, stubs or streams), sent as a request's body.

import { core, primordials } from "ext:core/mod.js";

const {
  Error,
  FunctionPrototypeBind,
  ObjectPrototypeIsPrototypeOf,
  Proxy,
  ReflectGet,
  ReflectHas,
  Symbol,
  SymbolToStringTag,
  TypeError,
  TypedArrayPrototypeGetSymbolToStringTag,
  Uint8Array,
} = primordials;
const { op_edge_service_fetch, op_fetch_send } = core.ops;

const { readableStreamForRid, resourceForReadableStream, getReadableStreamResourceBacking, ReadableStreamPrototype } =
  core.loadExtScript("ext:deno_web/06_streams.js");
const abortSignal = core.loadExtScript("ext:deno_web/03_abort_signal.js");
const { DOMException } = core.loadExtScript("ext:deno_web/01_dom_exception.js");
const { InnerBody } = core.loadExtScript("ext:deno_fetch/22_body.js");
const requestMod = core.loadExtScript("ext:deno_fetch/23_request.js");
const { fromInnerResponse, nullBodyStatus } = core.loadExtScript("ext:deno_fetch/23_response.js");

// Set by the bootstrap: `admit()` checks that a subrequest may start (a
// live request, the subrequest limit; throws if not) and returns
// `prepare(inner, source)`, which stamps the request's hop count on the
// inner request's headers, as fetch() does, and returns the request's
// number.
let admit = null;
export function setServiceAdmission(fn) {
  admit = fn;
}

const kKey = Symbol("Fetcher");

class Fetcher {
  #index;
  constructor(key, index) {
    if (key !== kKey) throw new TypeError("Illegal constructor");
    this.#index = index;
  }

  fetch(input, init = undefined) {
    return serviceFetch(this.#index, input, init, undefined);
  }

  connect() {
    throw new TypeError("connect() over a service binding is not supported");
  }

  get [SymbolToStringTag]() {
    return "Fetcher";
  }
}

// Names that never become RPC calls: what awaiting, printing or
// serializing a binding looks up.
const NOT_RPC = ["then", "toJSON", "asymmetricMatch", "nodeType", "inspect"];

// The binding as JS sees it: the Fetcher's own members, and an RPC call
// for any other name (as Cloudflare's service binding stubs do).
export function fetcher(index) {
  const target = new Fetcher(kKey, index);
  return new Proxy(target, {
    get(t, name) {
      if (typeof name === "symbol" || ReflectHas(t, name)) {
        const v = ReflectGet(t, name);
        return typeof v === "function" && name !== "constructor" ? FunctionPrototypeBind(v, t) : v;
      }
      for (let i = 0; i < NOT_RPC.length; i++) if (NOT_RPC[i] === name) return undefined;
      return (...args) => serviceRpc(index, name, args);
    },
    set() {
      return false;
    },
  });
}

// `env.NAME.<name>(...args)`: the arguments go as the body of a request
// that names the method; the callee answers with the value or error.
async function serviceRpc(index, name, args) {
  // Before the first await (serviceFetch admits the call synchronously).
  let body;
  try {
    body = core.serialize(args, { forStorage: true });
  } catch (err) {
    throw new DOMException(`RPC ${name}(): an argument cannot be sent: ${err?.message ?? err}`, "DataCloneError");
  }
  const res = await serviceFetch(index, "http://rpc.invalid/" + name, { method: "POST", body }, name);
  const kind = res.headers.get("edge-rpc");
  if (kind === "value" || kind === "error") {
    const value = core.deserialize(new Uint8Array(await res.arrayBuffer()), { forStorage: true });
    if (kind === "error") throw value;
    return value;
  }
  // The callee did not get to answer (a limit, a worker not found).
  const text = await res.text();
  throw new Error(`RPC ${name}() failed: ${text === "" ? res.status : text}`);
}

async function serviceFetch(index, input, init, rpc) {
  // Before the first await: the request this call belongs to is read now.
  const prepare = admit();
  const source = init?.body ?? (ObjectPrototypeIsPrototypeOf(requestMod.RequestPrototype, input) ? input.body : null);
  const req = new requestMod.Request(input, init);
  const inner = requestMod.toInnerRequest(req);
  const id = prepare(inner, source);
  const signal = req.signal;
  if (signal.aborted) throw signal.reason;
  let data = null;
  let rid = null;
  let length = -1;
  if (inner.body !== null) {
    const stream = inner.body.streamOrStatic;
    const body = stream.body;
    if (TypedArrayPrototypeGetSymbolToStringTag(body) === "Uint8Array") {
      data = body;
    } else if (typeof body === "string") {
      data = core.encode(body);
    } else if (ObjectPrototypeIsPrototypeOf(ReadableStreamPrototype, stream)) {
      const backing = getReadableStreamResourceBacking(stream);
      rid = backing ? backing.rid : resourceForReadableStream(stream, inner.body.length);
      if (inner.body.length !== null) length = inner.body.length;
    } else {
      throw new TypeError("Invalid body");
    }
  }
  const url = inner.currentUrl();
  let started;
  try {
    started = op_edge_service_fetch(id, index, inner.method, url, inner.headerList, data, rid, length, rpc);
  } catch (err) {
    // The body's resource was not taken: let it go.
    if (rid !== null) core.tryClose(rid);
    throw err;
  }
  const { requestRid, cancelHandleRid } = started;
  const onAbort = () => core.tryClose(cancelHandleRid);
  signal[abortSignal.add](onAbort);
  let resp;
  try {
    resp = await op_fetch_send(requestRid);
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw err;
  } finally {
    signal[abortSignal.remove](onAbort);
    core.tryClose(cancelHandleRid);
  }
  if (resp.error !== null) {
    throw new TypeError("fetch failed", { cause: new Error(resp.error[1]) });
  }
  const answer = {
    type: "basic",
    body: null,
    headerList: resp.headers,
    // As a fetch() answer: a body passed on as it came (see the
    // bootstrap's `encoded`).
    urlList: [url],
    status: resp.status,
    statusMessage: resp.statusText,
    aborted: false,
    bodyDecoded: false,
    url() {
      return this.urlList.length === 0 ? null : this.urlList[this.urlList.length - 1];
    },
  };
  if (nullBodyStatus(resp.status) || inner.method === "HEAD") {
    core.tryClose(resp.responseRid);
  } else {
    const responseRid = resp.responseRid;
    answer.body = new InnerBody(readableStreamForRid(responseRid));
    signal[abortSignal.add](() => core.tryClose(responseRid));
  }
  return fromInnerResponse(answer, "immutable");
}
