// `node:events` (with `compatibility_flags = ["nodejs_compat"]`): Node's
// EventEmitter, with `once()` and `on()` as promises and async iterators,
// as Workers has it.

import { primordials } from "ext:core/mod.js";

const {
  ArrayPrototypePush,
  ArrayPrototypeShift,
  ArrayPrototypeSlice,
  ArrayPrototypeSplice,
  ArrayPrototypeUnshift,
  Error,
  NumberIsNaN,
  ObjectCreate,
  ObjectDefineProperty,
  Promise,
  PromiseResolve,
  RangeError,
  String,
  ReflectApply,
  ReflectOwnKeys,
  Symbol,
  SymbolAsyncIterator,
  TypeError,
} = primordials;

const kCapture = Symbol("kCapture");
let defaultMaxListeners = 10;

function checkListener(listener) {
  if (typeof listener !== "function") {
    throw new TypeError(`The "listener" argument must be of type function. Received ${typeof listener}`);
  }
}

function eventsOf(emitter) {
  if (emitter._events === undefined || emitter._events === emitter.__proto__?._events) {
    emitter._events = ObjectCreate(null);
    emitter._eventsCount = 0;
  }
  return emitter._events;
}

function addListener(emitter, type, listener, prepend) {
  checkListener(listener);
  const events = eventsOf(emitter);
  if (events.newListener !== undefined) {
    emitter.emit("newListener", type, listener.listener ?? listener);
  }
  const existing = events[type];
  if (existing === undefined) {
    events[type] = listener;
    emitter._eventsCount++;
  } else if (typeof existing === "function") {
    events[type] = prepend ? [listener, existing] : [existing, listener];
  } else if (prepend) {
    ArrayPrototypeUnshift(existing, listener);
  } else {
    ArrayPrototypePush(existing, listener);
  }
  const list = events[type];
  const max = emitter.getMaxListeners();
  if (typeof list !== "function" && max > 0 && list.length > max && !list.warned) {
    list.warned = true;
    // As Node: a warning, not an error.
    globalThis.console?.warn(
      `MaxListenersExceededWarning: Possible EventEmitter memory leak detected. ${list.length} ${String(type)} listeners added. Use emitter.setMaxListeners() to increase limit`,
    );
  }
  return emitter;
}

function onceWrapper(emitter, type, listener) {
  const state = { fired: false, emitter, type, listener, wrap: undefined };
  const wrapped = function (...args) {
    if (state.fired) return undefined;
    state.fired = true;
    state.emitter.removeListener(state.type, state.wrap);
    return ReflectApply(state.listener, state.emitter, args);
  };
  wrapped.listener = listener;
  state.wrap = wrapped;
  return wrapped;
}

export class EventEmitter {
  constructor(opts = undefined) {
    if (this._events === undefined || this._events === this.__proto__?._events) {
      this._events = ObjectCreate(null);
      this._eventsCount = 0;
    }
    this._maxListeners = this._maxListeners ?? undefined;
    this[kCapture] = opts?.captureRejections === true;
  }

  static get defaultMaxListeners() {
    return defaultMaxListeners;
  }

  static set defaultMaxListeners(n) {
    if (typeof n !== "number" || n < 0 || NumberIsNaN(n)) {
      throw new RangeError(`The value of "defaultMaxListeners" is out of range. Received ${n}`);
    }
    defaultMaxListeners = n;
  }

  setMaxListeners(n) {
    if (typeof n !== "number" || n < 0 || NumberIsNaN(n)) {
      throw new RangeError(`The value of "n" is out of range. Received ${n}`);
    }
    this._maxListeners = n;
    return this;
  }

  getMaxListeners() {
    return this._maxListeners === undefined ? defaultMaxListeners : this._maxListeners;
  }

  emit(type, ...args) {
    const events = this._events;
    if (type === "error" && (events === undefined || events.error === undefined)) {
      const er = args[0];
      if (er instanceof Error) throw er;
      const err = new Error(`Unhandled error. (${er})`);
      err.context = er;
      throw err;
    }
    if (events === undefined) return false;
    const handler = events[type];
    if (handler === undefined) return false;
    if (typeof handler === "function") {
      ReflectApply(handler, this, args);
    } else {
      const listeners = ArrayPrototypeSlice(handler);
      for (let i = 0; i < listeners.length; i++) ReflectApply(listeners[i], this, args);
    }
    return true;
  }

  addListener(type, listener) {
    return addListener(this, type, listener, false);
  }

  on(type, listener) {
    return addListener(this, type, listener, false);
  }

  prependListener(type, listener) {
    return addListener(this, type, listener, true);
  }

  once(type, listener) {
    checkListener(listener);
    return this.on(type, onceWrapper(this, type, listener));
  }

  prependOnceListener(type, listener) {
    checkListener(listener);
    return this.prependListener(type, onceWrapper(this, type, listener));
  }

  removeListener(type, listener) {
    checkListener(listener);
    const events = this._events;
    if (events === undefined) return this;
    const list = events[type];
    if (list === undefined) return this;
    if (list === listener || list.listener === listener) {
      if (--this._eventsCount === 0) this._events = ObjectCreate(null);
      else delete events[type];
      if (events.removeListener !== undefined) this.emit("removeListener", type, list.listener ?? listener);
      return this;
    }
    if (typeof list !== "function") {
      for (let i = list.length - 1; i >= 0; i--) {
        if (list[i] === listener || list[i].listener === listener) {
          const removed = list[i];
          ArrayPrototypeSplice(list, i, 1);
          if (list.length === 1) events[type] = list[0];
          if (events.removeListener !== undefined) this.emit("removeListener", type, removed.listener ?? listener);
          break;
        }
      }
    }
    return this;
  }

  off(type, listener) {
    return this.removeListener(type, listener);
  }

  removeAllListeners(type = undefined) {
    const events = this._events;
    if (events === undefined) return this;
    if (events.removeListener === undefined) {
      if (type === undefined) {
        this._events = ObjectCreate(null);
        this._eventsCount = 0;
      } else if (events[type] !== undefined) {
        if (--this._eventsCount === 0) this._events = ObjectCreate(null);
        else delete events[type];
      }
      return this;
    }
    if (type === undefined) {
      const keys = ReflectOwnKeys(events);
      for (let i = 0; i < keys.length; i++) {
        if (keys[i] !== "removeListener") this.removeAllListeners(keys[i]);
      }
      this.removeAllListeners("removeListener");
      this._events = ObjectCreate(null);
      this._eventsCount = 0;
      return this;
    }
    const listeners = events[type];
    if (typeof listeners === "function") {
      this.removeListener(type, listeners);
    } else if (listeners !== undefined) {
      for (let i = listeners.length - 1; i >= 0; i--) this.removeListener(type, listeners[i]);
    }
    return this;
  }

  listeners(type) {
    const list = this._events?.[type];
    if (list === undefined) return [];
    if (typeof list === "function") return [list.listener ?? list];
    const out = [];
    for (let i = 0; i < list.length; i++) ArrayPrototypePush(out, list[i].listener ?? list[i]);
    return out;
  }

  rawListeners(type) {
    const list = this._events?.[type];
    if (list === undefined) return [];
    return typeof list === "function" ? [list] : ArrayPrototypeSlice(list);
  }

  listenerCount(type, listener = undefined) {
    const list = this._events?.[type];
    if (list === undefined) return 0;
    const all = typeof list === "function" ? [list] : list;
    if (listener === undefined) return all.length;
    let n = 0;
    for (let i = 0; i < all.length; i++) if (all[i] === listener || all[i].listener === listener) n++;
    return n;
  }

  eventNames() {
    return this._eventsCount > 0 ? ReflectOwnKeys(this._events) : [];
  }
}

EventEmitter.prototype._events = undefined;
EventEmitter.prototype._eventsCount = 0;
EventEmitter.prototype._maxListeners = undefined;
EventEmitter.EventEmitter = EventEmitter;
EventEmitter.captureRejectionSymbol = Symbol.for("nodejs.rejection");
EventEmitter.errorMonitor = Symbol("events.errorMonitor");

// Resolves with the arguments of the next `type` event (rejects on
// "error").
export function once(emitter, type, options = undefined) {
  return new Promise((resolve, reject) => {
    const signal = options?.signal;
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onError = (err) => {
      emitter.removeListener(type, onEvent);
      reject(err);
    };
    const onEvent = (...args) => {
      if (type !== "error") emitter.removeListener("error", onError);
      resolve(args);
    };
    emitter.once(type, onEvent);
    if (type !== "error") emitter.once("error", onError);
    signal?.addEventListener("abort", () => {
      emitter.removeListener(type, onEvent);
      emitter.removeListener("error", onError);
      reject(signal.reason);
    }, { once: true });
  });
}

// An async iterator of the arguments of each `type` event.
export function on(emitter, type, _options = undefined) {
  const queued = [];
  const waiting = [];
  let error = null;
  let done = false;
  const onEvent = (...args) => {
    const w = ArrayPrototypeShift(waiting);
    if (w !== undefined) w.resolve({ value: args, done: false });
    else ArrayPrototypePush(queued, args);
  };
  const onError = (err) => {
    done = true;
    const w = ArrayPrototypeShift(waiting);
    if (w !== undefined) w.reject(err);
    else error = err;
    stop();
  };
  const stop = () => {
    emitter.removeListener(type, onEvent);
    emitter.removeListener("error", onError);
  };
  emitter.on(type, onEvent);
  if (type !== "error") emitter.on("error", onError);
  const iterator = {
    next() {
      if (queued.length > 0) return PromiseResolve({ value: ArrayPrototypeShift(queued), done: false });
      if (error !== null) {
        const e = error;
        error = null;
        return Promise.reject(e);
      }
      if (done) return PromiseResolve({ value: undefined, done: true });
      return new Promise((resolve, reject) => ArrayPrototypePush(waiting, { resolve, reject }));
    },
    return() {
      done = true;
      stop();
      for (let i = 0; i < waiting.length; i++) waiting[i].resolve({ value: undefined, done: true });
      waiting.length = 0;
      return PromiseResolve({ value: undefined, done: true });
    },
    throw(err) {
      onError(err);
      return Promise.reject(err);
    },
    [SymbolAsyncIterator]() {
      return this;
    },
  };
  return iterator;
}

export function listenerCount(emitter, type) {
  return emitter.listenerCount(type);
}

export function getEventListeners(emitter, type) {
  if (typeof emitter.listeners === "function") return emitter.listeners(type);
  throw new TypeError("getEventListeners() needs an EventEmitter here");
}

export function setMaxListeners(n = defaultMaxListeners, ...emitters) {
  if (emitters.length === 0) EventEmitter.defaultMaxListeners = n;
  else for (let i = 0; i < emitters.length; i++) emitters[i].setMaxListeners(n);
}

EventEmitter.once = once;
EventEmitter.on = on;
EventEmitter.listenerCount = listenerCount;
EventEmitter.getEventListeners = getEventListeners;
EventEmitter.setMaxListeners = setMaxListeners;

export const captureRejectionSymbol = EventEmitter.captureRejectionSymbol;
export const errorMonitor = EventEmitter.errorMonitor;
ObjectDefineProperty(EventEmitter, "name", { value: "EventEmitter" });

export default EventEmitter;
