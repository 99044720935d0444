// Queues: the producer binding (`env.NAME` for a `[[worker.queues.producers]]`,
// Cloudflare's Queue with send and sendBatch over the op of
// src/ext/queue.rs) and what a consumer's `queue(batch, env, ctx)` is
// handed (MessageBatch and Message, decoded from the delivery the node's
// queue runner sends, and the per-message decisions it answers with).

import { core, primordials } from "ext:core/mod.js";
import { bytesOfView } from "ext:edge_runtime/kv.js";

const {
  ArrayBufferIsView,
  ArrayBufferPrototypeGetByteLength,
  ArrayBufferPrototypeSlice,
  ArrayIsArray,
  ArrayPrototypeMap,
  ArrayPrototypePush,
  Date,
  JSONParse,
  JSONStringify,
  ObjectFreeze,
  String,
  Symbol,
  SymbolIterator,
  SymbolToStringTag,
  TypeError,
  TypedArrayPrototypeGetBuffer,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeGetByteOffset,
  TypedArrayPrototypeSet,
  TypedArrayPrototypeSubarray,
  Uint8Array,
} = primordials;
const { op_edge_queue_send } = core.ops;

const { TextEncoder, TextDecoder } = core.loadExtScript("ext:deno_web/08_text_encoding.js");
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Cloudflare's limits (checked again in Rust). */
const MAX_MESSAGE = 128000;
const MAX_BATCH = 100;
const MAX_BATCH_BYTES = 256000;

let admit = () => {};
/** Set by the bootstrap: counts a call against the request's budget. */
export function setQueueAdmission(fn) {
  admit = fn;
}

function encodeBody(body, contentType) {
  switch (contentType) {
    case "v8":
      return core.serialize(body, { forStorage: true });
    case "json": {
      const text = JSONStringify(body);
      if (text === undefined) throw new TypeError("Queue send failed: the body is not JSON-serializable");
      return encoder.encode(text);
    }
    case "text":
      if (typeof body !== "string") throw new TypeError('Queue send failed: contentType "text" needs a string body');
      return encoder.encode(body);
    case "bytes":
      if (ArrayBufferIsView(body)) return bytesOfView(body);
      try {
        ArrayBufferPrototypeGetByteLength(body);
        return new Uint8Array(body);
      } catch {
        throw new TypeError('Queue send failed: contentType "bytes" needs an ArrayBuffer or ArrayBufferView body');
      }
    default:
      throw new TypeError(`Queue send failed: unknown contentType ${JSONStringify(String(contentType))} (v8, json, text or bytes)`);
  }
}

function delayOf(options, fallback) {
  const d = options?.delaySeconds;
  return d === undefined ? fallback : d;
}

async function sendAll(index, items, what) {
  admit(what);
  const metas = [];
  const parts = [];
  let total = 0;
  for (let i = 0; i < items.length; i++) {
    const { body, contentType, delaySeconds } = items[i];
    if (body === undefined) throw new TypeError(`${what} failed: a message needs a body`);
    const bytes = encodeBody(body, contentType ?? "v8");
    const length = TypedArrayPrototypeGetByteLength(bytes);
    if (length > MAX_MESSAGE) {
      throw new TypeError(`${what} failed: message length of ${length} bytes exceeds limit of ${MAX_MESSAGE}`);
    }
    total += length;
    if (total > MAX_BATCH_BYTES) {
      throw new TypeError(`${what} failed: batch size of ${total} bytes exceeds limit of ${MAX_BATCH_BYTES}`);
    }
    ArrayPrototypePush(metas, { contentType: contentType ?? "v8", delaySeconds: +(delaySeconds ?? 0), length });
    ArrayPrototypePush(parts, bytes);
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < parts.length; i++) {
    TypedArrayPrototypeSet(all, parts[i], at);
    at += TypedArrayPrototypeGetByteLength(parts[i]);
  }
  await op_edge_queue_send(index, metas, all);
}

class Queue {
  #index;
  constructor(index) {
    this.#index = index;
  }
  async send(body, options = undefined) {
    await sendAll(
      this.#index,
      [{ body, contentType: options?.contentType, delaySeconds: delayOf(options, 0) }],
      "Queue send",
    );
  }
  async sendBatch(messages, options = undefined) {
    if (messages === null || typeof messages !== "object" || typeof messages[SymbolIterator] !== "function") {
      throw new TypeError("Queue sendBatch failed: messages must be an iterable of { body }");
    }
    const items = [];
    for (const m of messages) {
      if (items.length >= MAX_BATCH) {
        throw new TypeError(`Queue sendBatch failed: batch of more than ${MAX_BATCH} messages exceeds limit of ${MAX_BATCH}`);
      }
      ArrayPrototypePush(items, {
        body: m?.body,
        contentType: m?.contentType,
        delaySeconds: delayOf(m, delayOf(options, 0)),
      });
    }
    if (items.length === 0) throw new TypeError("Queue sendBatch failed: no messages");
    await sendAll(this.#index, items, "Queue sendBatch");
  }
  get [SymbolToStringTag]() {
    return "WorkerQueue";
  }
}

export function queueBinding(index) {
  return new Queue(index);
}

// ---- the consumer side

function decodeBody(bytes, contentType) {
  switch (contentType) {
    case "v8":
      return core.deserialize(bytes, { forStorage: true });
    case "json":
      return JSONParse(decoder.decode(bytes));
    case "text":
      return decoder.decode(bytes);
    default:
      return ArrayBufferPrototypeSlice(
        TypedArrayPrototypeGetBuffer(bytes),
        TypedArrayPrototypeGetByteOffset(bytes),
        TypedArrayPrototypeGetByteOffset(bytes) + TypedArrayPrototypeGetByteLength(bytes),
      );
  }
}

// A decision: "ack", or a retry's delay in seconds (-1: the consumer's
// retry_delay).
function retryDecision(options) {
  const d = options?.delaySeconds;
  if (d === undefined) return -1;
  if (typeof d !== "number" || !(d >= 0 && d <= 43200) || d % 1 !== 0) {
    throw new TypeError(`retry failed: delaySeconds must be an integer from 0 to 43200, got ${String(d)}`);
  }
  return d;
}

const kMake = Symbol("queue message");

class Message {
  #id;
  #timestamp;
  #body;
  #attempts;
  #decide;
  constructor(key, id, timestamp, body, attempts, decide) {
    if (key !== kMake) throw new TypeError("Illegal constructor");
    this.#id = id;
    this.#timestamp = timestamp;
    this.#body = body;
    this.#attempts = attempts;
    this.#decide = decide;
  }
  get id() {
    return this.#id;
  }
  get timestamp() {
    return new Date(this.#timestamp);
  }
  get body() {
    return this.#body;
  }
  get attempts() {
    return this.#attempts;
  }
  ack() {
    this.#decide("ack");
  }
  retry(options = undefined) {
    this.#decide(retryDecision(options));
  }
  get [SymbolToStringTag]() {
    return "Message";
  }
}

class MessageBatch {
  #queue;
  #messages;
  #decideAll;
  constructor(key, queue, messages, decideAll) {
    if (key !== kMake) throw new TypeError("Illegal constructor");
    this.#queue = queue;
    this.#messages = messages;
    this.#decideAll = decideAll;
  }
  get queue() {
    return this.#queue;
  }
  get messages() {
    return this.#messages;
  }
  ackAll() {
    this.#decideAll("ack");
  }
  retryAll(options = undefined) {
    this.#decideAll(retryDecision(options));
  }
  get [SymbolToStringTag]() {
    return "MessageBatch";
  }
}

/**
 * The batch a delivery carries (`buf`: a JSON line naming the queue and
 * each message's id, time, attempts, type and length, then the bodies one
 * after another), and `decisions(threw)`: each message's outcome, its own
 * call first, then the batch's, then ack if `queue()` returned and retry
 * if it threw.
 */
export function openBatch(buf) {
  const all = new Uint8Array(buf);
  let nl = 0;
  while (nl < all.length && all[nl] !== 10) nl++;
  const head = JSONParse(decoder.decode(TypedArrayPrototypeSubarray(all, 0, nl)));
  if (head === null || typeof head.queue !== "string" || !ArrayIsArray(head.messages)) {
    throw new TypeError("queue delivery: bad header");
  }
  const own = [];
  let batchWide;
  let at = nl + 1;
  const messages = ArrayPrototypeMap(head.messages, (m, i) => {
    const bytes = TypedArrayPrototypeSubarray(all, at, at + m.length);
    at += m.length;
    ArrayPrototypePush(own, undefined);
    const decide = (d) => {
      if (own[i] === undefined) own[i] = d;
    };
    return new Message(kMake, m.id, m.timestamp, decodeBody(bytes, m.contentType), m.attempts, decide);
  });
  const batch = new MessageBatch(kMake, head.queue, ObjectFreeze(messages), (d) => {
    if (batchWide === undefined) batchWide = d;
  });
  const decisions = (threw) =>
    ArrayPrototypeMap(own, (d) => d ?? batchWide ?? (threw ? -1 : "ack"));
  return { batch, decisions };
}
