// R2 bucket bindings (`env.NAME` for a `[[worker.r2]]`): Cloudflare's
// R2Bucket, R2Object, R2ObjectBody and R2MultipartUpload over the ops of
// src/ext/r2.rs. Bodies move in pieces: a put hands its value to Rust a
// piece at a time, a body is read a range at a time as it is consumed.

import { core, primordials } from "ext:core/mod.js";
import { bytesOfView } from "ext:edge_runtime/kv.js";

const {
  ArrayBufferIsView,
  ArrayBufferPrototype,
  ArrayIsArray,
  ArrayPrototypeIncludes,
  ArrayPrototypeMap,
  Date,
  DatePrototypeGetTime,
  Error,
  JSONParse,
  JSONStringify,
  MathMin,
  Number,
  NumberIsInteger,
  ObjectEntries,
  ObjectPrototypeIsPrototypeOf,
  String,
  StringPrototypeToLowerCase,
  Symbol,
  SymbolToStringTag,
  TypeError,
  TypedArrayPrototypeSet,
  TypedArrayPrototypeSubarray,
  Uint8Array,
} = primordials;
const {
  op_edge_r2_head,
  op_edge_r2_get,
  op_edge_r2_read,
  op_edge_r2_stage,
  op_edge_r2_append,
  op_edge_r2_discard,
  op_edge_r2_commit,
  op_edge_r2_delete,
  op_edge_r2_list,
  op_edge_r2_create_multipart,
  op_edge_r2_commit_part,
  op_edge_r2_complete,
  op_edge_r2_abort,
  op_edge_kv_take,
} = core.ops;

const { TextEncoder } = core.loadExtScript("ext:deno_web/08_text_encoding.js");
const { ReadableStream, ReadableStreamPrototype } = core.loadExtScript("ext:deno_web/06_streams.js");
const { Blob, BlobPrototype } = core.loadExtScript("ext:deno_web/09_file.js");
const { Headers } = core.loadExtScript("ext:deno_fetch/20_headers.js");
const { Response } = core.loadExtScript("ext:deno_fetch/23_response.js");

/** Pieces handed to Rust at once (a stream's are gathered up to this). */
const PIECE = 256 * 1024;
/** A body is read this much at a time. */
const READ = 256 * 1024;

// Set by the bootstrap: counts a call against the request's storage ops
// (throws past the limit or outside a live request).
let admit = () => {};
export function setR2Admission(fn) {
  admit = fn;
}

const kKey = Symbol("R2");

function bytesOf(value, what) {
  if (typeof value === "string") return new TextEncoder().encode(value);
  if (ObjectPrototypeIsPrototypeOf(ArrayBufferPrototype, value)) return new Uint8Array(value);
  if (ArrayBufferIsView(value)) return bytesOfView(value);
  throw new TypeError(`${what}: expected a string, an ArrayBuffer, a view, a Blob or a ReadableStream`);
}

function hexOf(value) {
  if (typeof value === "string") return StringPrototypeToLowerCase(value);
  const b = bytesOf(value, "md5");
  let out = "";
  for (let i = 0; i < b.length; i++) out += (b[i] < 16 ? "0" : "") + b[i].toString(16);
  return out;
}

function bytesOfHex(hex) {
  const out = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out.buffer;
}

// ---- metadata

const HTTP_FIELDS = [
  ["contentType", "content-type"],
  ["contentLanguage", "content-language"],
  ["contentDisposition", "content-disposition"],
  ["contentEncoding", "content-encoding"],
  ["cacheControl", "cache-control"],
];

function httpMetadataJson(m) {
  if (m === undefined || m === null) return "";
  const out = {};
  if (ObjectPrototypeIsPrototypeOf(Headers.prototype, m)) {
    for (const { 0: field, 1: header } of HTTP_FIELDS) {
      const v = m.get(header);
      if (v !== null) out[field] = v;
    }
    const expires = m.get("expires");
    if (expires !== null) out.cacheExpiry = new Date(expires).getTime();
  } else {
    for (const { 0: field } of HTTP_FIELDS) {
      if (m[field] !== undefined) out[field] = String(m[field]);
    }
    if (m.cacheExpiry !== undefined) out.cacheExpiry = DatePrototypeGetTime(new Date(m.cacheExpiry));
  }
  return JSONStringify(out);
}

function httpMetadataOf(json) {
  const m = json === "" ? {} : JSONParse(json);
  if (m.cacheExpiry !== undefined) m.cacheExpiry = new Date(m.cacheExpiry);
  return m;
}

function customMetadataJson(m) {
  if (m === undefined || m === null) return "";
  const out = {};
  for (const { 0: k, 1: v } of ObjectEntries(m)) out[k] = String(v);
  return JSONStringify(out);
}

// `onlyIf`: an object or Headers, as R2 takes it.
function onlyIfOf(c) {
  const out = {};
  if (c === undefined || c === null) return out;
  const list = (v) => (v === undefined || v === null ? undefined : ArrayIsArray(v) ? ArrayPrototypeMap(v, String) : [String(v)]);
  const time = (v) => (v === undefined || v === null ? undefined : DatePrototypeGetTime(new Date(v)));
  if (ObjectPrototypeIsPrototypeOf(Headers.prototype, c)) {
    const split = (h) => (h === null ? undefined : h.split(",").map((s) => s.trim().replace(/^W\//, "")));
    out.etagMatches = split(c.get("if-match"));
    out.etagDoesNotMatch = split(c.get("if-none-match"));
    const since = c.get("if-modified-since");
    const unmodified = c.get("if-unmodified-since");
    // HTTP dates are to the second: R2 compares at that precision.
    if (since !== null) out.uploadedAfter = time(since) + 999;
    if (unmodified !== null) out.uploadedBefore = time(unmodified) + 1000;
    return out;
  }
  out.etagMatches = list(c.etagMatches);
  out.etagDoesNotMatch = list(c.etagDoesNotMatch);
  out.uploadedBefore = time(c.uploadedBefore);
  out.uploadedAfter = time(c.uploadedAfter);
  return out;
}

// ---- objects

class R2Object {
  constructor(key, meta, range = undefined) {
    if (key !== kKey) throw new TypeError("Illegal constructor");
    this.key = meta.key;
    this.version = meta.version;
    this.size = meta.size;
    this.etag = meta.etag;
    this.httpEtag = `"${meta.etag}"`;
    this.uploaded = new Date(meta.uploaded);
    this.httpMetadata = httpMetadataOf(meta.httpMetadata);
    this.customMetadata = meta.customMetadata === "" ? {} : JSONParse(meta.customMetadata);
    const sums = meta.checksums === "" ? {} : JSONParse(meta.checksums);
    const checksums = {};
    if (!meta.etag.includes("-")) checksums.md5 = bytesOfHex(meta.etag);
    for (const { 0: k, 1: v } of ObjectEntries(sums)) checksums[k] = bytesOfHex(v);
    this.checksums = checksums;
    this.storageClass = "Standard";
    this.range = range;
  }

  writeHttpMetadata(headers) {
    const m = this.httpMetadata;
    for (const { 0: field, 1: header } of HTTP_FIELDS) {
      if (m[field] !== undefined) headers.set(header, m[field]);
    }
    if (m.cacheExpiry !== undefined) headers.set("expires", m.cacheExpiry.toUTCString());
  }

  get [SymbolToStringTag]() {
    return "R2Object";
  }
}

// The body of one version of an object, read a range at a time as it is
// consumed (an object replaced meanwhile makes the stream error); `first`,
// a whole small body read with the head, is all of it.
function bodyStream(bucket, version, offset, length, first) {
  let at = offset;
  const end = offset + length;
  return new ReadableStream({
    type: "bytes",
    start(c) {
      if (first === null || first === undefined) return;
      const { 0: handle, 1: n } = first;
      const piece = new Uint8Array(n);
      op_edge_kv_take(handle, piece);
      at += n;
      if (n > 0) c.enqueue(piece);
      if (at >= end) c.close();
    },
    async pull(c) {
      if (at >= end) {
        c.close();
        return;
      }
      const { 0: handle, 1: length } = await op_edge_r2_read(bucket, version, at, MathMin(READ, end - at));
      const piece = new Uint8Array(length);
      op_edge_kv_take(handle, piece);
      if (length === 0) {
        c.error(new Error("get: the object ended early"));
        return;
      }
      at += piece.byteLength;
      c.enqueue(piece);
      if (at >= end) c.close();
    },
  });
}

class R2ObjectBody extends R2Object {
  #body;
  constructor(key, meta, bucket, range, first) {
    super(key, meta, range);
    this.#body = bodyStream(bucket, meta.version, range.offset, range.length, first);
  }

  get body() {
    return this.#body;
  }

  get bodyUsed() {
    return this.#body.locked;
  }

  arrayBuffer() {
    return new Response(this.#body).arrayBuffer();
  }

  bytes() {
    return new Response(this.#body).bytes();
  }

  text() {
    return new Response(this.#body).text();
  }

  json() {
    return new Response(this.#body).json();
  }

  blob() {
    return new Response(this.#body).blob();
  }

  get [SymbolToStringTag]() {
    return "R2ObjectBody";
  }
}

// A get's range against an object of `size` bytes: `{offset, length}`,
// `{offset}`, `{suffix}` or a Headers' `Range: bytes=a-b`.
function resolveRange(range, size) {
  if (range === undefined || range === null) return { offset: 0, length: size };
  let offset;
  let length;
  if (ObjectPrototypeIsPrototypeOf(Headers.prototype, range)) {
    const h = range.get("range");
    if (h === null) return { offset: 0, length: size };
    const m = /^bytes=(\d*)-(\d*)$/.exec(h.trim());
    if (m === null || (m[1] === "" && m[2] === "")) throw new TypeError("get: Invalid range. (10039)");
    if (m[1] === "") {
      const suffix = Number(m[2]);
      offset = size - MathMin(suffix, size);
      length = size - offset;
    } else {
      offset = Number(m[1]);
      length = m[2] === "" ? size - offset : Number(m[2]) - offset + 1;
    }
  } else if (range.suffix !== undefined) {
    const suffix = Number(range.suffix);
    if (!NumberIsInteger(suffix) || suffix < 0) throw new TypeError("get: Invalid range. (10039)");
    offset = size - MathMin(suffix, size);
    length = size - offset;
  } else {
    offset = range.offset === undefined ? 0 : Number(range.offset);
    length = range.length === undefined ? size - offset : Number(range.length);
  }
  if (!NumberIsInteger(offset) || !NumberIsInteger(length) || offset < 0 || length < 0 || (size > 0 && offset >= size)) {
    throw new TypeError("get: The requested range is not satisfiable. (10039)");
  }
  return { offset, length: MathMin(length, size - offset) };
}

// Stages `value` a piece at a time; gives the staged body's handle.
async function stageValue(bucket, value, what) {
  const handle = await op_edge_r2_stage(bucket);
  try {
    if (value === null || value === undefined) return handle;
    if (ObjectPrototypeIsPrototypeOf(BlobPrototype, value)) value = value.stream();
    if (ObjectPrototypeIsPrototypeOf(ReadableStreamPrototype, value)) {
      const reader = value.getReader();
      let buffer = new Uint8Array(PIECE);
      let filled = 0;
      for (;;) {
        const { value: chunk, done } = await reader.read();
        if (done) break;
        let bytes = bytesOf(chunk, what);
        while (bytes.length > 0) {
          const n = MathMin(PIECE - filled, bytes.length);
          TypedArrayPrototypeSet(buffer, TypedArrayPrototypeSubarray(bytes, 0, n), filled);
          filled += n;
          bytes = TypedArrayPrototypeSubarray(bytes, n);
          if (filled === PIECE) {
            await op_edge_r2_append(handle, buffer);
            buffer = new Uint8Array(PIECE);
            filled = 0;
          }
        }
      }
      if (filled > 0) await op_edge_r2_append(handle, TypedArrayPrototypeSubarray(buffer, 0, filled));
      return handle;
    }
    const bytes = bytesOf(value, what);
    for (let at = 0; at < bytes.length; at += 4 * PIECE) {
      await op_edge_r2_append(handle, TypedArrayPrototypeSubarray(bytes, at, MathMin(at + 4 * PIECE, bytes.length)));
    }
    return handle;
  } catch (e) {
    op_edge_r2_discard(handle);
    throw e;
  }
}

const DIGESTS = [["sha1", "SHA-1"], ["sha256", "SHA-256"], ["sha384", "SHA-384"], ["sha512", "SHA-512"]];

// Checksums other than MD5 given with a put: checked here over a value in
// memory (a stream would have to be held whole: refused).
async function checksumsOf(value, options) {
  const out = {};
  for (const { 0: name, 1: algorithm } of DIGESTS) {
    if (options[name] === undefined) continue;
    if (ObjectPrototypeIsPrototypeOf(ReadableStreamPrototype, value) || ObjectPrototypeIsPrototypeOf(BlobPrototype, value)) {
      throw new TypeError(`put: a ${name} checksum is checked only for a value in memory, not a stream`);
    }
    const want = hexOf(options[name]);
    const got = hexOf(await globalThis.crypto.subtle.digest(algorithm, bytesOf(value ?? "", "put")));
    if (want !== got) {
      throw new TypeError(`put: The ${algorithm} checksum you specified did not match what we received. (10037)`);
    }
    out[name] = got;
  }
  return JSONStringify(out);
}

class R2MultipartUpload {
  #bucket;
  constructor(key, bucket, objectKey, uploadId) {
    if (key !== kKey) throw new TypeError("Illegal constructor");
    this.#bucket = bucket;
    this.key = objectKey;
    this.uploadId = uploadId;
  }

  async uploadPart(partNumber, value) {
    admit("uploadPart");
    const handle = await stageValue(this.#bucket, value, "uploadPart");
    const etag = await op_edge_r2_commit_part(handle, this.uploadId, this.key, partNumber >>> 0);
    return { partNumber, etag };
  }

  async abort() {
    admit("abort");
    await op_edge_r2_abort(this.#bucket, this.uploadId, this.key);
  }

  async complete(parts) {
    admit("complete");
    const list = ArrayPrototypeMap(parts, (p) => ({ partNumber: p.partNumber >>> 0, etag: String(p.etag) }));
    return new R2Object(kKey, await op_edge_r2_complete(this.#bucket, this.uploadId, this.key, list));
  }

  get [SymbolToStringTag]() {
    return "R2MultipartUpload";
  }
}

class R2Bucket {
  #index;
  constructor(key, index) {
    if (key !== kKey) throw new TypeError("Illegal constructor");
    this.#index = index;
  }

  async head(key) {
    admit("head");
    const meta = await op_edge_r2_head(this.#index, String(key));
    return meta === null ? null : new R2Object(kKey, meta);
  }

  async get(key, options = {}) {
    admit("get");
    const whole = options?.range === undefined || options?.range === null;
    const got = await op_edge_r2_get(this.#index, String(key), onlyIfOf(options?.onlyIf), whole);
    if (got === null) return null;
    if (!got.passed) return new R2Object(kKey, got.meta);
    // A Headers range without a Range header is whole too (read in pieces).
    const range = resolveRange(options?.range, got.meta.size);
    return new R2ObjectBody(kKey, got.meta, this.#index, range, got.body);
  }

  async put(key, value, options = {}) {
    admit("put");
    key = String(key);
    options ??= {};
    const args = {
      httpMetadata: httpMetadataJson(options.httpMetadata),
      customMetadata: customMetadataJson(options.customMetadata),
      checksums: await checksumsOf(value, options),
      md5: options.md5 === undefined ? undefined : hexOf(options.md5),
    };
    const handle = await stageValue(this.#index, value, "put");
    const meta = await op_edge_r2_commit(handle, key, args, onlyIfOf(options.onlyIf));
    return meta === null ? null : new R2Object(kKey, meta);
  }

  async delete(keys) {
    admit("delete");
    const list = ArrayIsArray(keys) ? ArrayPrototypeMap(keys, String) : [String(keys)];
    await op_edge_r2_delete(this.#index, list);
  }

  async list(options = {}) {
    admit("list");
    options ??= {};
    const page = await op_edge_r2_list(this.#index, {
      prefix: options.prefix === undefined ? "" : String(options.prefix),
      cursor: options.cursor === undefined ? undefined : String(options.cursor),
      startAfter: options.startAfter === undefined ? undefined : String(options.startAfter),
      delimiter: options.delimiter === undefined ? undefined : String(options.delimiter),
      limit: options.limit === undefined ? 1000 : Number(options.limit),
    });
    const include = options.include ?? [];
    const objects = ArrayPrototypeMap(page.objects, (meta) => {
      const o = new R2Object(kKey, meta);
      // As on R2: metadata only when asked for.
      if (!ArrayPrototypeIncludes(include, "httpMetadata")) o.httpMetadata = undefined;
      if (!ArrayPrototypeIncludes(include, "customMetadata")) o.customMetadata = undefined;
      return o;
    });
    const out = { objects, delimitedPrefixes: page.delimitedPrefixes, truncated: page.truncated };
    if (page.truncated) out.cursor = page.cursor;
    return out;
  }

  async createMultipartUpload(key, options = {}) {
    admit("createMultipartUpload");
    key = String(key);
    options ??= {};
    const id = await op_edge_r2_create_multipart(this.#index, key, {
      httpMetadata: httpMetadataJson(options.httpMetadata),
      customMetadata: customMetadataJson(options.customMetadata),
      checksums: "",
    });
    return new R2MultipartUpload(kKey, this.#index, key, id);
  }

  resumeMultipartUpload(key, uploadId) {
    return new R2MultipartUpload(kKey, this.#index, String(key), String(uploadId));
  }

  get [SymbolToStringTag]() {
    return "R2Bucket";
  }
}

export function r2Bucket(index) {
  return new R2Bucket(kKey, index);
}
