// The global scope a worker sees, and the trampoline Rust calls per request.
//
// Runs once, while the V8 startup snapshot is built: it loads every deno ext
// script the globals need, defines the globals, and leaves one non-enumerable
// global, `__edgeInternal`, that `runtime.rs` takes away (and deletes, with
// `Deno` and `__bootstrap`) when an isolate is created from the snapshot.

import { core, internals, primordials } from "ext:core/mod.js";
import { installJsonParse } from "ext:edge_runtime/json.js";
import { setLongestArray } from "ext:edge_runtime/guards.js";
import { CompressionStream, DecompressionStream } from "ext:edge_runtime/compression.js";
import { installFastRsa, installHashNames, installTimingSafeEqual } from "ext:edge_runtime/webcrypto.js";
import { kvNamespace, setKvAdmission } from "ext:edge_runtime/kv.js";
import { d1Database, setD1Admission } from "ext:edge_runtime/d1.js";
import { Cache, CacheStorage, caches, setCacheZone } from "ext:edge_runtime/cache.js";
import { fetcher, setServiceAdmission } from "ext:edge_runtime/service.js";
import { r2Bucket, setR2Admission } from "ext:edge_runtime/r2.js";
import { HTMLRewriter } from "ext:edge_runtime/html.js";
import { openBatch, queueBinding, setQueueAdmission } from "ext:edge_runtime/queue.js";
// Imports "cloudflare:workers" (so that it is in the snapshot for workers
// to import).
import { isEntrypointClass, rpcMethod, workersModule } from "ext:edge_runtime/entrypoints.js";
// The Node built-ins workers with nodejs_compat import (in the snapshot).
import "node:async_hooks";
import "node:events";
import nodeProcess, { setProcessEnv } from "node:process";
import { Buffer as NodeBuffer } from "node:buffer";
import "node:path";
import "node:util";

const {
  ObjectDefineProperties,
  ObjectDefineProperty,
  ObjectFreeze,
  ObjectPrototypeIsPrototypeOf,
  ObjectSetPrototypeOf,
  Promise,
  PromisePrototypeThen,
  PromiseWithResolvers,
  SafeArrayIterator,
  SafeMap,
  StringPrototypeToUpperCase,
  StringPrototypeToLowerCase,
  StringPrototypeStartsWith,
  ArrayPrototypeSplice,
  ArrayPrototypeShift,
  ArrayPrototypePush,
  SafeSet,
  SafeSetIterator,
  ReflectApply,
  Symbol,
  TypeError,
  FunctionPrototypeCall,
  ObjectKeys,
  ReflectConstruct,
  RangeError,
  JSONParse,
  JSONStringify,
  String,
  Uint8Array,
} = primordials;

const {
  op_edge_wasm_pages,
  op_edge_limit_hit,
  op_edge_log,
  op_edge_hops,
  op_edge_req_body,
  op_edge_req_headers,
  op_edge_req_cf,
  op_edge_settled,
  op_edge_offthread,
} = core.ops;

// deno_crypto brands CryptoKey objects with this symbol (00_crypto.js).
internals.kKeyObject = Symbol("kKeyObject");

// deno_fetch's fetch() traces through deno_telemetry, which we do not ship.
// These are inert stand-ins with the shape 26_fetch.js destructures.
internals.__telemetry = {
  builtinTracer: () => undefined,
  ContextManager: {
    active: () => undefined,
    with: (_ctx, fn, thisArg, ...args) => fn.apply(thisArg, args),
  },
  DID_NOT_ENTER: Symbol("DID_NOT_ENTER"),
  enterSpan: () => undefined,
  exitSpan: () => undefined,
  TRACING_ENABLED: false,
  PROPAGATORS: [],
};
internals.__telemetryUtil = {
  updateSpanFromClientResponse: () => {},
  updateSpanFromError: () => {},
  updateSpanFromRequest: () => {},
};

const load = (s) => core.loadExtScript(s);
const webidl = load("ext:deno_webidl/00_webidl.js");
load("ext:deno_web/00_infra.js");
const url = load("ext:deno_web/00_url.js");
const urlPattern = load("ext:deno_web/01_urlpattern.js");
const consoleMod = load("ext:deno_web/01_console.js");
const { DOMException } = load("ext:deno_web/01_dom_exception.js");

// Errors raised in Rust by the deno ext crates reach JS through
// `core.buildCustomError(className, message)`, which builds only classes
// an embedder registered (Deno's runtime does; a class nobody registered
// came out as a thrown `undefined`). deno_web, deno_crypto and deno_fetch
// name DOMExceptions `DOMException<name>`: each becomes the DOMException
// the spec names (WebCrypto's OperationError, DataError, ...). The
// io-error classes (`NotFound`, `ConnectionRefused`, ...; deno_error maps
// std::io::ErrorKind to them) become an Error of that name. (Deno.core is
// frozen, so no fallback can be put in: a test lists every class the
// crates' sources name and fails on one missing here.)
for (
  const name of new SafeArrayIterator([
    "AbortError", "DataCloneError", "DataError", "EncodingError", "IndexSizeError",
    "InvalidAccessError", "InvalidCharacterError", "InvalidModificationError",
    "InvalidStateError", "NetworkError", "NotAllowedError", "NotFoundError",
    "NotReadableError", "NotSupportedError", "OperationError", "QuotaExceededError",
    "SecurityError", "SyntaxError", "TimeoutError", "TypeMismatchError",
  ])
) {
  core.registerErrorBuilder(`DOMException${name}`, (msg) => new DOMException(msg, name));
}
for (
  const name of new SafeArrayIterator([
    "AddrInUse", "AddrNotAvailable", "AlreadyExists", "BrokenPipe", "Busy",
    "ConnectionAborted", "ConnectionRefused", "ConnectionReset", "FilesystemLoop", "Http",
    "InvalidData", "IsADirectory", "NetworkUnreachable", "NotADirectory", "NotConnected",
    "NotFound", "NotSupported", "PermissionDenied", "TimedOut", "UnexpectedEof",
    "WouldBlock", "WriteZero",
  ])
) {
  core.registerErrorBuilder(name, (msg) => {
    const e = new Error(msg);
    e.name = name;
    return e;
  });
}
const event = load("ext:deno_web/02_event.js");
const timers = load("ext:deno_web/02_timers.js");
const abortSignal = load("ext:deno_web/03_abort_signal.js");
const base64 = load("ext:deno_web/05_base64.js");
const streams = load("ext:deno_web/06_streams.js");
const encoding = load("ext:deno_web/08_text_encoding.js");
const file = load("ext:deno_web/09_file.js");
const messagePort = load("ext:deno_web/13_message_port.js");
const performance = load("ext:deno_web/15_performance.js");
const cryptoMod = load("ext:deno_crypto/00_crypto.js");
const headers = load("ext:deno_fetch/20_headers.js");
const formData = load("ext:deno_fetch/21_formdata.js");
const body = load("ext:deno_fetch/22_body.js");
const request = load("ext:deno_fetch/23_request.js");
const response = load("ext:deno_fetch/23_response.js");
const fetchMod = load("ext:deno_fetch/26_fetch.js");
// Scripts no global needs (geometry, CSS, image data, FileReader,
// BroadcastChannel, EventSource, ...) are left out of the snapshot: a
// smaller heap image makes every isolate faster to create and smaller.

const { fromInnerRequest } = request;
const { InnerBody } = body;
const {
  readableStreamForRid,
  resourceForReadableStream,
  ReadableStreamPrototype,
} = streams;

// ---- console: every call goes to the server log with worker + request id.
// Log lines are plain text: no ANSI colours in inspected values.
consoleMod.setNoColorFns(() => true, () => true);
// A line is cut to MAX_LOG_LINE (ops.rs) before it is copied out: the
// server cuts it further to its configured length.
const MAX_LOG_LINE = 65536;
const workerConsole = new consoleMod.Console((msg, level) => {
  // Console passes 0..3 (debug, info/log, warn, error); trim the newline.
  let text = msg.length > 0 && msg[msg.length - 1] === "\n"
    ? msg.slice(0, -1)
    : msg;
  if (text.length > MAX_LOG_LINE) text = text.slice(0, MAX_LOG_LINE);
  op_edge_log(level, text, currentRequest());
});

// ---- which request runs now. Several requests share an isolate,
// interleaved at awaits; each handler is called with the async context
// (V8's continuation-preserved embedder data) set to its request's number,
// and V8 and deno's timers carry it to every continuation of that call.
// Rust reads it too, to charge CPU time to the request it belongs to.
const { getAsyncContext, setAsyncContext } = core;
// Request number -> its per-request state, while the request lasts. Two
// entries that never go keep V8 from shrinking (rehashing) the map each
// time its one request ends.
const liveRequests = new SafeMap();
function keepLiveRequestsRoomy() {
  liveRequests.set(-1, undefined);
  liveRequests.set(-2, undefined);
}
keepLiveRequestsRoomy();
// The context is the request's number, or [number, stores] once an
// AsyncLocalStorage holds a store (js/node_async_hooks.js).
function currentRequest() {
  const c = getAsyncContext();
  if (typeof c === "number") return c;
  return c === undefined || c === null ? 0 : c[0];
}

// A request has ended for JS: its state goes, and the timers it left are
// cancelled (as on Workers: they belong to the request), so they neither
// run on another request's time nor keep the event loop from going idle.
function dropRequest(reqId) {
  const state = liveRequests.get(reqId);
  if (state === undefined) return;
  liveRequests.delete(reqId);
  if (state.timers !== null) {
    for (const id of new SafeSetIterator(state.timers)) denoClearTimeout(id);
    state.timers = null;
  }
}

// ---- timers, owned by the request whose code set them. (Called as plain
// functions: deno's check `this`.)
const {
  setTimeout: denoSetTimeout,
  setInterval: denoSetInterval,
  clearTimeout: denoClearTimeout,
} = timers;
function ownerState() {
  return liveRequests.get(currentRequest());
}
function timersOf(state) {
  if (state.timers === null) state.timers = new SafeSet();
  return state.timers;
}
function setTimeout_(callback, delay = 0, ...args) {
  const state = ownerState();
  if (state === undefined || typeof callback !== "function") {
    return denoSetTimeout(callback, delay, ...args);
  }
  const owned = timersOf(state);
  let id = 0;
  const fire = function () {
    owned.delete(id);
    return ReflectApply(callback, this, arguments);
  };
  id = denoSetTimeout(fire, delay, ...args);
  owned.add(id);
  return id;
}
function setInterval_(callback, delay = 0, ...args) {
  const id = denoSetInterval(callback, delay, ...args);
  const state = ownerState();
  if (state !== undefined) timersOf(state).add(id);
  return id;
}
function clearTimer(id = undefined) {
  ownerState()?.timers?.delete(id);
  denoClearTimeout(id);
}

// ---- crypto.subtle work that runs on the blocking pool, off this thread:
// bounded (workerd's PBKDF2 cap; RSA moduli), at most a few at a time per
// isolate (more wait here, and are dropped when their request ends), and
// told to Rust while in flight, which charges the pool's CPU time to the
// requests that have such work running (edge pool::host).
const OFFTHREAD_AT_ONCE = 2;
const PBKDF2_MAX_ITERATIONS = 100000;
const RSA_MAX_MODULUS = 4096;
let offthreadRunning = 0;
const offthreadQueue = [];
function algorithmName(a) {
  const name = typeof a === "string" ? a : a?.name;
  return typeof name === "string" ? StringPrototypeToUpperCase(name) : "";
}
// Checks the bounds on a copy of the algorithm, which is what deno gets
// (a getter must not answer the check one number and deno another).
function refuseOverBounds(method, args) {
  let a = args[0];
  if (a === null || typeof a !== "object") return null;
  if (method !== "deriveBits" && method !== "deriveKey" && method !== "generateKey") return null;
  a = args[0] = { ...a };
  if ((method === "deriveBits" || method === "deriveKey") && algorithmName(a) === "PBKDF2") {
    const n = Number(a.iterations);
    a.iterations = n;
    if (n > PBKDF2_MAX_ITERATIONS) {
      return new DOMException(
        `PBKDF2 iteration counts above ${PBKDF2_MAX_ITERATIONS} are not supported (requested ${n})`,
        "NotSupportedError",
      );
    }
  }
  if (method === "generateKey" && StringPrototypeStartsWith(algorithmName(a), "RSA")) {
    const bits = Number(a.modulusLength);
    a.modulusLength = bits;
    if (bits > RSA_MAX_MODULUS) {
      return new DOMException(
        `RSA moduli longer than ${RSA_MAX_MODULUS} bits are not supported (requested ${bits})`,
        "NotSupportedError",
      );
    }
  }
  return null;
}
function runOffthread(job) {
  offthreadRunning++;
  op_edge_offthread(job.reqId, 1);
  const prev = getAsyncContext();
  setAsyncContext(job.reqId);
  let p;
  try {
    p = ReflectApply(job.orig, job.self, job.args);
  } catch (err) {
    p = Promise.reject(err);
  } finally {
    setAsyncContext(prev);
  }
  PromisePrototypeThen(p, (v) => {
    offthreadDone(job);
    job.resolve(v);
  }, (err) => {
    offthreadDone(job);
    job.reject(err);
  });
}
function offthreadDone(job) {
  offthreadRunning--;
  op_edge_offthread(job.reqId, -1);
  while (offthreadQueue.length > 0 && offthreadRunning < OFFTHREAD_AT_ONCE) {
    const next = ArrayPrototypeShift(offthreadQueue);
    if (next.reqId !== 0 && !liveRequests.has(next.reqId)) {
      next.reject(new DOMException("The request that started this operation has ended", "AbortError"));
      continue;
    }
    runOffthread(next);
  }
}
function installOffthreadCrypto() {
  const proto = cryptoMod.SubtleCrypto.prototype;
  for (const method of new SafeArrayIterator([
    "digest", "encrypt", "decrypt", "sign", "verify", "deriveBits", "deriveKey",
    "generateKey", "wrapKey", "unwrapKey", "exportKey",
  ])) {
    const orig = proto[method];
    if (typeof orig !== "function") continue;
    const wrapped = {
      [method](...args) {
        const refused = refuseOverBounds(method, args);
        if (refused !== null) return Promise.reject(refused);
        const { promise, resolve, reject } = PromiseWithResolvers();
        const job = { orig, self: this, args, reqId: currentRequest(), resolve, reject };
        if (offthreadRunning < OFFTHREAD_AT_ONCE) runOffthread(job);
        else ArrayPrototypePush(offthreadQueue, job);
        return promise;
      },
    }[method];
    ObjectDefineProperty(wrapped, "length", { value: orig.length });
    ObjectDefineProperty(proto, method, { value: wrapped, writable: true, enumerable: true, configurable: true });
  }
}

// ---- fetch, counted against the worker's subrequest limit per request.
let subrequestLimit = 50;
// Every subrequest (fetch(), a service binding's fetch()) starts here:
// it belongs to a live request and fits the request's subrequest limit,
// or throws. Returns the request's number.
function admitSubrequest() {
  const id = currentRequest();
  const state = liveRequests.get(id);
  if (state === undefined) {
    // Code of a request that has ended (a timer it left behind): on
    // Workers too, I/O belongs to a live request.
    throw new TypeError(
      "fetch() from code whose request has ended: use ctx.waitUntil() for work after the response",
    );
  }
  if (++state.subrequests > subrequestLimit) {
    op_edge_limit_hit(id);
    throw new TypeError(
      "Too many subrequests: a request of this worker may make at most " +
        subrequestLimit + " fetch() calls (edge-limit: subrequests)",
    );
  }
  return id;
}

// Loops (a worker fetching its own host, or calling itself through a
// service binding) end after 16 hops (edge/src/front/head.rs): each
// subrequest carries one more than its request's count (ops.rs
// HOP_HEADER), set in the header list itself, over anything the worker
// set, not through methods a worker can replace. The request's incoming
// body sent on keeps its Content-Length (a stream of unknown length would
// go chunked). Returns whether the worker set an Accept-Language.
function prepareSubrequest(id, innerReq, source) {
  const incoming = liveRequests.get(id)?.incomingBody ?? null;
  if (
    incoming !== null && source !== null && source !== undefined && source === incoming.streamOrStatic &&
    innerReq.body !== null && innerReq.body.length === null
  ) {
    innerReq.body.length = incoming.length;
  }
  const list = innerReq.headerList;
  let language = false;
  for (let i = list.length - 1; i >= 0; i--) {
    const name = StringPrototypeToLowerCase(list[i][0]);
    if (name === HOP_HEADER || name === DEFAULTED_HEADER) ArrayPrototypeSplice(list, i, 1);
    else if (name === "accept-language") language = true;
  }
  ArrayPrototypePush(list, [HOP_HEADER, "" + (op_edge_hops(id) + 1)]);
  return language;
}

function fetch(input, init = undefined) {
  let id;
  let req;
  let source;
  try {
    id = admitSubrequest();
    source = init?.body ?? (ObjectPrototypeIsPrototypeOf(request.RequestPrototype, input) ? input.body : null);
    req = new request.Request(input, init);
  } catch (err) {
    // fetch() rejects rather than throws (a bad URL, a used body).
    return Promise.reject(err);
  }
  const innerReq = request.toInnerRequest(req);
  // deno_fetch adds `Accept-Language: *` when there is none (workerd adds
  // none; some servers refuse `*`): net.rs takes it out again.
  if (!prepareSubrequest(id, innerReq, source)) {
    ArrayPrototypePush(innerReq.headerList, [DEFAULTED_HEADER, "accept-language"]);
  }
  return fetchMod.fetch(req);
}

// A service binding's fetch() (service.js) passes the same checks; the
// request's number goes to the op (its chain's budget of calls).
setServiceAdmission(() => {
  const id = admitSubrequest();
  return (innerReq, source) => {
    prepareSubrequest(id, innerReq, source);
    return id;
  };
});

const HOP_HEADER = "edge-via";
const DEFAULTED_HEADER = "edge-fetch-defaulted";

// ---- Wasm memory created or grown from JS must fit the isolate's memory
// budget, checked before V8 makes it (memory.rs; growth from inside Wasm
// is seen by the periodic check). Installed per isolate: WebAssembly does
// not exist while the snapshot is made.
function installWasmMemoryAccounting() {
  const WasmMemory = WebAssembly.Memory;
  const grow = WasmMemory.prototype.grow;
  WasmMemory.prototype.grow = function grow_(delta) {
    if (!op_edge_wasm_pages(delta >>> 0)) {
      throw new RangeError("WebAssembly.Memory.grow(): over the worker's memory limit");
    }
    return FunctionPrototypeCall(grow, this, delta);
  };
  const Memory = function Memory(descriptor) {
    if (!new.target) throw new TypeError("WebAssembly.Memory must be invoked with 'new'");
    const initial = descriptor?.initial ?? descriptor?.minimum ?? 0;
    if (!op_edge_wasm_pages(initial >>> 0)) {
      throw new RangeError("WebAssembly.Memory(): over the worker's memory limit");
    }
    return ReflectConstruct(WasmMemory, [descriptor], new.target);
  };
  Memory.prototype = WasmMemory.prototype;
  ObjectDefineProperty(WasmMemory.prototype, "constructor", { value: Memory, writable: true, configurable: true });
  ObjectDefineProperty(WebAssembly, "Memory", { value: Memory, writable: true, configurable: true });
}

// ---- JSON.parse in parts, and builtins a limit could not stop: json.js,
// guards.js.
installJsonParse(request.Request, response.Response);

// ---- `request.cf` on the requests a worker is handed (undefined on
// requests it makes).
ObjectDefineProperty(request.RequestPrototype, "cf", {
  get() {
    const inner = request.toInnerRequest(this);
    return inner instanceof IncomingInnerRequest ? inner.cf : undefined;
  },
  enumerable: true,
  configurable: true,
});

// ---- Response's `encodeBody` (a Workers extension). By default the server
// encodes a body in the coding its Content-Encoding names (gzip, br), as
// workerd does; `encodeBody: "manual"` says the body is encoded already.
// The constructor is wrapped (the same prototype, statics inherited) to
// note it.
const kEncodeManual = Symbol("encodeBody manual");
const ResponseCtor = (() => {
  const Base = response.Response;
  const Response = function Response(body = null, init = undefined) {
    if (new.target === undefined) {
      throw new TypeError("Failed to construct 'Response': Please use the 'new' operator.");
    }
    const manual = init !== null && typeof init === "object" && init.encodeBody === "manual";
    // The common case constructs directly (no Reflect call).
    if (new.target === Response && !manual) return new Base(body, init);
    const r = ReflectConstruct(Base, [body, init], new.target);
    if (manual) r[kEncodeManual] = true;
    return r;
  };
  Response.prototype = Base.prototype;
  ObjectSetPrototypeOf(Response, Base);
  ObjectDefineProperty(Base.prototype, "constructor", { value: Response, writable: true, configurable: true });
  ObjectDefineProperty(Response, "length", { value: 0 });
  return Response;
})();

// ---- the global scope: a ServiceWorkerGlobalScope-like EventTarget.
class WorkerGlobalScope extends event.EventTarget {
  constructor() {
    super(webidl.illegalConstructorKey);
  }
}
class Navigator {
  get userAgent() {
    return "edge-worker";
  }
}
const navigator = new Navigator();

class ExecutionContext {
  #state;
  constructor(state) {
    this.#state = state;
  }
  waitUntil(promise) {
    extendRequest(this.#state, promise);
  }
  passThroughOnException() {}
}

// Keeps request `state` going until `promise` settles (`ctx.waitUntil`).
function extendRequest(state, promise) {
  state.pending++;
  const done = () => {
    state.pending--;
    if (state.pending === 0 && state.idle !== null) {
      state.idle.resolve();
      state.idle = null;
    }
  };
  PromisePrototypeThen(Promise.resolve(promise), done, (err) => {
    reportRejection(err);
    done();
  });
}

// `waitUntil` of `cloudflare:workers`: the request whose code calls it.
workersModule.setWaitUntil((promise) => {
  const state = liveRequests.get(currentRequest());
  if (state === undefined) {
    throw new TypeError("waitUntil() from code whose request has ended (or outside any request)");
  }
  extendRequest(state, promise);
});

class FetchEvent extends event.Event {
  #ctx;
  #respond;
  constructor(type, init) {
    super(type, { cancelable: true });
    // An own property, as on workerd: code that wraps the event
    // (`Object.create(event)`, as @whatwg-node/server does) reads it
    // through the prototype chain.
    ObjectDefineProperty(this, "request", { value: init.request, enumerable: true });
    this.#ctx = init.ctx;
    this.#respond = init.respond;
  }
  respondWith(r) {
    if (this.#respond === null) {
      throw new DOMException("respondWith() was already called", "InvalidStateError");
    }
    const respond = this.#respond;
    this.#respond = null;
    respond(r);
  }
  waitUntil(p) {
    this.#ctx.waitUntil(p);
  }
  passThroughOnException() {}
}

// A cron trigger's run: `scheduled(controller, env, ctx)`, or a
// "scheduled" event in service-worker syntax.
class ScheduledController {
  #cron;
  #time;
  constructor(key, cron, scheduledTime) {
    if (key !== kScheduled) throw new TypeError("Illegal constructor");
    this.#cron = cron;
    this.#time = scheduledTime;
  }
  get cron() {
    return this.#cron;
  }
  get scheduledTime() {
    return this.#time;
  }
  // Runs are not retried here: a no-op, as a hint.
  noRetry() {}
}
const kScheduled = Symbol("scheduled");

class ScheduledEvent extends event.Event {
  #ctx;
  constructor(key, controller, ctx) {
    if (key !== kScheduled) throw new TypeError("Illegal constructor");
    super("scheduled");
    ObjectDefineProperty(this, "cron", { value: controller.cron, enumerable: true });
    ObjectDefineProperty(this, "scheduledTime", { value: controller.scheduledTime, enumerable: true });
    this.#ctx = ctx;
  }
  waitUntil(p) {
    this.#ctx.waitUntil(p);
  }
  noRetry() {}
}

const propNE = core.propNonEnumerable;
const propW = core.propWritable;
ObjectDefineProperties(globalThis, {
  AbortController: propNE(abortSignal.AbortController),
  AbortSignal: propNE(abortSignal.AbortSignal),
  Blob: propNE(file.Blob),
  ByteLengthQueuingStrategy: propNE(streams.ByteLengthQueuingStrategy),
  Cache: propNE(Cache),
  CacheStorage: propNE(CacheStorage),
  caches: propNE(caches),
  CompressionStream: propNE(CompressionStream),
  CountQueuingStrategy: propNE(streams.CountQueuingStrategy),
  Crypto: propNE(cryptoMod.Crypto),
  CryptoKey: propNE(cryptoMod.CryptoKey),
  CustomEvent: propNE(event.CustomEvent),
  DecompressionStream: propNE(DecompressionStream),
  DOMException: propNE(DOMException),
  ErrorEvent: propNE(event.ErrorEvent),
  Event: propNE(event.Event),
  EventTarget: propNE(event.EventTarget),
  ExecutionContext: propNE(ExecutionContext),
  FetchEvent: propNE(FetchEvent),
  File: propNE(file.File),
  FormData: propNE(formData.FormData),
  Headers: propNE(headers.Headers),
  HTMLRewriter: propNE(HTMLRewriter),
  MessageChannel: propNE(messagePort.MessageChannel),
  MessageEvent: propNE(event.MessageEvent),
  MessagePort: propNE(messagePort.MessagePort),
  Navigator: propNE(Navigator),
  Performance: propNE(performance.Performance),
  PromiseRejectionEvent: propNE(event.PromiseRejectionEvent),
  ReadableByteStreamController: propNE(streams.ReadableByteStreamController),
  ReadableStream: propNE(streams.ReadableStream),
  ReadableStreamBYOBReader: propNE(streams.ReadableStreamBYOBReader),
  ReadableStreamBYOBRequest: propNE(streams.ReadableStreamBYOBRequest),
  ReadableStreamDefaultController: propNE(streams.ReadableStreamDefaultController),
  ReadableStreamDefaultReader: propNE(streams.ReadableStreamDefaultReader),
  Request: propNE(request.Request),
  Response: propNE(ResponseCtor),
  SubtleCrypto: propNE(cryptoMod.SubtleCrypto),
  TextDecoder: propNE(encoding.TextDecoder),
  TextDecoderStream: propNE(encoding.TextDecoderStream),
  TextEncoder: propNE(encoding.TextEncoder),
  TextEncoderStream: propNE(encoding.TextEncoderStream),
  TransformStream: propNE(streams.TransformStream),
  TransformStreamDefaultController: propNE(streams.TransformStreamDefaultController),
  URL: propNE(url.URL),
  URLPattern: propNE(urlPattern.URLPattern),
  URLSearchParams: propNE(url.URLSearchParams),
  WorkerGlobalScope: propNE(WorkerGlobalScope),
  WritableStream: propNE(streams.WritableStream),
  WritableStreamDefaultController: propNE(streams.WritableStreamDefaultController),
  WritableStreamDefaultWriter: propNE(streams.WritableStreamDefaultWriter),
  atob: propW(base64.atob),
  btoa: propW(base64.btoa),
  clearInterval: propW(clearTimer),
  clearTimeout: propW(clearTimer),
  console: propNE(workerConsole),
  // A getter: the Crypto object is a cppgc object and must be created in the
  // running isolate, never in the snapshot.
  crypto: {
    get() {
      return cryptoMod.crypto;
    },
    enumerable: true,
    configurable: true,
  },
  fetch: propW(fetch),
  navigator: core.propReadOnly(navigator),
  performance: propW(performance.performance),
  reportError: propW(event.reportError),
  self: core.propGetterOnly(() => globalThis),
  setInterval: propW(setInterval_),
  setTimeout: propW(setTimeout_),
  structuredClone: propW(messagePort.structuredClone),
  [webidl.brand]: propNE(webidl.brand),
});
ObjectSetPrototypeOf(globalThis, WorkerGlobalScope.prototype);

// ---- per-request plumbing -------------------------------------------------

function reportRejection(err) {
  op_edge_log(3, "Uncaught (in promise) " + formatError(err), currentRequest());
}

function formatError(err) {
  try {
    if (err && typeof err === "object" && typeof err.stack === "string") {
      return err.stack;
    }
    return consoleMod.inspect(err);
  } catch {
    return "<unprintable error>";
  }
}

// The worker, once bound: set by `bind()` after its main module evaluated.
// `handlerEntry` is its default export (an object of handlers, or a class
// extending WorkerEntrypoint; null in service-worker syntax);
// `handlerObject` and `handlerFetch` the object and its fetch, for the
// common case's short path; `workerNamespace` its main module's exports,
// where named entrypoints are found.
let handlerEntry = null;
let handlerObject = null;
let handlerFetch = null;
let workerNamespace = null;
// Set by `prepare()` before the main module evaluates.
let workerEnv = null;

// Returned by runHandler() for an entrypoint without that handler.
const NO_HANDLER = Symbol("no handler");

// The entrypoint a request names (a service binding's `entrypoint`), or
// the default export for `undefined`.
function entryOf(entrypoint) {
  if (entrypoint === undefined) return handlerEntry;
  const entry = workerNamespace === null ? undefined : workerNamespace[entrypoint];
  if (!isEntrypointClass(entry)) {
    throw new TypeError(
      `The worker has no entrypoint named "${entrypoint}": export class ${entrypoint} extends WorkerEntrypoint { ... }`,
    );
  }
  return entry;
}

// Runs handler `name` (fetch, scheduled, queue) of `entry` with `arg`: an
// object's as `name(arg, env, ctx)`, a WorkerEntrypoint class's as
// `new entry(ctx, env)[name](arg)`. NO_HANDLER if it has none.
function runHandler(entry, name, arg, ctx) {
  if (entry === null || entry === undefined) return NO_HANDLER;
  if (isEntrypointClass(entry)) {
    const instance = new entry(ctx, workerEnv);
    const f = instance[name];
    return typeof f === "function" ? FunctionPrototypeCall(f, instance, arg) : NO_HANDLER;
  }
  const f = entry[name];
  return typeof f === "function" ? FunctionPrototypeCall(f, entry, arg, workerEnv, ctx) : NO_HANDLER;
}

// Request state of the one request this isolate runs at a time.
// The state of request `reqId` (its URL `href`), live from now on.
function openRequest(reqId, href) {
  const state = { pending: 0, idle: null, subrequests: 0, storageOps: 0, timers: null, incomingBody: null, href };
  liveRequests.set(reqId, state);
  return state;
}

// The inner request of a Request made from an incoming request. A class
// (accessors on its prototype) rather than deno_fetch's newInnerRequest
// object literal, whose accessors V8 defines anew for every request. Same
// shape as newInnerRequest's; headers come from Rust on first use.
class IncomingInnerRequest {
  constructor(reqId, method, href, body) {
    this.reqId = reqId;
    this.methodInner = method;
    this.headerListInner = null;
    this.body = body;
    this.redirectMode = "follow";
    this.redirectCount = 0;
    this.urlList = [() => href];
    this.urlListProcessed = [href];
    this.clientRid = null;
    this.blobUrlEntry = null;
    this.cfObject = undefined;
  }
  get method() {
    return this.methodInner;
  }
  set method(value) {
    this.methodInner = value;
  }
  // `request.cf`: what the server knew of the connection, and the
  // request's own Accept-Encoding; made once, when first read.
  get cf() {
    if (this.cfObject === undefined) {
      const json = op_edge_req_cf(this.reqId);
      this.cfObject = json === null ? undefined : JSONParse(json);
      if (this.cfObject !== undefined) {
        for (const { 0: name, 1: value } of new SafeArrayIterator(this.headerList)) {
          if (StringPrototypeToLowerCase(name) === "accept-encoding") {
            this.cfObject.clientAcceptEncoding = value;
            break;
          }
        }
      }
    }
    return this.cfObject;
  }
  get headerList() {
    if (this.headerListInner === null) {
      try {
        this.headerListInner = op_edge_req_headers(this.reqId);
      } catch {
        throw new TypeError("Cannot read headers: request closed");
      }
    }
    return this.headerListInner;
  }
  set headerList(value) {
    this.headerListInner = value;
  }
  url() {
    return this.urlListProcessed[0];
  }
  currentUrl() {
    const i = this.urlList.length - 1;
    if (this.urlListProcessed[i] === undefined) {
      this.urlListProcessed[i] = this.urlList[i]();
    }
    return this.urlListProcessed[i];
  }
}

function makeRequest(reqId, method, href, bodyLength, state) {
  let bodyInner = null;
  if (bodyLength !== 0) {
    bodyInner = new InnerBody(readableStreamForRid(op_edge_req_body(reqId)));
    // Its declared length: what `fetch(request)` sends it on with
    // (deno_fetch sends a stream of unknown length chunked).
    if (bodyLength > 0) bodyInner.length = bodyLength;
    state.incomingBody = bodyInner;
  }
  return fromInnerRequest(new IncomingInnerRequest(reqId, method, href, bodyInner), "immutable");
}

// Turns a Response into the tuple Rust reads:
// [status, headerList | null, body, waitUntilDone | undefined, true?]
// (the fifth only for a body encoded already).
// headerList null means the single default text/plain header. body is a
// string, a Uint8Array, a number (the rid of a stream resource) or null.
function serialize(res, state) {
  if (!ObjectPrototypeIsPrototypeOf(response.ResponsePrototype, res)) {
    throw new TypeError(
      "The handler did not return a Response (got " + typeof res + ")",
    );
  }
  const done = waitUntilDone(state);
  if (res[response.serveFastStatusKey] !== 0 && !res[response.serveFastConsumedKey]) {
    const kind = res[response.serveFastHeaderKindKey];
    if (kind === response.SERVE_FAST_HEADER_DEFAULT_TEXT) {
      res[response.serveFastConsumedKey] = true;
      return [res[response.serveFastStatusKey], null, res[response.serveFastBodyKey], done];
    }
  }
  const inner = response.toInnerResponseForDenoServe(res);
  if (inner.type === "error") {
    throw new TypeError("The handler returned Response.error()");
  }
  let out = null;
  const b = inner.body;
  if (b !== null) {
    const s = b.streamOrStatic;
    if (ObjectPrototypeIsPrototypeOf(ReadableStreamPrototype, s)) {
      const backing = streams.getReadableStreamResourceBacking(s);
      if (backing && !streams.isReadableStreamDisturbed(s) && !streams.isReadableStreamLocked(s)) {
        // An untouched stream over a Rust resource (the request body, a
        // fetch() response): Rust reads the resource itself, no JS runs.
        streams.readableStreamDisturb(s);
        out = backing.rid;
      } else {
        out = resourceForReadableStream(s, b.length);
      }
    } else {
      if (s.consumed) throw new TypeError("Response body already consumed");
      s.consumed = true;
      out = s.body;
    }
  }
  // Already encoded: said so, or a fetch() response that was not decoded.
  if (res[kEncodeManual] === true || (inner.urlList.length > 0 && !inner.bodyDecoded)) {
    return [inner.status, inner.headerList, out, done, true];
  }
  return [inner.status, inner.headerList, out, done];
}

function waitUntilDone(state) {
  if (state.pending === 0) return undefined;
  const { promise, resolve } = PromiseWithResolvers();
  state.idle = { resolve };
  return promise;
}

function errorTuple(err) {
  let message;
  try {
    message = err instanceof Error ? err.name + ": " + err.message : String(err);
  } catch {
    message = "<unprintable error>";
  }
  return [-1, message, formatError(err)];
}

function settle(r, state, reqId) {
  let out;
  try {
    out = serialize(r, state);
  } catch (err) {
    out = errorTuple(err);
  }
  // Nothing of the request runs after its answer (no stream body, no
  // waitUntil): it is over for JS now. Otherwise Rust calls finish().
  if (out[0] < 0 || (typeof out[2] !== "number" && out[3] === undefined)) {
    dropRequest(reqId);
  }
  return out;
}

// Called by Rust for every request. Returns the tuple, or a promise of it
// that never rejects (errors become `[-1, message, stack]`); a promise
// tells Rust when it settles (op_edge_settled). Runs with the async context
// set to the request's number, so that everything the handler starts is
// known to be this request's.
// Called by Rust at the top of an entry, where no request's code runs
// (the async context is undefined): it is left undefined again.
// A cron trigger's run passes its cron (a string) and scheduled time; a
// queue's delivery the queue's name; a request passes `undefined` for all.
// A service binding's request may name an entrypoint (a named export),
// and an RPC call the method to call on it.
function handle(reqId, method, href, bodyLength, cron, scheduledTime, queue, entrypoint, rpc) {
  setAsyncContext(reqId);
  try {
    if (cron !== undefined) return handleScheduled(reqId, href, cron, scheduledTime);
    if (queue !== undefined) return handleQueue(reqId, method, href, bodyLength);
    if (rpc !== undefined) return handleRpc(reqId, method, href, bodyLength, entrypoint, rpc);
    return handleIn(reqId, method, href, bodyLength, entrypoint);
  } finally {
    setAsyncContext(undefined);
  }
}

function handleIn(reqId, method, href, bodyLength, entrypoint) {
  const state = openRequest(reqId, href);
  let result;
  try {
    const req = makeRequest(reqId, method, href, bodyLength, state);
    const ctx = new ExecutionContext(state);
    if (handlerFetch !== null && entrypoint === undefined) {
      result = handlerFetch.call(handlerObject, req, workerEnv, ctx);
    } else if (handlerEntry !== null || entrypoint !== undefined) {
      result = runHandler(entryOf(entrypoint), "fetch", req, ctx);
      if (result === NO_HANDLER) {
        throw new TypeError(
          entrypoint === undefined
            ? "The worker has no fetch handler (its default export has no fetch())"
            : `The worker's entrypoint "${entrypoint}" has no fetch() method`,
        );
      }
    } else {
      result = dispatchFetchEvent(req, ctx);
    }
  } catch (err) {
    dropRequest(reqId);
    return errorTuple(err);
  }
  return settleResult(result, state, reqId);
}

// The handler's result (a Response or a promise of one) as the tuple.
function settleResult(result, state, reqId) {
  if (result !== null && typeof result === "object" && typeof result.then === "function") {
    return PromisePrototypeThen(
      Promise.resolve(result),
      (r) => {
        op_edge_settled(reqId);
        return settle(r, state, reqId);
      },
      (err) => {
        op_edge_settled(reqId);
        dropRequest(reqId);
        return errorTuple(err);
      },
    );
  }
  return settle(result, state, reqId);
}

// A cron trigger's run: answered as an empty 200 once scheduled() has
// settled (its waitUntil work keeps the run going, as a request's does),
// or as the error it threw.
function handleScheduled(reqId, href, cron, scheduledTime) {
  const state = openRequest(reqId, href);
  let result;
  try {
    const ctx = new ExecutionContext(state);
    const controller = new ScheduledController(kScheduled, cron, scheduledTime);
    if (handlerEntry === null && event.listenerCount(globalThis, "scheduled") > 0) {
      globalThis.dispatchEvent(new ScheduledEvent(kScheduled, controller, ctx));
    } else if ((result = runHandler(handlerEntry, "scheduled", controller, ctx)) === NO_HANDLER) {
      throw new TypeError(
        "The worker has no scheduled handler: export default { async scheduled(controller, env, ctx) { ... } }",
      );
    }
  } catch (err) {
    dropRequest(reqId);
    return errorTuple(err);
  }
  const done = () => new ResponseCtor(null);
  if (result !== null && typeof result === "object" && typeof result.then === "function") {
    return settleResult(PromisePrototypeThen(Promise.resolve(result), done), state, reqId);
  }
  return settle(done(), state, reqId);
}

// A queue's delivery: the batch is the request's body; `queue(batch, env,
// ctx)` runs on it, and the answer is each message's decision as JSON
// (status 500 and the error too if queue() threw).
function handleQueue(reqId, method, href, bodyLength) {
  if (handlerEntry === null) {
    return errorTuple(new TypeError(
      "The worker has no queue handler: export default { async queue(batch, env, ctx) { ... } }",
    ));
  }
  return answerWholeBody(reqId, method, href, bodyLength, async (buf, ctx) => {
    const { batch, decisions } = openBatch(buf);
    let error = null;
    try {
      if ((await runHandler(handlerEntry, "queue", batch, ctx)) === NO_HANDLER) {
        throw new TypeError("The worker has no queue handler: its default export has no queue()");
      }
    } catch (err) {
      error = err;
    }
    const body = JSONStringify({
      decisions: decisions(error !== null),
      error: error === null ? null : String(error?.stack ?? error),
    });
    return new ResponseCtor(body, { status: error === null ? 200 : 500 });
  });
}

// A request answered once its whole body is read: `answer(bytes, ctx)`
// makes the Response (queue deliveries, RPC calls).
function answerWholeBody(reqId, method, href, bodyLength, answer) {
  const state = openRequest(reqId, href);
  let result;
  try {
    const req = makeRequest(reqId, method, href, bodyLength, state);
    const ctx = new ExecutionContext(state);
    result = PromisePrototypeThen(req.arrayBuffer(), (buf) => answer(buf, ctx));
  } catch (err) {
    dropRequest(reqId);
    return errorTuple(err);
  }
  return settleResult(result, state, reqId);
}

// An RPC call through a service binding (`env.SVC.method(...args)`): the
// body is the arguments, structured-cloned; the answer is the method's
// value or what it threw, cloned the same way and marked by the
// `edge-rpc` header ("value" or "error"). Only a class extending
// WorkerEntrypoint takes calls, as on Workers; each call gets its own
// instance.
function handleRpc(reqId, method, href, bodyLength, entrypoint, name) {
  return answerWholeBody(reqId, method, href, bodyLength, async (buf, ctx) => {
    let value;
    let failed = false;
    try {
      const entry = entryOf(entrypoint);
      if (!isEntrypointClass(entry)) {
        throw new TypeError(
          "The worker's default export is not a class that extends WorkerEntrypoint: only such a class takes RPC calls",
        );
      }
      const args = core.deserialize(new Uint8Array(buf), { forStorage: true });
      const instance = new entry(ctx, workerEnv);
      value = await ReflectApply(rpcMethod(instance, name), instance, args);
    } catch (err) {
      value = err;
      failed = true;
    }
    let bytes;
    try {
      bytes = core.serialize(value, { forStorage: true });
    } catch (err) {
      const what = failed ? "thrown by" : "returned by";
      failed = true;
      bytes = core.serialize(
        new TypeError(`The value ${what} ${name}() cannot be sent over RPC: ${err?.message ?? err}`),
        { forStorage: true },
      );
    }
    return new ResponseCtor(bytes, { status: failed ? 500 : 200, headers: { "edge-rpc": failed ? "error" : "value" } });
  });
}

// Called by Rust when a request has ended (answered, and its body and
// waitUntil work done, or given up on).
function finish(reqId) {
  dropRequest(reqId);
}

function dispatchFetchEvent(req, ctx) {
  let responded = null;
  const ev = new FetchEvent("fetch", {
    request: req,
    ctx,
    respond: (r) => {
      responded = r;
    },
  });
  globalThis.dispatchEvent(ev);
  if (responded === null) {
    throw new TypeError(
      "No fetch handler responded: export default { fetch } or call event.respondWith()",
    );
  }
  return responded;
}

// ---- storage bindings: calls per request, as on Workers (1000 KV
// operations an invocation), and only from a live request.
const MAX_STORAGE_OPS = 1000;
// `what` names the call in the error ("KV GET", "D1"); `failed` its
// failure's prefix.
function admitStorage(what, failed) {
  const state = liveRequests.get(currentRequest());
  if (state === undefined) {
    throw new TypeError(
      `${what} from code whose request has ended: use ctx.waitUntil() for work after the response`,
    );
  }
  if (++state.storageOps > MAX_STORAGE_OPS) {
    throw new Error(`${failed} Too many API requests by single worker invocation.`);
  }
}
setKvAdmission((op) => admitStorage(`KV ${op}`, `KV ${op} failed: 429`));
setD1Admission(() => admitStorage("D1", "D1_ERROR:"));
setR2Admission((op) => admitStorage(`R2 ${op}`, `${op}: 429`));
setQueueAdmission((what) => admitStorage(what, `${what} failed: 429`));
// The Cache API's zone: the host of the request a call belongs to.
setCacheZone(() => {
  admitStorage("Cache API", "Cache API:");
  const state = liveRequests.get(currentRequest());
  return new url.URL(state.href).hostname;
});

// Called once per isolate, before its main module evaluates: the worker's
// env (also `env` of `cloudflare:workers`). `vars` are the worker's vars;
// `kv`, `d1`, `services`, `r2` and `queues` the names of its KV, D1,
// service, R2 and queue bindings, in the order of the isolate's tables.
// `nodeCompat`: the worker has nodejs_compat (a `process` global, its env
// the text vars and secrets).
function prepare(vars, maxSubrequests, longest = undefined, kv = [], d1 = [], services = [], r2 = [], queues = [], nodeCompat = false) {
  subrequestLimit = maxSubrequests;
  if (nodeCompat) {
    setProcessEnv(vars);
    ObjectDefineProperty(globalThis, "process", { value: nodeProcess, writable: true, configurable: true });
    ObjectDefineProperty(globalThis, "Buffer", { value: NodeBuffer, writable: true, configurable: true });
  }
  if (longest !== undefined) setLongestArray(longest);
  const bindings = { ...vars };
  for (let i = 0; i < kv.length; i++) bindings[kv[i]] = kvNamespace(i);
  for (let i = 0; i < d1.length; i++) bindings[d1[i]] = d1Database(i);
  for (let i = 0; i < services.length; i++) bindings[services[i]] = fetcher(i);
  for (let i = 0; i < r2.length; i++) bindings[r2[i]] = r2Bucket(i);
  for (let i = 0; i < queues.length; i++) bindings[queues[i]] = queueBinding(i);
  workerEnv = ObjectFreeze(bindings);
  workersModule.setEnv(workerEnv);
}

// Called once per isolate, after its main module evaluated. `ns` is the main
// module's namespace; `consumer` whether the worker consumes a queue.
function bind(ns, consumer = false) {
  const def = ns.default;
  workerNamespace = ns;
  if (isEntrypointClass(def)) {
    // Handlers are found on each request's instance (class fields too).
    handlerEntry = def;
    return "module";
  }
  if (consumer && (def === undefined || def === null || typeof def.queue !== "function")) {
    throw new TypeError(
      "The worker consumes a queue but has no queue handler: export default { async queue(batch, env, ctx) { ... } }",
    );
  }
  if (def !== undefined && def !== null && (typeof def.fetch === "function" || typeof def.scheduled === "function" || typeof def.queue === "function")) {
    handlerEntry = def;
    handlerObject = def;
    handlerFetch = typeof def.fetch === "function" ? def.fetch : null;
    return "module";
  }
  if (typeof def === "function") {
    throw new TypeError(
      "The worker's default export is a class that does not extend WorkerEntrypoint: import { WorkerEntrypoint } from \"cloudflare:workers\" and export default class extends WorkerEntrypoint { ... }",
    );
  }
  if (event.listenerCount(globalThis, "fetch") > 0 || event.listenerCount(globalThis, "scheduled") > 0) {
    // Service-worker syntax: vars are globals, as on Workers.
    for (const k of new SafeArrayIterator(ObjectKeys(workerEnv))) {
      ObjectDefineProperty(globalThis, k, { value: workerEnv[k], writable: false, configurable: true });
    }
    return "service-worker";
  }
  throw new TypeError(
    "The worker has no fetch handler: export default { async fetch(request, env, ctx) { ... } } or addEventListener(\"fetch\", ...)",
  );
}

// Per isolate, at creation from the snapshot (not kept by the snapshot).
function init() {
  installWasmMemoryAccounting();
  installHashNames(cryptoMod.SubtleCrypto.prototype);
  installFastRsa(cryptoMod.SubtleCrypto.prototype);
  installOffthreadCrypto();
  installTimingSafeEqual(cryptoMod.SubtleCrypto.prototype);
  performance.setTimeOrigin();
  event.setEventTargetData(globalThis);
  event.saveGlobalThisReference(globalThis);
  core.setWasmStreamingCallback(fetchMod.handleWasmStreaming);
  core.setUnhandledPromiseRejectionHandler((_promise, reason) => {
    reportRejection(reason);
    return true;
  });
  core.setReportExceptionCallback((err) => {
    op_edge_log(3, "Uncaught " + formatError(err), currentRequest());
  });
  delete globalThis.Deno;
  delete globalThis.__bootstrap;
  delete globalThis.__edgeInternal;
}


// Exercises the request path once while the snapshot is made, so that V8
// keeps its compiled code in the snapshot and every isolate skips
// compiling it on its first request. Uses no ops and leaves no state.
function warmup() {
  const worker = {
    fetch(request, env) {
      const h = new Headers({ "content-type": "text/plain" });
      h.set("x-a", env.A);
      void request.method;
      // What most handlers touch first: the URL and its parts.
      const url = new URL(request.url);
      void url.hostname;
      void url.pathname;
      void url.searchParams.get("q");
      return new Response("warm " + url.href, { status: 201, headers: h });
    },
  };
  prepare({}, 1);
  bind({ default: { fetch: () => new Response("warm") } });
  for (let i = 0; i < 3; i++) {
    handle(0, "GET", "http://warm.example/", false);
  }
  prepare({ A: "a" }, 1);
  bind({ default: worker });
  for (let i = 0; i < 3; i++) {
    handle(0, "POST", "http://warm.example/path?q=1", false);
    void JSON.stringify({ a: [1, "b"] });
    void new TextDecoder().decode(new TextEncoder().encode("warm"));
  }
  prepare({}, 1);
  bind({ default: { fetch: () => Response.json({ ok: true, n: 1 }) } });
  for (let i = 0; i < 3; i++) {
    handle(0, "GET", "http://warm.example/json", false);
  }
  handlerEntry = null;
  handlerObject = null;
  handlerFetch = null;
  workerNamespace = null;
  workerEnv = null;
  workersModule.setEnv({});
  liveRequests.clear();
  keepLiveRequestsRoomy();
  subrequestLimit = 50;
}

// deno_crypto keeps the symbols it brands CryptoKeys with in a Rust
// thread-local, set by whichever isolate registered last; several isolates
// share a thread here, and a key branded with another isolate's symbol
// aborts the process. runtime.rs calls this whenever an isolate is entered
// after another one on the thread had them.
function registerCryptoSymbols() {
  cryptoMod.Crypto.registerSymbols(webidl.brand, internals.kKeyObject);
}

ObjectDefineProperty(globalThis, "__edgeInternal", {
  value: { init, prepare, bind, handle, finish, formatError, registerCryptoSymbols },
  enumerable: false,
  configurable: true,
  writable: false,
});

warmup();
