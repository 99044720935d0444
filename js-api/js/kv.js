// KV namespace bindings (`env.NAME` for a `[[worker.kv]]`): Cloudflare's
// KVNamespace over the ops of src/ext/kv.rs, which check each call the way
// Cloudflare's KV does. A value read is copied into a buffer made here, so
// it counts in the isolate's memory like any other.

import { core, primordials } from "ext:core/mod.js";

const {
  ArrayBufferIsView,
  ArrayBufferPrototypeGetByteLength,
  ArrayPrototypePush,
  ArrayPrototypeMap,
  ArrayIsArray,
  DataViewPrototypeGetBuffer,
  DataViewPrototypeGetByteLength,
  DataViewPrototypeGetByteOffset,
  JSONParse,
  JSONStringify,
  Number,
  Error,
  ObjectPrototypeIsPrototypeOf,
  SafeMap,
  String,
  SymbolToStringTag,
  TypeError,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetByteOffset,
  TypedArrayPrototypeGetSymbolToStringTag,
  TypedArrayPrototypeSet,
  TypedArrayPrototypeSlice,
  Uint8Array,
} = primordials;
const { op_edge_kv_get, op_edge_kv_take, op_edge_kv_put, op_edge_kv_delete, op_edge_kv_list } = core.ops;

const { TextEncoder, TextDecoder } = core.loadExtScript("ext:deno_web/08_text_encoding.js");
const { ReadableStream, ReadableStreamPrototype } = core.loadExtScript("ext:deno_web/06_streams.js");

/** Cloudflare's value limit (checked in Rust too; here before a copy). */
const MAX_VALUE = 25 * 1024 * 1024;
/** Keys one bulk get may name (Cloudflare's). */
const MAX_BULK_KEYS = 100;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function typeOf(options) {
  if (options === undefined || options === null) return { type: "text", cacheTtl: undefined };
  if (typeof options === "string") return { type: options, cacheTtl: undefined };
  return { type: options.type ?? "text", cacheTtl: options.cacheTtl };
}

function checkType(type) {
  if (type !== "text" && type !== "json" && type !== "arrayBuffer" && type !== "stream") {
    throw new TypeError(
      'Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream".',
    );
  }
}

// The bytes of a value read, in a buffer of this isolate.
function take(got) {
  const buf = new Uint8Array(got.length);
  op_edge_kv_take(got.handle, buf);
  return buf;
}

function shape(buf, type) {
  switch (type) {
    case "text":
      return decoder.decode(buf);
    case "json":
      return JSONParse(decoder.decode(buf));
    case "arrayBuffer":
      return TypedArrayPrototypeGetBuffer(buf);
    default:
      return new ReadableStream({
        type: "bytes",
        start(c) {
          if (TypedArrayPrototypeGetByteLength(buf) > 0) c.enqueue(buf);
          c.close();
        },
      });
  }
}

/** The bytes a typed array or DataView sees (not copied). */
export function bytesOfView(v) {
  if (TypedArrayPrototypeGetSymbolToStringTag(v) !== undefined) {
    return new Uint8Array(TypedArrayPrototypeGetBuffer(v), TypedArrayPrototypeGetByteOffset(v), TypedArrayPrototypeGetByteLength(v));
  }
  return new Uint8Array(DataViewPrototypeGetBuffer(v), DataViewPrototypeGetByteOffset(v), DataViewPrototypeGetByteLength(v));
}

function tooLong(length) {
  return new Error(`KV PUT failed: 413 Value length of ${length} exceeds limit of ${MAX_VALUE}.`);
}

async function readAll(stream) {
  const reader = stream.getReader();
  const chunks = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!ArrayBufferIsView(value)) {
      reader.releaseLock();
      throw new TypeError("KV put() streams must give Uint8Array chunks");
    }
    const bytes = bytesOfView(value);
    length += TypedArrayPrototypeGetByteLength(bytes);
    if (length > MAX_VALUE) {
      await reader.cancel();
      throw tooLong(length);
    }
    ArrayPrototypePush(chunks, TypedArrayPrototypeSlice(bytes));
  }
  const all = new Uint8Array(length);
  let at = 0;
  for (let i = 0; i < chunks.length; i++) {
    TypedArrayPrototypeSet(all, chunks[i], at);
    at += TypedArrayPrototypeGetByteLength(chunks[i]);
  }
  return all;
}

async function valueBytes(value) {
  if (typeof value === "string") {
    // UTF-8 is at most 3 bytes per UTF-16 unit: refuse before encoding.
    if (value.length > MAX_VALUE) throw tooLong(value.length);
    return encoder.encode(value);
  }
  if (ObjectPrototypeIsPrototypeOf(ReadableStreamPrototype, value)) return await readAll(value);
  if (ArrayBufferIsView(value)) return bytesOfView(value);
  try {
    ArrayBufferPrototypeGetByteLength(value);
    return new Uint8Array(value);
  } catch {
    throw new TypeError(
      "KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as values.",
    );
  }
}

function parseMetadata(m) {
  return m === null || m === undefined ? null : JSONParse(m);
}

/** The per-request gate: throws when the request may make no more calls. */
let admit = (_op) => {};

/** Set by the bootstrap (it knows the request a call belongs to). */
export function setKvAdmission(fn) {
  admit = fn;
}

class KvNamespace {
  #index;

  constructor(index) {
    this.#index = index;
  }

  async get(key, options = undefined) {
    const { type, cacheTtl } = typeOf(options);
    checkType(type);
    if (ArrayIsArray(key)) {
      if (key.length > MAX_BULK_KEYS) {
        throw new TypeError(`KV GET_BULK failed: 400 You can request a maximum of ${MAX_BULK_KEYS} keys`);
      }
      if (type === "stream" || type === "arrayBuffer") {
        throw new TypeError(`KV GET_BULK failed: 400 "${type}" is not a valid type. Use "json" or "text"`);
      }
      admit("GET_BULK");
      const out = new SafeMap();
      const keys = ArrayPrototypeMap(key, (k) => String(k));
      for (let i = 0; i < keys.length; i++) {
        const got = await op_edge_kv_get(this.#index, keys[i], cacheTtl !== undefined, Number(cacheTtl));
        out.set(keys[i], got === null ? null : shape(take(got), type));
      }
      return out;
    }
    admit("GET");
    const got = await op_edge_kv_get(this.#index, String(key), cacheTtl !== undefined, Number(cacheTtl));
    if (got === null) return null;
    return shape(take(got), type);
  }

  async getWithMetadata(key, options = undefined) {
    const { type, cacheTtl } = typeOf(options);
    checkType(type);
    admit("GET");
    const got = await op_edge_kv_get(this.#index, String(key), cacheTtl !== undefined, Number(cacheTtl));
    if (got === null) return { value: null, metadata: null, cacheStatus: null };
    const value = shape(take(got), type);
    return { value, metadata: parseMetadata(got.metadata), cacheStatus: null };
  }

  async put(key, value, options = undefined) {
    admit("PUT");
    key = String(key);
    const bytes = await valueBytes(value);
    if (TypedArrayPrototypeGetByteLength(bytes) > MAX_VALUE) throw tooLong(TypedArrayPrototypeGetByteLength(bytes));
    const metadata = options?.metadata === undefined ? undefined : JSONStringify(options.metadata);
    const expiration = options?.expiration === undefined ? undefined : Number(options.expiration);
    const expirationTtl = options?.expirationTtl === undefined ? undefined : Number(options.expirationTtl);
    await op_edge_kv_put(this.#index, key, bytes, { expiration, expirationTtl, metadata });
  }

  async delete(key) {
    admit("DELETE");
    await op_edge_kv_delete(this.#index, String(key));
  }

  async list(options = undefined) {
    admit("LIST");
    const prefix = options?.prefix === undefined || options.prefix === null ? undefined : String(options.prefix);
    const limit = options?.limit === undefined ? undefined : Number(options.limit);
    const cursor = options?.cursor === undefined || options.cursor === null ? undefined : String(options.cursor);
    const page = await op_edge_kv_list(this.#index, { prefix, limit, cursor });
    const keys = ArrayPrototypeMap(page.keys, (k) => {
      const key = { name: k.name };
      if (k.expiration !== null) key.expiration = k.expiration;
      if (k.metadata !== null) key.metadata = JSONParse(k.metadata);
      return key;
    });
    const out = { keys, list_complete: page.cursor === null, cacheStatus: null };
    if (page.cursor !== null) out.cursor = page.cursor;
    return out;
  }

  get [SymbolToStringTag]() {
    return "KvNamespace";
  }
}

export function kvNamespace(index) {
  return new KvNamespace(index);
}
