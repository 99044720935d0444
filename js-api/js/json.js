// JSON.parse in parts (see ext/json.rs), loaded by bootstrap.js while the
// snapshot is made.

import { core, primordials } from "ext:core/mod.js";

const {
  ArrayPrototypePop,
  ArrayPrototypePush,
  FunctionPrototypeCall,
  JSONParse,
  ObjectDefineProperty,
  ObjectKeys,
  PromisePrototypeThen,
  RangeError,
  ReflectApply,
  StringPrototypeSlice,
  SyntaxError,
  TypedArrayPrototypeGetBuffer,
  Uint32Array,
} = primordials;

const {
  op_edge_json_check,
  op_edge_json_constants,
  op_edge_json_error,
  op_edge_json_plan,
  op_edge_json_take_plan,
} = core.ops;

// JSON.parse that a CPU or memory limit can stop. V8's parser never
// checks for termination, so a text longer than JSON_PART (64 Ki) code
// units is planned a step at a time by op_edge_json_plan (ext/json.rs) and
// built here from runs of members, each at most JSON_PART long and parsed
// by V8; the script can be stopped between them. A malformed text is
// validated by op_edge_json_check for the error. With a reviver, V8 parses
// the whole text (the reviver's calls are stoppable).
//
// The sizes, plan entries and step results come from the planner itself
// (edge_core::json), read once while the snapshot is made.
const [
  JSON_PART,
  JSON_MAX_DEPTH,
  JSON_OPEN_ARRAY,
  JSON_OPEN_OBJECT,
  JSON_RUN,
  JSON_CLOSE,
  STEP_MORE,
  STEP_DONE,
  STEP_INVALID,
  STEP_WHOLE,
  STEP_TOO_DEEP,
] = op_edge_json_constants();
const JSON_TOO_DEEP = `JSON text nested too deeply to parse (more than ${JSON_MAX_DEPTH} levels, ` +
  `or too many arrays and objects over ${JSON_PART} characters for its length)`;
function defineMember(object, key, value) {
  ObjectDefineProperty(object, key, {
    __proto__: null,
    value,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}
const ArrayConcat = Array.prototype.concat;
// Steps and parts are called through these JS functions on purpose: V8
// checks for termination when a JS function is entered, but a loop in
// unoptimized code only checks after many iterations, and calls into
// C++ (ops, JSON.parse) never check.
function planStep(text, restart) {
  return op_edge_json_plan(text, restart);
}
function checkStep(text, restart) {
  return op_edge_json_check(text, restart);
}
function parsePart(text) {
  return JSONParse(text);
}
// An array is gathered as a list of parts (arrays of members) and joined
// once at its end; an object gets its members as they come. A large member
// of an object is defined when it opens, to keep the key order.
function buildJson(text, plan) {
  const stack = [];
  let cur = null;
  let isArray = false;
  let root;
  for (let i = 0; i < plan.length; i += 3) {
    const op = plan[i];
    if (op === JSON_RUN) {
      const run = StringPrototypeSlice(text, plan[i + 1], plan[i + 2]);
      if (isArray) {
        ArrayPrototypePush(cur, parsePart("[" + run + "]"));
      } else {
        const part = parsePart("{" + run + "}");
        const keys = ObjectKeys(part);
        for (let j = 0; j < keys.length; j++) defineMember(cur, keys[j], part[keys[j]]);
      }
    } else if (op === JSON_CLOSE) {
      const value = !isArray ? cur : cur.length === 1 ? cur[0] : ReflectApply(ArrayConcat, [], cur);
      const parent = ArrayPrototypePop(stack);
      cur = parent.cur;
      isArray = parent.isArray;
      if (cur === null) root = value;
      else if (isArray) ArrayPrototypePush(cur, [value]);
      else defineMember(cur, parent.key, value);
    } else {
      let key;
      if (cur !== null && !isArray) {
        key = parsePart(StringPrototypeSlice(text, plan[i + 1], plan[i + 2]));
        if (typeof key !== "string") throw new SyntaxError("not a key");
        defineMember(cur, key, undefined);
      }
      ArrayPrototypePush(stack, { cur, isArray, key });
      isArray = op === JSON_OPEN_ARRAY;
      cur = isArray ? [] : {};
    }
  }
  return root;
}
function parse(text, reviver) {
  const s = typeof text === "string" ? text : `${text}`;
  if (s.length <= JSON_PART || typeof reviver === "function") return JSONParse(s, reviver);
  let status = planStep(s, true);
  while (status === STEP_MORE) status = planStep(s, false);
  if (status === STEP_WHOLE) return JSONParse(s);
  if (status === STEP_TOO_DEEP) throw new RangeError(JSON_TOO_DEEP);
  if (status === STEP_DONE) {
    const bytes = op_edge_json_take_plan();
    const plan = new Uint32Array(TypedArrayPrototypeGetBuffer(bytes), bytes.byteOffset, bytes.byteLength / 4);
    try {
      return buildJson(s, plan);
    } catch (e) {
      if (!(e instanceof SyntaxError)) throw e;
    }
  }
  // Malformed (the planner saw it, or V8 refused a run): the checker
  // words the error as V8 would.
  status = checkStep(s, true);
  while (status === STEP_MORE) status = checkStep(s, false);
  if (status === STEP_INVALID) throw new SyntaxError(op_edge_json_error());
  if (status === STEP_TOO_DEEP) throw new RangeError(JSON_TOO_DEEP);
  return JSONParse(s);
}
// Replaces JSON.parse, and the .json() of Request and Response (deno_fetch
// calls V8's parser directly).
export function installJsonParse(Request, Response) {
  ObjectDefineProperty(JSON, "parse", { value: parse, writable: true, configurable: true });
  for (const proto of [Request.prototype, Response.prototype]) {
    const text = proto.text;
    ObjectDefineProperty(proto, "json", {
      __proto__: null,
      value: function json() {
        return PromisePrototypeThen(FunctionPrototypeCall(text, this), parse);
      },
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
}
