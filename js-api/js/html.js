// HTMLRewriter as on Workers: `new HTMLRewriter().on(selector, handlers)
// .onDocument(handlers).transform(response)`, over Cloudflare's own
// streaming rewriter (lol_html) in src/ext/html.rs. The response's body is
// fed to the rewriter in pieces of at most 64 KiB at the pace of whoever
// reads the transformed body; each unit a handler wants (element, end tag,
// text chunk, comment, doctype, document end) comes here as a plain object,
// the handler (sync or async) is called on a token made from it, and the
// token's mutations go back to the rewriter in the order they were made.
// A token is valid only while its handler runs, as on Workers.

import { core, primordials } from "ext:core/mod.js";

const {
  ArrayPrototypeFindIndex,
  ArrayPrototypeMap,
  ArrayPrototypePush,
  ArrayPrototypeSplice,
  ArrayPrototypeSlice,
  ArrayPrototypeSymbolIterator,
  ObjectPrototypeIsPrototypeOf,
  RegExpPrototypeExec,
  SafeMap,
  String,
  StringPrototypeIncludes,
  StringPrototypeStartsWith,
  StringPrototypeToLowerCase,
  SymbolToStringTag,
  TypeError,
  TypedArrayPrototypeGetByteLength,
  TypedArrayPrototypeSubarray,
  Uint8Array,
  ArrayBufferIsView,
  FunctionPrototypeCall,
  PromisePrototype,
  PromisePrototypeCatch,
  PromisePrototypeThen,
} = primordials;
const {
  op_edge_html_selector,
  op_edge_html_new,
  op_edge_html_write,
  op_edge_html_end,
  op_edge_html_reply,
  op_edge_html_close,
} = core.ops;
const { getAsyncContext, setAsyncContext } = core;

const responseMod = core.loadExtScript("ext:deno_fetch/23_response.js");
const headersMod = core.loadExtScript("ext:deno_fetch/20_headers.js");
const { ReadableStream } = core.loadExtScript("ext:deno_web/06_streams.js");

/** Input bytes per step. */
const PIECE = 64 * 1024;

// The mutation numbers of src/ext/html.rs.
const OP_BEFORE = 0;
const OP_AFTER = 1;
const OP_PREPEND = 2;
const OP_APPEND = 3;
const OP_REPLACE = 4;
const OP_SET_INNER = 5;
const OP_REMOVE = 6;
const OP_REMOVE_KEEP = 7;
const OP_SET_ATTR = 8;
const OP_REMOVE_ATTR = 9;
const OP_SET_NAME = 10;
const OP_SET_TEXT = 11;
const OP_ON_END_TAG = 12;

const STALE =
  "This content token is no longer valid. Content tokens are only valid during the execution of the relevant content handler.";

// Content is a string. Workers also takes a ReadableStream or Response
// here (streamed in); that is not there yet, and is refused rather than
// inserted as "[object ReadableStream]".
function contentOf(content) {
  if (
    ObjectPrototypeIsPrototypeOf(ReadableStream.prototype, content) ||
    ObjectPrototypeIsPrototypeOf(responseMod.Response.prototype, content)
  ) {
    throw new TypeError("HTMLRewriter content must be a string here: ReadableStream and Response content is not supported yet");
  }
  return String(content);
}

function isHtml(options) {
  return options !== null && typeof options === "object" && options.html === true;
}

// What lol_html would refuse, refused here so the handler sees the throw.
const BAD_TAG = /[\t\n\f\r />]/;
const BAD_ATTR = /[\t\n\f\r />=]/;
function checkTagName(name) {
  if (name.length === 0 || RegExpPrototypeExec(/^[A-Za-z]/, name) === null) {
    throw new TypeError(`Invalid tag name ${JSON.stringify(name)}: it must start with an ASCII letter`);
  }
  if (RegExpPrototypeExec(BAD_TAG, name) !== null) {
    throw new TypeError(`Invalid tag name ${JSON.stringify(name)}: it has a forbidden character`);
  }
}
function checkAttrName(name) {
  if (name.length === 0 || RegExpPrototypeExec(BAD_ATTR, name) !== null) {
    throw new TypeError(`Invalid attribute name ${JSON.stringify(name)}`);
  }
}
function checkCommentText(text) {
  if (
    StringPrototypeIncludes(text, "-->") || StringPrototypeIncludes(text, "--!>") ||
    StringPrototypeStartsWith(text, ">") || StringPrototypeStartsWith(text, "->")
  ) {
    throw new TypeError("The comment text would end the comment");
  }
}

// A token: its mutations, and whether its handler still runs.
class Token {
  #muts = [];
  #valid = true;
  _push(op, s = "", v = "", html = false, id = 0) {
    if (!this.#valid) throw new TypeError(STALE);
    ArrayPrototypePush(this.#muts, { op, s, v, html, id });
  }
  _check() {
    if (!this.#valid) throw new TypeError(STALE);
  }
  _finish() {
    this.#valid = false;
    return this.#muts;
  }
}

class Element extends Token {
  #tag;
  #attrs;
  #selfClosing;
  #canHaveContent;
  #ns;
  #removed = false;
  #endTags;
  constructor(ev, endTags) {
    super();
    this.#tag = ev.tag;
    this.#attrs = ev.attrs;
    this.#selfClosing = ev.selfClosing;
    this.#canHaveContent = ev.canHaveContent;
    this.#ns = ev.ns;
    this.#endTags = endTags;
  }
  get tagName() {
    return this.#tag;
  }
  set tagName(name) {
    name = String(name);
    checkTagName(name);
    this._push(OP_SET_NAME, name);
    this.#tag = StringPrototypeToLowerCase(name);
  }
  get attributes() {
    const copy = ArrayPrototypeMap(this.#attrs, (a) => [a[0], a[1]]);
    return ArrayPrototypeSymbolIterator(copy);
  }
  get namespaceURI() {
    return this.#ns;
  }
  get removed() {
    return this.#removed;
  }
  get selfClosing() {
    return this.#selfClosing;
  }
  get canHaveContent() {
    return this.#canHaveContent;
  }
  #find(name) {
    const lower = StringPrototypeToLowerCase(String(name));
    return ArrayPrototypeFindIndex(this.#attrs, (a) => a[0] === lower);
  }
  getAttribute(name) {
    const i = this.#find(name);
    return i < 0 ? null : this.#attrs[i][1];
  }
  hasAttribute(name) {
    return this.#find(name) >= 0;
  }
  setAttribute(name, value) {
    name = String(name);
    value = String(value);
    checkAttrName(name);
    this._push(OP_SET_ATTR, name, value);
    const i = this.#find(name);
    if (i < 0) ArrayPrototypePush(this.#attrs, [StringPrototypeToLowerCase(name), value]);
    else this.#attrs[i][1] = value;
    return this;
  }
  removeAttribute(name) {
    name = String(name);
    this._push(OP_REMOVE_ATTR, name);
    const i = this.#find(name);
    if (i >= 0) ArrayPrototypeSplice(this.#attrs, i, 1);
    return this;
  }
  before(content, options) {
    this._push(OP_BEFORE, contentOf(content), "", isHtml(options));
    return this;
  }
  after(content, options) {
    this._push(OP_AFTER, contentOf(content), "", isHtml(options));
    return this;
  }
  prepend(content, options) {
    this._push(OP_PREPEND, contentOf(content), "", isHtml(options));
    return this;
  }
  append(content, options) {
    this._push(OP_APPEND, contentOf(content), "", isHtml(options));
    return this;
  }
  replace(content, options) {
    this._push(OP_REPLACE, contentOf(content), "", isHtml(options));
    this.#removed = true;
    return this;
  }
  setInnerContent(content, options) {
    this._push(OP_SET_INNER, contentOf(content), "", isHtml(options));
    return this;
  }
  remove() {
    this._push(OP_REMOVE);
    this.#removed = true;
    return this;
  }
  removeAndKeepContent() {
    this._push(OP_REMOVE_KEEP);
    this.#removed = true;
    return this;
  }
  onEndTag(handler) {
    this._check();
    if (typeof handler !== "function") throw new TypeError("onEndTag: the handler must be a function");
    if (!this.#canHaveContent) throw new TypeError(`${this.#tag} can't have content, so has no end tag`);
    const id = this.#endTags.next++;
    this.#endTags.map.set(id, handler);
    this._push(OP_ON_END_TAG, "", "", false, id);
  }
  get [SymbolToStringTag]() {
    return "Element";
  }
}

class EndTag extends Token {
  #name;
  #removed = false;
  constructor(ev) {
    super();
    this.#name = ev.name;
  }
  get name() {
    return this.#name;
  }
  set name(name) {
    name = String(name);
    checkTagName(name);
    this._push(OP_SET_NAME, name);
    this.#name = StringPrototypeToLowerCase(name);
  }
  get removed() {
    return this.#removed;
  }
  before(content, options) {
    this._push(OP_BEFORE, contentOf(content), "", isHtml(options));
    return this;
  }
  after(content, options) {
    this._push(OP_AFTER, contentOf(content), "", isHtml(options));
    return this;
  }
  replace(content, options) {
    this._push(OP_REPLACE, contentOf(content), "", isHtml(options));
    this.#removed = true;
    return this;
  }
  remove() {
    this._push(OP_REMOVE);
    this.#removed = true;
    return this;
  }
  get [SymbolToStringTag]() {
    return "EndTag";
  }
}

// Text chunks and comments: before, after, replace, remove.
class Piece extends Token {
  #removed = false;
  get removed() {
    return this.#removed;
  }
  before(content, options) {
    this._push(OP_BEFORE, contentOf(content), "", isHtml(options));
    return this;
  }
  after(content, options) {
    this._push(OP_AFTER, contentOf(content), "", isHtml(options));
    return this;
  }
  replace(content, options) {
    this._push(OP_REPLACE, contentOf(content), "", isHtml(options));
    this.#removed = true;
    return this;
  }
  remove() {
    this._push(OP_REMOVE);
    this.#removed = true;
    return this;
  }
}

class Text extends Piece {
  #text;
  #last;
  constructor(ev) {
    super();
    this.#text = ev.text;
    this.#last = ev.last;
  }
  get text() {
    return this.#text;
  }
  get lastInTextNode() {
    return this.#last;
  }
  get [SymbolToStringTag]() {
    return "Text";
  }
}

class Comment extends Piece {
  #text;
  constructor(ev) {
    super();
    this.#text = ev.text;
  }
  get text() {
    return this.#text;
  }
  set text(text) {
    text = String(text);
    checkCommentText(text);
    this._push(OP_SET_TEXT, text);
    this.#text = text;
  }
  get [SymbolToStringTag]() {
    return "Comment";
  }
}

class Doctype extends Token {
  #ev;
  #removed = false;
  constructor(ev) {
    super();
    this.#ev = ev;
  }
  get removed() {
    return this.#removed;
  }
  remove() {
    this._push(OP_REMOVE);
    this.#removed = true;
    return this;
  }
  get name() {
    return this.#ev.name ?? null;
  }
  get publicId() {
    return this.#ev.publicId ?? null;
  }
  get systemId() {
    return this.#ev.systemId ?? null;
  }
  get [SymbolToStringTag]() {
    return "Doctype";
  }
}

class DocumentEnd extends Token {
  append(content, options) {
    this._push(OP_APPEND, contentOf(content), "", isHtml(options));
    return this;
  }
  get [SymbolToStringTag]() {
    return "DocumentEnd";
  }
}

const ELEMENT_KEYS = ["element", "comments", "text"];
const DOCUMENT_KEYS = ["doctype", "comments", "text", "end"];

function handlersOf(handlers, keys, what) {
  if (handlers === null || typeof handlers !== "object") {
    throw new TypeError(`${what}: the handlers must be an object`);
  }
  const out = { object: handlers };
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    const f = handlers[key];
    if (f !== undefined && typeof f !== "function") {
      throw new TypeError(`${what}: handlers.${key} must be a function`);
    }
    out[key] = f;
  }
  return out;
}

// The charset a Content-Type names, "" when none.
function charsetOf(contentType) {
  if (contentType === null) return "";
  const m = RegExpPrototypeExec(/;\s*charset\s*=\s*"?([^";\s]+)/i, contentType);
  return m === null ? "" : m[1];
}

class HTMLRewriter {
  #handlers = [];
  on(selector, handlers) {
    selector = String(selector);
    const h = handlersOf(handlers, ELEMENT_KEYS, "HTMLRewriter.on");
    op_edge_html_selector(selector);
    h.selector = selector;
    ArrayPrototypePush(this.#handlers, h);
    return this;
  }
  onDocument(handlers) {
    const h = handlersOf(handlers, DOCUMENT_KEYS, "HTMLRewriter.onDocument");
    h.selector = null;
    ArrayPrototypePush(this.#handlers, h);
    return this;
  }
  transform(response) {
    if (!ObjectPrototypeIsPrototypeOf(responseMod.ResponsePrototype, response)) {
      throw new TypeError("HTMLRewriter.transform: the argument must be a Response");
    }
    const headers = new headersMod.Headers(response.headers);
    headers.delete("content-length");
    const init = { status: response.status, statusText: response.statusText, headers };
    const body = response.body;
    if (body === null) return new responseMod.Response(null, init);
    const handlers = ArrayPrototypeSlice(this.#handlers);
    const specs = ArrayPrototypeMap(handlers, (h) => ({
      selector: h.selector,
      element: h.element !== undefined,
      comments: h.comments !== undefined,
      text: h.text !== undefined,
      doctype: h.doctype !== undefined,
      end: h.end !== undefined,
    }));
    const rw = op_edge_html_new(specs, charsetOf(response.headers.get("content-type")));
    const run = new Run(rw, handlers, body.getReader(), getAsyncContext());
    const stream = new ReadableStream({
      pull: (controller) => run.pull(controller),
      cancel: (reason) => run.cancel(reason),
    }, { highWaterMark: 0 });
    return new responseMod.Response(stream, init);
  }
  get [SymbolToStringTag]() {
    return "HTMLRewriter";
  }
}

// One transform: its rewriter, its input reader and where the input is.
class Run {
  constructor(rw, handlers, reader, context) {
    this.rw = rw;
    this.handlers = handlers;
    this.reader = reader;
    this.context = context;
    this.endTags = { next: 1, map: new SafeMap() };
    this.input = null;
    this.at = 0;
    this.over = false;
  }

  // Runs until some output is given to the reader (or the end), so the
  // output held at once is about one step's.
  pull(controller) {
    const prev = getAsyncContext();
    setAsyncContext(this.context);
    try {
      return PromisePrototypeThen(this.drive(controller), undefined, (err) => this.fail(controller, err));
    } finally {
      setAsyncContext(prev);
    }
  }

  async drive(controller) {
    let gave = false;
    let step = null;
    for (;;) {
      if (step === null) {
        if (gave) return;
        step = await this.feed();
      }
      if (step.out !== undefined && step.out !== null) {
        controller.enqueue(new Uint8Array(step.out));
        gave = true;
      }
      if (step.done) {
        this.over = true;
        controller.close();
        return;
      }
      const ev = step.ev;
      if (ev === undefined || ev === null) {
        step = null;
      } else {
        step = this.handle(ev);
        if (ObjectPrototypeIsPrototypeOf(PromisePrototype, step)) step = await step;
      }
    }
  }

  // The next piece of input, or the end.
  async feed() {
    while (this.input === null) {
      const { value, done } = await this.reader.read();
      if (done) return op_edge_html_end(this.rw);
      if (!ArrayBufferIsView(value) || !ObjectPrototypeIsPrototypeOf(Uint8Array.prototype, value)) {
        throw new TypeError("HTMLRewriter: the body's stream must give Uint8Arrays");
      }
      if (TypedArrayPrototypeGetByteLength(value) > 0) {
        this.input = value;
        this.at = 0;
      }
    }
    const len = TypedArrayPrototypeGetByteLength(this.input);
    const end = this.at + PIECE < len ? this.at + PIECE : len;
    const piece = this.at === 0 && end === len ? this.input : TypedArrayPrototypeSubarray(this.input, this.at, end);
    this.at = end;
    if (end === len) this.input = null;
    return op_edge_html_write(this.rw, piece);
  }

  // Calls the handler of `ev` on its token: the next step, or a promise of
  // it when the handler is async.
  handle(ev) {
    let token;
    let f;
    let self;
    if (ev.kind === "endTag") {
      f = this.endTags.map.get(ev.id);
      this.endTags.map.delete(ev.id);
      token = new EndTag(ev);
      self = undefined;
    } else {
      const h = this.handlers[ev.h];
      self = h.object;
      switch (ev.kind) {
        case "element":
          f = h.element;
          token = new Element(ev, this.endTags);
          break;
        case "text":
          f = h.text;
          token = new Text(ev);
          break;
        case "comment":
          f = h.comments;
          token = new Comment(ev);
          break;
        case "doctype":
          f = h.doctype;
          token = new Doctype(ev);
          break;
        default:
          f = h.end;
          token = new DocumentEnd(ev);
      }
    }
    let r;
    try {
      r = FunctionPrototypeCall(f, self, token);
    } catch (err) {
      token._finish();
      throw err;
    }
    if (r !== null && typeof r === "object" && typeof r.then === "function") {
      return this.settle(r, token);
    }
    return op_edge_html_reply(this.rw, token._finish());
  }

  // An async handler: the step once its promise settles.
  async settle(r, token) {
    try {
      await r;
    } finally {
      token._finish();
    }
    return op_edge_html_reply(this.rw, token._finish());
  }

  fail(controller, err) {
    if (this.over) return;
    this.over = true;
    op_edge_html_close(this.rw);
    PromisePrototypeCatch(this.reader.cancel(err), () => {});
    controller.error(err);
  }

  cancel(reason) {
    if (this.over) return undefined;
    this.over = true;
    op_edge_html_close(this.rw);
    return this.reader.cancel(reason);
  }
}

export { HTMLRewriter };
