// Service bindings (`env.NAME` for a `[[worker.services]]`): Cloudflare's
// Fetcher. `fetch()` runs the request through another worker of this node
// in process (src/ext/service.rs); the answer comes back through
// deno_fetch's response resource, its body streamed as the callee writes it.

import { core, primordials } from "ext:core/mod.js";

const {
  Error,
  ObjectPrototypeIsPrototypeOf,
  Symbol,
  SymbolToStringTag,
  TypeError,
  TypedArrayPrototypeGetSymbolToStringTag,
} = primordials;
const { op_edge_service_fetch, op_fetch_send } = core.ops;

const { readableStreamForRid, resourceForReadableStream, getReadableStreamResourceBacking, ReadableStreamPrototype } =
  core.loadExtScript("ext:deno_web/06_streams.js");
const abortSignal = core.loadExtScript("ext:deno_web/03_abort_signal.js");
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
    return serviceFetch(this.#index, input, init);
  }

  connect() {
    throw new TypeError("connect() over a service binding is not supported");
  }

  get [SymbolToStringTag]() {
    return "Fetcher";
  }
}

export function fetcher(index) {
  return new Fetcher(kKey, index);
}

async function serviceFetch(index, input, init) {
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
    started = op_edge_service_fetch(id, index, inner.method, url, inner.headerList, data, rid, length);
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
