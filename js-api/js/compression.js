// CompressionStream and DecompressionStream pumped in bounded pieces (see
// src/ext/codec.rs): each chunk goes through the codec PIECE bytes of output
// at a time, into buffers made here, at the pace of the reader, so the
// isolate's CPU and memory limits stop a decompression bomb between pieces.

import { core, primordials } from "ext:core/mod.js";

const {
  ObjectPrototypeIsPrototypeOf,
  SymbolFor,
  TypeError,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeSubarray,
  TypedArrayPrototypeSlice,
  Uint8Array,
  Uint32Array,
  DataViewPrototypeGetBuffer,
  DataViewPrototypeGetByteLength,
  DataViewPrototypeGetByteOffset,
  ArrayBufferIsView,
  ArrayBufferPrototypeGetByteLength,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteOffset,
  TypedArrayPrototypeGetSymbolToStringTag,
} = primordials;
const { op_edge_codec_new, op_edge_codec_pump, op_edge_codec_close } = core.ops;

const webidl = core.loadExtScript("ext:deno_webidl/00_webidl.js");
const { createFilteredInspectProxy } = core.loadExtScript("ext:deno_web/01_console.js");
const { ReadableStream, WritableStream } = core.loadExtScript("ext:deno_web/06_streams.js");

/** Output bytes per pump. */
const PIECE = 64 * 1024;

webidl.converters.CompressionFormat = webidl.createEnumConverter("CompressionFormat", [
  "deflate",
  "deflate-raw",
  "gzip",
  "brotli",
]);

// A chunk as bytes: a Uint8Array view of any BufferSource.
function bytesOf(chunk, prefix) {
  if (chunk === null) {
    const err = new TypeError("May not write null values to stream");
    err.code = "ERR_STREAM_NULL_VALUES";
    throw err;
  }
  let source;
  try {
    source = webidl.converters.BufferSource(chunk, prefix, "chunk");
  } catch (err) {
    err.code = "ERR_INVALID_ARG_TYPE";
    throw err;
  }
  if (!ArrayBufferIsView(source)) {
    return new Uint8Array(source, 0, ArrayBufferPrototypeGetByteLength(source));
  }
  if (TypedArrayPrototypeGetSymbolToStringTag(source) === undefined) {
    return new Uint8Array(
      DataViewPrototypeGetBuffer(source),
      DataViewPrototypeGetByteOffset(source),
      DataViewPrototypeGetByteLength(source),
    );
  }
  return new Uint8Array(
    TypedArrayPrototypeGetBuffer(source),
    TypedArrayPrototypeGetByteOffset(source),
    TypedArrayPrototypeGetByteLength(source),
  );
}

const EMPTY = new Uint8Array(0);

// The stream pair of one codec: each write is pumped a piece at a time,
// and after each piece the writer waits until the reader wants more, so the
// output held at once is about one piece whatever the ratio. (A
// TransformStream's transform could not wait for its reader.)
function makePair(format, decoder) {
  const codec = op_edge_codec_new(format, decoder);
  const counts = new Uint32Array(3);
  let out; // the readable side's controller
  let wanted = null; // resolves when the reader pulls
  let cancelled = null; // the reader's reason, once it cancelled
  const waitForReader = () => {
    if (cancelled !== null || out.desiredSize > 0) return undefined;
    return new Promise((resolve) => {
      wanted = resolve;
    });
  };
  // Pumps `input` (all of it; `finish`: then the end) through the codec.
  async function pump(input, finish) {
    const len = TypedArrayPrototypeGetByteLength(input);
    let off = 0;
    for (;;) {
      if (cancelled !== null) throw cancelled;
      const piece = new Uint8Array(PIECE);
      const rest = off === 0 ? input : TypedArrayPrototypeSubarray(input, off);
      op_edge_codec_pump(codec, rest, piece, finish, counts);
      const consumed = counts[0], produced = counts[1], done = counts[2] === 1;
      off += consumed;
      if (produced > 0) {
        out.enqueue(produced === PIECE ? piece : TypedArrayPrototypeSlice(piece, 0, produced));
        await waitForReader();
      }
      if (done) return;
      if (off >= len && produced < PIECE && !finish) return;
      if (consumed === 0 && produced === 0) {
        throw new TypeError("The compressed data is not valid: the codec made no progress");
      }
    }
  }
  const fail = (err) => {
    op_edge_codec_close(codec);
    if (cancelled === null) out.error(err);
    throw err;
  };
  const readable = new ReadableStream({
    start(c) {
      out = c;
    },
    pull() {
      if (wanted !== null) {
        const w = wanted;
        wanted = null;
        w();
      }
    },
    cancel(reason) {
      cancelled = reason ?? new TypeError("The readable side was cancelled");
      op_edge_codec_close(codec);
      if (wanted !== null) wanted();
    },
  }, { highWaterMark: 0 });
  const writable = new WritableStream({
    async write(chunk) {
      let bytes;
      try {
        bytes = bytesOf(chunk, "chunk");
        await pump(bytes, false);
      } catch (err) {
        fail(err);
      }
    },
    async close() {
      try {
        await pump(EMPTY, true);
      } catch (err) {
        fail(err);
      }
      op_edge_codec_close(codec);
      out.close();
    },
    abort(reason) {
      op_edge_codec_close(codec);
      if (cancelled === null) out.error(reason);
    },
  }, { highWaterMark: 1 });
  return { readable, writable };
}

function inspectable(proto) {
  return function (inspect, inspectOptions) {
    return inspect(
      createFilteredInspectProxy({
        object: this,
        evaluate: ObjectPrototypeIsPrototypeOf(proto(), this),
        keys: ["readable", "writable"],
      }),
      inspectOptions,
    );
  };
}

class CompressionStream {
  #pair;

  constructor(format) {
    const prefix = "Failed to construct 'CompressionStream'";
    webidl.requiredArguments(arguments.length, 1, prefix);
    format = webidl.converters.CompressionFormat(format, prefix, "Argument 1");
    this.#pair = makePair(format, false);
    this[webidl.brand] = webidl.brand;
  }

  get readable() {
    webidl.assertBranded(this, CompressionStreamPrototype);
    return this.#pair.readable;
  }

  get writable() {
    webidl.assertBranded(this, CompressionStreamPrototype);
    return this.#pair.writable;
  }
}
CompressionStream.prototype[SymbolFor("Deno.privateCustomInspect")] = inspectable(() => CompressionStreamPrototype);
webidl.configureInterface(CompressionStream);
const CompressionStreamPrototype = CompressionStream.prototype;

class DecompressionStream {
  #pair;

  constructor(format) {
    const prefix = "Failed to construct 'DecompressionStream'";
    webidl.requiredArguments(arguments.length, 1, prefix);
    format = webidl.converters.CompressionFormat(format, prefix, "Argument 1");
    this.#pair = makePair(format, true);
    this[webidl.brand] = webidl.brand;
  }

  get readable() {
    webidl.assertBranded(this, DecompressionStreamPrototype);
    return this.#pair.readable;
  }

  get writable() {
    webidl.assertBranded(this, DecompressionStreamPrototype);
    return this.#pair.writable;
  }
}
DecompressionStream.prototype[SymbolFor("Deno.privateCustomInspect")] = inspectable(() => DecompressionStreamPrototype);
webidl.configureInterface(DecompressionStream);
const DecompressionStreamPrototype = DecompressionStream.prototype;

export { CompressionStream, DecompressionStream };
