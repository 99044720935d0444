// `node:util` (with `compatibility_flags = ["nodejs_compat"]`): what
// Workers code reaches for most: `format` and `inspect` (deno's console
// formatter), `promisify`, `callbackify`, `inherits`, `deprecate`,
// `types`, `debuglog`, and the text codecs.

import { core, primordials } from "ext:core/mod.js";

const {
  ArrayBufferIsView,
  ObjectDefineProperty,
  ObjectGetPrototypeOf,
  ObjectPrototypeToString,
  ObjectSetPrototypeOf,
  Promise,
  ReflectApply,
  SymbolFor,
  TypeError,
} = primordials;

const consoleMod = core.loadExtScript("ext:deno_web/01_console.js");
const encoding = core.loadExtScript("ext:deno_web/08_text_encoding.js");

export const TextEncoder = encoding.TextEncoder;
export const TextDecoder = encoding.TextDecoder;

export function format(...args) {
  return consoleMod.inspectArgs(args, { colors: false });
}

export function formatWithOptions(options, ...args) {
  return consoleMod.inspectArgs(args, { ...options, colors: false });
}

export function inspect(value, options = undefined) {
  return consoleMod.inspect(value, { colors: false, ...(typeof options === "object" ? options : {}) });
}
inspect.custom = SymbolFor("nodejs.util.inspect.custom");

const kCustomPromisify = SymbolFor("nodejs.util.promisify.custom");

export function promisify(original) {
  if (typeof original !== "function") {
    throw new TypeError(`The "original" argument must be of type function. Received ${typeof original}`);
  }
  if (typeof original[kCustomPromisify] === "function") return original[kCustomPromisify];
  function fn(...args) {
    return new Promise((resolve, reject) => {
      ReflectApply(original, this, [...args, (err, value) => (err ? reject(err) : resolve(value))]);
    });
  }
  ObjectSetPrototypeOf(fn, ObjectGetPrototypeOf(original));
  ObjectDefineProperty(fn, kCustomPromisify, { value: fn, enumerable: false, configurable: true });
  return fn;
}
promisify.custom = kCustomPromisify;

export function callbackify(original) {
  if (typeof original !== "function") {
    throw new TypeError(`The "original" argument must be of type function. Received ${typeof original}`);
  }
  return function (...args) {
    const callback = args.pop();
    if (typeof callback !== "function") throw new TypeError('The last argument must be of type function.');
    ReflectApply(original, this, args).then(
      (v) => queueMicrotask(() => callback(null, v)),
      (e) => queueMicrotask(() => callback(e ?? new Error("Promise was rejected with a falsy value"))),
    );
  };
}

export function inherits(ctor, superCtor) {
  if (typeof ctor !== "function" || typeof superCtor !== "function" || superCtor.prototype === undefined) {
    throw new TypeError("inherits() takes two constructors");
  }
  ObjectDefineProperty(ctor, "super_", { value: superCtor, writable: true, configurable: true });
  ObjectSetPrototypeOf(ctor.prototype, superCtor.prototype);
}

export function deprecate(fn, message, code = undefined) {
  let warned = false;
  return function (...args) {
    if (!warned) {
      warned = true;
      globalThis.console?.warn(`(node) DeprecationWarning${code ? ` [${code}]` : ""}: ${message}`);
    }
    return new.target ? Reflect.construct(fn, args, new.target) : ReflectApply(fn, this, args);
  };
}

export function debuglog(_section) {
  const log = () => {};
  log.enabled = false;
  return log;
}

const tag = (v) => ObjectPrototypeToString(v);
export const types = {
  isPromise: (v) => v instanceof Promise,
  isDate: (v) => tag(v) === "[object Date]",
  isRegExp: (v) => tag(v) === "[object RegExp]",
  isMap: (v) => tag(v) === "[object Map]",
  isSet: (v) => tag(v) === "[object Set]",
  isWeakMap: (v) => tag(v) === "[object WeakMap]",
  isWeakSet: (v) => tag(v) === "[object WeakSet]",
  isArrayBuffer: (v) => tag(v) === "[object ArrayBuffer]",
  isSharedArrayBuffer: (v) => tag(v) === "[object SharedArrayBuffer]",
  isAnyArrayBuffer: (v) => tag(v) === "[object ArrayBuffer]" || tag(v) === "[object SharedArrayBuffer]",
  isArrayBufferView: (v) => ArrayBufferIsView(v),
  isTypedArray: (v) => ArrayBufferIsView(v) && tag(v) !== "[object DataView]",
  isUint8Array: (v) => tag(v) === "[object Uint8Array]",
  isDataView: (v) => tag(v) === "[object DataView]",
  isNativeError: (v) => tag(v) === "[object Error]",
  isAsyncFunction: (v) => tag(v) === "[object AsyncFunction]" || tag(v) === "[object AsyncGeneratorFunction]",
  isGeneratorFunction: (v) => tag(v) === "[object GeneratorFunction]" || tag(v) === "[object AsyncGeneratorFunction]",
  isGeneratorObject: (v) => tag(v) === "[object Generator]",
};

export const isArray = Array.isArray;

export default {
  TextDecoder,
  TextEncoder,
  callbackify,
  debuglog,
  deprecate,
  format,
  formatWithOptions,
  inherits,
  inspect,
  isArray,
  promisify,
  types,
};
