// `node:buffer` and the `Buffer` global (with `compatibility_flags =
// ["nodejs_compat"]`): Node's Buffer as a Uint8Array subclass, with the
// encodings utf8, hex, base64, base64url, latin1 (binary), ascii and
// utf16le (ucs2), and the read/write methods of the integer and float
// types. Base64 goes through deno_web's ops; text through its codecs.

import { core, primordials } from "ext:core/mod.js";

const {
  ArrayBufferIsView,
  ArrayIsArray,
  BigInt,
  DataView,
  MathFloor,
  MathMin,
  MathMax,
  NumberIsInteger,
  ObjectPrototypeIsPrototypeOf,
  RangeError,
  RegExpPrototypeSymbolReplace,
  String,
  StringFromCharCode,
  StringPrototypeCharCodeAt,
  StringPrototypeToLowerCase,
  TypeError,
  TypedArrayPrototypeFill,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetByteOffset,
  TypedArrayPrototypeSet,
  TypedArrayPrototypeSubarray,
  Uint8Array,
  Uint8ArrayPrototype,
} = primordials;

const { forgivingBase64Decode, forgivingBase64Encode } = core.loadExtScript("ext:deno_web/00_infra.js");
const { TextEncoder, TextDecoder } = core.loadExtScript("ext:deno_web/08_text_encoding.js");
const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8");

export const kMaxLength = 2 ** 32;
export const constants = { MAX_LENGTH: kMaxLength, MAX_STRING_LENGTH: 2 ** 29 - 24 };

function normalize(encoding) {
  if (encoding === undefined || encoding === null) return "utf8";
  switch (StringPrototypeToLowerCase(String(encoding))) {
    case "utf8":
    case "utf-8":
      return "utf8";
    case "hex":
      return "hex";
    case "base64":
      return "base64";
    case "base64url":
      return "base64url";
    case "latin1":
    case "binary":
      return "latin1";
    case "ascii":
      return "ascii";
    case "utf16le":
    case "utf-16le":
    case "ucs2":
    case "ucs-2":
      return "utf16le";
    default:
      return undefined;
  }
}

function encodingOf(encoding) {
  const e = normalize(encoding);
  if (e === undefined) throw new TypeError(`Unknown encoding: ${encoding}`);
  return e;
}

// Node's base64 decoding: url-safe letters too, anything else skipped.
function base64Bytes(s) {
  let clean = RegExpPrototypeSymbolReplace(/[^A-Za-z0-9+/\-_]/g, s, "");
  clean = RegExpPrototypeSymbolReplace(/-/g, clean, "+");
  clean = RegExpPrototypeSymbolReplace(/_/g, clean, "/");
  const rest = clean.length % 4;
  if (rest === 1) clean = clean.slice(0, -1);
  else if (rest === 2) clean += "==";
  else if (rest === 3) clean += "=";
  return forgivingBase64Decode(clean);
}

function bytesOf(string, encoding) {
  switch (encodingOf(encoding)) {
    case "utf8":
      return encoder.encode(string);
    case "hex": {
      // As Node: up to the first pair that is not hex.
      const n = string.length >>> 1;
      const out = new Uint8Array(n);
      let i = 0;
      for (; i < n; i++) {
        const hi = hexDigit(StringPrototypeCharCodeAt(string, 2 * i));
        const lo = hexDigit(StringPrototypeCharCodeAt(string, 2 * i + 1));
        if (hi < 0 || lo < 0) break;
        out[i] = (hi << 4) | lo;
      }
      return i === n ? out : TypedArrayPrototypeSubarray(out, 0, i);
    }
    case "base64":
    case "base64url":
      return base64Bytes(string);
    case "latin1":
    case "ascii": {
      const out = new Uint8Array(string.length);
      for (let i = 0; i < string.length; i++) out[i] = StringPrototypeCharCodeAt(string, i) & 0xff;
      return out;
    }
    case "utf16le": {
      const out = new Uint8Array(string.length * 2);
      for (let i = 0; i < string.length; i++) {
        const c = StringPrototypeCharCodeAt(string, i);
        out[2 * i] = c & 0xff;
        out[2 * i + 1] = c >>> 8;
      }
      return out;
    }
  }
}

function hexDigit(c) {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function textOf(bytes, encoding) {
  switch (encodingOf(encoding)) {
    case "utf8":
      return utf8.decode(bytes);
    case "hex": {
      let s = "";
      for (let i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
      return s;
    }
    case "base64":
      return forgivingBase64Encode(bytes);
    case "base64url":
      return RegExpPrototypeSymbolReplace(
        /=+$/,
        RegExpPrototypeSymbolReplace(/\//g, RegExpPrototypeSymbolReplace(/\+/g, forgivingBase64Encode(bytes), "-"), "_"),
        "",
      );
    case "latin1":
    case "ascii": {
      const mask = encodingOf(encoding) === "ascii" ? 0x7f : 0xff;
      let s = "";
      for (let i = 0; i < bytes.length; i += 4096) {
        const end = MathMin(bytes.length, i + 4096);
        const chunk = [];
        for (let j = i; j < end; j++) chunk.push(bytes[j] & mask);
        s += StringFromCharCode(...chunk);
      }
      return s;
    }
    case "utf16le": {
      let s = "";
      for (let i = 0; i + 1 < bytes.length; i += 2) s += StringFromCharCode(bytes[i] | (bytes[i + 1] << 8));
      return s;
    }
  }
}

function isUint8Array(v) {
  return ArrayBufferIsView(v) && ObjectPrototypeIsPrototypeOf(Uint8ArrayPrototype, v);
}

function view(b) {
  return new DataView(TypedArrayPrototypeGetBuffer(b), TypedArrayPrototypeGetByteOffset(b), TypedArrayPrototypeGetByteLength(b));
}

function checkOffset(b, offset, size) {
  if (offset === undefined) offset = 0;
  if (!NumberIsInteger(offset) || offset < 0 || offset + size > b.length) {
    throw new RangeError(`The value of "offset" is out of range. It must be >= 0 and <= ${b.length - size}. Received ${offset}`);
  }
  return offset;
}

export class Buffer extends Uint8Array {
  static from(value, encodingOrOffset = undefined, length = undefined) {
    if (typeof value === "string") return fromBytes(bytesOf(value, encodingOrOffset));
    if (value instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && value instanceof SharedArrayBuffer)) {
      const offset = encodingOrOffset ?? 0;
      return new Buffer(value, offset, length ?? value.byteLength - offset);
    }
    if (ArrayBufferIsView(value)) {
      const src = isUint8Array(value)
        ? value
        : new Uint8Array(TypedArrayPrototypeGetBuffer(value), TypedArrayPrototypeGetByteOffset(value), TypedArrayPrototypeGetByteLength(value));
      const out = new Buffer(src.length);
      TypedArrayPrototypeSet(out, src);
      return out;
    }
    if (ArrayIsArray(value)) {
      const out = new Buffer(value.length);
      for (let i = 0; i < value.length; i++) out[i] = value[i];
      return out;
    }
    if (value !== null && typeof value === "object") {
      if (value.type === "Buffer" && ArrayIsArray(value.data)) return Buffer.from(value.data);
      if (typeof value.length === "number") return Buffer.from(Array.from(value));
      const prim = value.valueOf?.();
      if (prim !== undefined && prim !== value) return Buffer.from(prim, encodingOrOffset, length);
    }
    throw new TypeError(
      "The first argument must be of type string or an instance of Buffer, ArrayBuffer, or Array or an Array-like Object.",
    );
  }

  static alloc(size, fill = undefined, encoding = undefined) {
    checkSize(size);
    const b = new Buffer(size);
    if (fill !== undefined && fill !== 0) b.fill(fill, 0, size, encoding);
    return b;
  }

  static allocUnsafe(size) {
    checkSize(size);
    return new Buffer(size);
  }

  static allocUnsafeSlow(size) {
    return Buffer.allocUnsafe(size);
  }

  static isBuffer(b) {
    return b instanceof Buffer;
  }

  static isEncoding(e) {
    return typeof e === "string" && normalize(e) !== undefined;
  }

  static byteLength(value, encoding = undefined) {
    if (typeof value !== "string") {
      if (ArrayBufferIsView(value) || value instanceof ArrayBuffer) return value.byteLength;
      throw new TypeError('The "string" argument must be of type string or an instance of Buffer or ArrayBuffer.');
    }
    return bytesOf(value, encoding).length;
  }

  static concat(list, totalLength = undefined) {
    if (!ArrayIsArray(list)) throw new TypeError('The "list" argument must be an instance of Array.');
    let n = 0;
    for (let i = 0; i < list.length; i++) {
      if (!isUint8Array(list[i])) throw new TypeError(`The "list[${i}]" argument must be an instance of Buffer or Uint8Array.`);
      n += list[i].length;
    }
    const size = totalLength === undefined ? n : totalLength;
    const out = Buffer.alloc(size);
    let at = 0;
    for (let i = 0; i < list.length && at < size; i++) {
      const part = list[i].length <= size - at ? list[i] : TypedArrayPrototypeSubarray(list[i], 0, size - at);
      TypedArrayPrototypeSet(out, part, at);
      at += part.length;
    }
    return out;
  }

  static compare(a, b) {
    const n = MathMin(a.length, b.length);
    for (let i = 0; i < n; i++) {
      if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    }
    return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
  }

  toString(encoding = undefined, start = 0, end = this.length) {
    start = MathMax(0, start | 0);
    end = MathMin(this.length, end === undefined ? this.length : end | 0);
    if (end <= start) return "";
    return textOf(TypedArrayPrototypeSubarray(this, start, end), encoding);
  }

  toJSON() {
    return { type: "Buffer", data: Array.from(this) };
  }

  equals(other) {
    if (!isUint8Array(other)) throw new TypeError('The "otherBuffer" argument must be an instance of Buffer or Uint8Array.');
    return Buffer.compare(this, other) === 0;
  }

  compare(target, targetStart = 0, targetEnd = target.length, sourceStart = 0, sourceEnd = this.length) {
    return Buffer.compare(
      TypedArrayPrototypeSubarray(this, sourceStart, sourceEnd),
      TypedArrayPrototypeSubarray(target, targetStart, targetEnd),
    );
  }

  // A view of the same memory, as Node's (not TypedArray's copy).
  slice(start = 0, end = this.length) {
    return this.subarray(start, end);
  }

  write(string, offset = 0, length = undefined, encoding = undefined) {
    if (typeof offset === "string") {
      encoding = offset;
      offset = 0;
      length = undefined;
    } else if (typeof length === "string") {
      encoding = length;
      length = undefined;
    }
    const bytes = bytesOf(string, encoding);
    const n = MathMin(bytes.length, this.length - offset, length ?? Infinity);
    if (n <= 0) return 0;
    TypedArrayPrototypeSet(this, TypedArrayPrototypeSubarray(bytes, 0, n), offset);
    return n;
  }

  fill(value, offset = 0, end = this.length, encoding = undefined) {
    if (typeof offset === "string") {
      encoding = offset;
      offset = 0;
      end = this.length;
    }
    if (typeof value === "number") {
      TypedArrayPrototypeFill(this, value & 0xff, offset, end);
      return this;
    }
    const bytes = typeof value === "string" ? bytesOf(value, encoding) : isUint8Array(value) ? value : Buffer.from(value);
    if (bytes.length === 0) {
      TypedArrayPrototypeFill(this, 0, offset, end);
      return this;
    }
    for (let i = offset, j = 0; i < end; i++, j = (j + 1) % bytes.length) this[i] = bytes[j];
    return this;
  }

  copy(target, targetStart = 0, sourceStart = 0, sourceEnd = this.length) {
    const n = MathMax(0, MathMin(sourceEnd - sourceStart, target.length - targetStart));
    if (n === 0) return 0;
    TypedArrayPrototypeSet(target, TypedArrayPrototypeSubarray(this, sourceStart, sourceStart + n), targetStart);
    return n;
  }

  indexOf(value, byteOffset = 0, encoding = undefined) {
    if (typeof byteOffset === "string") {
      encoding = byteOffset;
      byteOffset = 0;
    }
    if (byteOffset < 0) byteOffset = MathMax(0, this.length + byteOffset);
    if (typeof value === "number") {
      for (let i = byteOffset; i < this.length; i++) if (this[i] === (value & 0xff)) return i;
      return -1;
    }
    const needle = typeof value === "string" ? bytesOf(value, encoding) : value;
    if (needle.length === 0) return byteOffset <= this.length ? byteOffset : this.length;
    outer: for (let i = byteOffset; i + needle.length <= this.length; i++) {
      for (let j = 0; j < needle.length; j++) if (this[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  }

  includes(value, byteOffset = 0, encoding = undefined) {
    return this.indexOf(value, byteOffset, encoding) !== -1;
  }

  readUInt8(offset = 0) {
    return this[checkOffset(this, offset, 1)];
  }
  readInt8(offset = 0) {
    return view(this).getInt8(checkOffset(this, offset, 1));
  }
  readUInt16LE(offset = 0) {
    return view(this).getUint16(checkOffset(this, offset, 2), true);
  }
  readUInt16BE(offset = 0) {
    return view(this).getUint16(checkOffset(this, offset, 2), false);
  }
  readInt16LE(offset = 0) {
    return view(this).getInt16(checkOffset(this, offset, 2), true);
  }
  readInt16BE(offset = 0) {
    return view(this).getInt16(checkOffset(this, offset, 2), false);
  }
  readUInt32LE(offset = 0) {
    return view(this).getUint32(checkOffset(this, offset, 4), true);
  }
  readUInt32BE(offset = 0) {
    return view(this).getUint32(checkOffset(this, offset, 4), false);
  }
  readInt32LE(offset = 0) {
    return view(this).getInt32(checkOffset(this, offset, 4), true);
  }
  readInt32BE(offset = 0) {
    return view(this).getInt32(checkOffset(this, offset, 4), false);
  }
  readFloatLE(offset = 0) {
    return view(this).getFloat32(checkOffset(this, offset, 4), true);
  }
  readFloatBE(offset = 0) {
    return view(this).getFloat32(checkOffset(this, offset, 4), false);
  }
  readDoubleLE(offset = 0) {
    return view(this).getFloat64(checkOffset(this, offset, 8), true);
  }
  readDoubleBE(offset = 0) {
    return view(this).getFloat64(checkOffset(this, offset, 8), false);
  }
  readBigUInt64LE(offset = 0) {
    return view(this).getBigUint64(checkOffset(this, offset, 8), true);
  }
  readBigUInt64BE(offset = 0) {
    return view(this).getBigUint64(checkOffset(this, offset, 8), false);
  }
  readBigInt64LE(offset = 0) {
    return view(this).getBigInt64(checkOffset(this, offset, 8), true);
  }
  readBigInt64BE(offset = 0) {
    return view(this).getBigInt64(checkOffset(this, offset, 8), false);
  }

  writeUInt8(value, offset = 0) {
    this[checkOffset(this, offset, 1)] = value;
    return offset + 1;
  }
  writeInt8(value, offset = 0) {
    view(this).setInt8(checkOffset(this, offset, 1), value);
    return offset + 1;
  }
  writeUInt16LE(value, offset = 0) {
    view(this).setUint16(checkOffset(this, offset, 2), value, true);
    return offset + 2;
  }
  writeUInt16BE(value, offset = 0) {
    view(this).setUint16(checkOffset(this, offset, 2), value, false);
    return offset + 2;
  }
  writeInt16LE(value, offset = 0) {
    view(this).setInt16(checkOffset(this, offset, 2), value, true);
    return offset + 2;
  }
  writeInt16BE(value, offset = 0) {
    view(this).setInt16(checkOffset(this, offset, 2), value, false);
    return offset + 2;
  }
  writeUInt32LE(value, offset = 0) {
    view(this).setUint32(checkOffset(this, offset, 4), value, true);
    return offset + 4;
  }
  writeUInt32BE(value, offset = 0) {
    view(this).setUint32(checkOffset(this, offset, 4), value, false);
    return offset + 4;
  }
  writeInt32LE(value, offset = 0) {
    view(this).setInt32(checkOffset(this, offset, 4), value, true);
    return offset + 4;
  }
  writeInt32BE(value, offset = 0) {
    view(this).setInt32(checkOffset(this, offset, 4), value, false);
    return offset + 4;
  }
  writeFloatLE(value, offset = 0) {
    view(this).setFloat32(checkOffset(this, offset, 4), value, true);
    return offset + 4;
  }
  writeFloatBE(value, offset = 0) {
    view(this).setFloat32(checkOffset(this, offset, 4), value, false);
    return offset + 4;
  }
  writeDoubleLE(value, offset = 0) {
    view(this).setFloat64(checkOffset(this, offset, 8), value, true);
    return offset + 8;
  }
  writeDoubleBE(value, offset = 0) {
    view(this).setFloat64(checkOffset(this, offset, 8), value, false);
    return offset + 8;
  }
  writeBigUInt64LE(value, offset = 0) {
    view(this).setBigUint64(checkOffset(this, offset, 8), BigInt(value), true);
    return offset + 8;
  }
  writeBigUInt64BE(value, offset = 0) {
    view(this).setBigUint64(checkOffset(this, offset, 8), BigInt(value), false);
    return offset + 8;
  }
  writeBigInt64LE(value, offset = 0) {
    view(this).setBigInt64(checkOffset(this, offset, 8), BigInt(value), true);
    return offset + 8;
  }
  writeBigInt64BE(value, offset = 0) {
    view(this).setBigInt64(checkOffset(this, offset, 8), BigInt(value), false);
    return offset + 8;
  }
}

// Lower-case aliases Node has too.
for (const name of ["UInt8", "UInt16LE", "UInt16BE", "UInt32LE", "UInt32BE", "BigUInt64LE", "BigUInt64BE"]) {
  const lower = name.replace("UInt", "Uint");
  Buffer.prototype["read" + lower] = Buffer.prototype["read" + name];
  Buffer.prototype["write" + lower] = Buffer.prototype["write" + name];
}

function checkSize(size) {
  if (typeof size !== "number" || size < 0 || size > kMaxLength || MathFloor(size) !== size) {
    throw new RangeError(`The value of "size" is out of range. It must be >= 0 && <= ${kMaxLength}. Received ${size}`);
  }
}

function fromBytes(bytes) {
  return new Buffer(TypedArrayPrototypeGetBuffer(bytes), TypedArrayPrototypeGetByteOffset(bytes), TypedArrayPrototypeGetByteLength(bytes));
}

export const SlowBuffer = Buffer;
export const INSPECT_MAX_BYTES = 50;
export function isUtf8(input) {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(input);
    return true;
  } catch {
    return false;
  }
}
export function isAscii(input) {
  for (let i = 0; i < input.length; i++) if (input[i] > 0x7f) return false;
  return true;
}
export const { atob, btoa } = core.loadExtScript("ext:deno_web/05_base64.js");

export default { Buffer, SlowBuffer, kMaxLength, constants, INSPECT_MAX_BYTES, isUtf8, isAscii, atob, btoa };
