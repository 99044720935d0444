// WebCrypto beside workerd's: hash names taken in any case, RSA keys made
// on aws-lc (src/ext/rsa.rs) where deno_crypto's `rsa` crate is 10-20x
// slower, and crypto.subtle.timingSafeEqual, a Workers extension.
// Installed per isolate (SubtleCrypto's prototype is made with each),
// before the off-thread meter wraps the methods.

import { core, primordials } from "ext:core/mod.js";

const {
  ArrayBufferIsView,
  ArrayBufferPrototype,
  ArrayIsArray,
  ArrayPrototypeFilter,
  ArrayPrototypeIncludes,
  DataView,
  DataViewPrototypeGetUint32,
  ObjectCreate,
  ObjectDefineProperty,
  ObjectPrototypeIsPrototypeOf,
  ReflectApply,
  StringPrototypeToUpperCase,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteOffset,
  TypedArrayPrototypeGetSymbolToStringTag,
  TypedArrayPrototypeSubarray,
  TypeError,
  Uint8Array,
} = primordials;
const { op_edge_rsa_generate } = core.ops;

const webidl = core.loadExtScript("ext:deno_webidl/00_webidl.js");

// Per RSA algorithm: the usages of the private key, of the public key.
const RSA = [
  ["RSASSA-PKCS1-v1_5", ["sign"], ["verify"]],
  ["RSA-PSS", ["sign"], ["verify"]],
  ["RSA-OAEP", ["decrypt", "unwrapKey"], ["encrypt", "wrapKey"]],
];
const HASHES = ["SHA-1", "SHA-256", "SHA-384", "SHA-512"];

function canonical(name, names) {
  if (typeof name !== "string") return null;
  const up = StringPrototypeToUpperCase(name);
  for (let i = 0; i < names.length; i++) {
    if (StringPrototypeToUpperCase(names[i]) === up) return names[i];
  }
  return null;
}

// An RSA generateKey with usages the spec allows, its names canonical:
// else null, and deno_crypto's generateKey runs as asked (raising the
// errors the spec names). `fast`: aws-lc makes this key.
function rsaRequest(algorithm, usages) {
  if (typeof algorithm !== "object" || algorithm === null) return null;
  const name = canonical(algorithm.name, [RSA[0][0], RSA[1][0], RSA[2][0]]);
  if (name === null) return null;
  const bits = algorithm.modulusLength;
  const e = algorithm.publicExponent;
  if (!ArrayBufferIsView(e) || TypedArrayPrototypeGetSymbolToStringTag(e) !== "Uint8Array") return null;
  const fast = (bits === 2048 || bits === 3072 || bits === 4096) &&
    e.length === 3 && e[0] === 1 && e[1] === 0 && e[2] === 1;
  const h = algorithm.hash;
  const hash = canonical(typeof h === "object" && h !== null ? h.name : h, HASHES);
  if (hash === null || !ArrayIsArray(usages)) return null;
  let privAllowed, pubAllowed;
  for (let i = 0; i < RSA.length; i++) {
    if (RSA[i][0] === name) [, privAllowed, pubAllowed] = RSA[i];
  }
  for (let i = 0; i < usages.length; i++) {
    const u = usages[i];
    if (!ArrayPrototypeIncludes(privAllowed, u) && !ArrayPrototypeIncludes(pubAllowed, u)) return null;
  }
  const priv = ArrayPrototypeFilter(privAllowed, (u) => ArrayPrototypeIncludes(usages, u));
  const pub = ArrayPrototypeFilter(pubAllowed, (u) => ArrayPrototypeIncludes(usages, u));
  // No private usage is a SyntaxError: deno_crypto's to raise.
  if (priv.length === 0) return null;
  return { name, bits, hash, priv, pub, fast };
}

// `algorithm` with its `hash` named as the spec's registry names it, or
// itself. Algorithm names are case-insensitive, but deno_crypto keeps a
// hash named "sha-256" as given in importKey (its HMAC and RSA keys then
// fail to sign: "key is missing 'hash'") and refuses it in PBKDF2 and
// HKDF params. The copy inherits every other member from the original, so
// each is still read once, by deno_crypto.
function withHashName(algorithm) {
  if (typeof algorithm !== "object" || algorithm === null) return algorithm;
  const h = algorithm.hash;
  const given = typeof h === "object" && h !== null ? h.name : h;
  const name = canonical(given, HASHES);
  if (name === null || name === given) return algorithm;
  const copy = ObjectCreate(algorithm);
  ObjectDefineProperty(copy, "hash", { value: name, writable: true, enumerable: true, configurable: true });
  return copy;
}

// Per method, the arguments that are algorithms.
const ALGORITHM_ARGS = [
  ["encrypt", [0]],
  ["decrypt", [0]],
  ["sign", [0]],
  ["verify", [0]],
  ["generateKey", [0]],
  ["importKey", [2]],
  ["deriveBits", [0]],
  ["deriveKey", [0, 2]],
  ["wrapKey", [3]],
  ["unwrapKey", [3, 4]],
];

export function installHashNames(proto) {
  for (let m = 0; m < ALGORITHM_ARGS.length; m++) {
    const [method, at] = ALGORITHM_ARGS[m];
    const orig = proto[method];
    if (typeof orig !== "function") continue;
    const wrapped = {
      [method](...args) {
        try {
          for (let i = 0; i < at.length; i++) {
            if (at[i] < args.length) args[at[i]] = withHashName(args[at[i]]);
          }
        } catch {
          // A getter that throws: deno_crypto reads it again and rejects.
          return ReflectApply(orig, this, arguments);
        }
        return ReflectApply(orig, this, args);
      },
    }[method];
    ObjectDefineProperty(wrapped, "length", { value: orig.length });
    ObjectDefineProperty(proto, method, { value: wrapped, writable: true, enumerable: true, configurable: true });
  }
}

export function installFastRsa(proto) {
  const generateKey = proto.generateKey;
  const importKey = proto.importKey;
  const wrapped = {
    generateKey(algorithm, extractable, keyUsages) {
      const rsa = arguments.length >= 3 && ObjectPrototypeIsPrototypeOf(proto, this)
        ? rsaRequest(algorithm, keyUsages)
        : null;
      // What aws-lc does not make goes to deno_crypto (its hash named by
      // installHashNames, installed beneath this).
      if (rsa === null || !rsa.fast) return ReflectApply(generateKey, this, arguments);
      const fast = rsa;
      const ext = !!extractable;
      const subtle = this;
      return (async () => {
        const both = await op_edge_rsa_generate(fast.bits);
        const n = DataViewPrototypeGetUint32(
          new DataView(TypedArrayPrototypeGetBuffer(both), TypedArrayPrototypeGetByteOffset(both), 4),
          0,
        );
        const alg = { name: fast.name, hash: fast.hash };
        const privateKey = await ReflectApply(importKey, subtle, [
          "pkcs8",
          TypedArrayPrototypeSubarray(both, 4, 4 + n),
          alg,
          ext,
          fast.priv,
        ]);
        const publicKey = await ReflectApply(importKey, subtle, [
          "spki",
          TypedArrayPrototypeSubarray(both, 4 + n),
          alg,
          true,
          fast.pub,
        ]);
        return { publicKey, privateKey };
      })();
    },
  }.generateKey;
  ObjectDefineProperty(wrapped, "length", { value: generateKey.length });
  ObjectDefineProperty(proto, "generateKey", {
    value: wrapped,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}

// crypto.subtle.timingSafeEqual(a, b), a Workers extension auth code uses:
// whether two buffers hold the same bytes, in time that depends on their
// length only (every byte is compared); a TypeError for buffers of
// different lengths, as on workerd.
export function installTimingSafeEqual(proto) {
  const bytesOf = (v, n) => {
    if (ArrayBufferIsView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    if (ObjectPrototypeIsPrototypeOf(ArrayBufferPrototype, v)) return new Uint8Array(v);
    throw new TypeError(
      `Failed to execute 'timingSafeEqual' on 'SubtleCrypto': parameter ${n} is not of type 'ArrayBuffer or ArrayBufferView'.`,
    );
  };
  const timingSafeEqual = {
    timingSafeEqual(a, b) {
      webidl.assertBranded(this, proto);
      const x = bytesOf(a, 1);
      const y = bytesOf(b, 2);
      if (x.length !== y.length) throw new TypeError("Input buffers must have the same byte length");
      let diff = 0;
      for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
      return diff === 0;
    },
  }.timingSafeEqual;
  ObjectDefineProperty(proto, "timingSafeEqual", {
    value: timingSafeEqual,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}
