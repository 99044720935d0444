// Replacements for builtins a limit could not stop, installed when this
// module is evaluated (while the snapshot is made; bootstrap.js imports it).

import { primordials } from "ext:core/mod.js";

const {
  ArrayIsArray,
  FunctionPrototypeCall,
  MathFloor,
  MathMax,
  MathMin,
  MathTrunc,
  ObjectDefineProperty,
  RangeError,
  ReflectApply,
  StringPrototypeIndexOf,
} = primordials;

// Builtins V8 runs to the end without checking for termination, on
// inputs that cost almost nothing to make: a sparse array of length 10^8
// (`new Array(1e8).fill(0)` ran 9 s past a 50 ms CPU limit and took 1.5
// GB), or a string of 2^28 characters (`"x".repeat(2 ** 28).split("")`
// aborts V8, and so the process, with "invalid size"). Large calls are
// done in slices through a JS function (where V8 checks), or refused with
// the RangeError V8 gives for arrays it cannot make.
const SLICE = 1 << 16;
const MAX_ARRAY = 2 ** 27 - 2;
const nativeFill = Array.prototype.fill;
const nativeCopyWithin = Array.prototype.copyWithin;
const nativeReverse = Array.prototype.reverse;
const nativeSplit = String.prototype.split;
function relativeIndex(value, len, otherwise) {
  if (value === undefined) return otherwise;
  const n = MathTrunc(+value) || 0;
  return n < 0 ? MathMax(len + n, 0) : MathMin(n, len);
}
// The length the Array methods will go up to: an array's own, or an
// array-like's `length` as ToLength reads it (read once more by the
// builtin: a getter runs twice).
function lengthOf(o) {
  if (ArrayIsArray(o)) return o.length;
  if (o === null || o === undefined) return 0;
  const n = MathTrunc(+o.length) || 0;
  return n > 0 ? n : 0;
}
// A slice is called through this JS function: V8 checks for termination on
// entering it (an unoptimized loop checks only every so many iterations).
function callSlice(fn, o, a, b, c) {
  return FunctionPrototypeCall(fn, o, a, b, c);
}
function fill(value, start = undefined, end = undefined) {
  const len = lengthOf(this);
  if (len <= SLICE) {
    return FunctionPrototypeCall(nativeFill, this, value, start, end);
  }
  let k = relativeIndex(start, len, 0);
  const last = relativeIndex(end, len, len);
  for (; k < last; k += SLICE) callSlice(nativeFill, this, value, k, MathMin(k + SLICE, last));
  return this;
}
function copyWithin(target, start, end = undefined) {
  const len = lengthOf(this);
  if (len <= SLICE) {
    return FunctionPrototypeCall(nativeCopyWithin, this, target, start, end);
  }
  const to = relativeIndex(target, len, 0);
  const from = relativeIndex(start, len, 0);
  const count = MathMin(relativeIndex(end, len, len) - from, len - to);
  if (from < to && to < from + count) {
    // Overlapping, source first: copy from the end, as the spec does.
    for (let i = count; i > 0; i -= SLICE) {
      const n = MathMin(SLICE, i);
      callSlice(nativeCopyWithin, this, to + i - n, from + i - n, from + i);
    }
  } else {
    for (let i = 0; i < count; i += SLICE) {
      callSlice(nativeCopyWithin, this, to + i, from + i, from + MathMin(i + SLICE, count));
    }
  }
  return this;
}
function reverse() {
  const len = lengthOf(this);
  if (len <= 1 << 24) {
    return FunctionPrototypeCall(nativeReverse, this);
  }
  // The spec's steps, in JS: V8's own loop over a sparse array visits
  // every index without checking for termination.
  const o = this;
  const middle = MathFloor(len / 2);
  for (let lower = 0; lower !== middle; lower++) {
    const upper = len - lower - 1;
    const lowerExists = lower in o;
    const lowerValue = lowerExists ? o[lower] : undefined;
    const upperExists = upper in o;
    const upperValue = upperExists ? o[upper] : undefined;
    if (upperExists) o[lower] = upperValue;
    else if (lowerExists) delete o[lower];
    if (lowerExists) o[upper] = lowerValue;
    else if (upperExists) delete o[upper];
  }
  return o;
}
function split(separator, limit) {
  // A string splits into at most its length + 1 parts.
  if (
    typeof this !== "string" || this.length < MAX_ARRAY || typeof separator !== "string" ||
    (limit !== undefined && limit >>> 0 <= MAX_ARRAY)
  ) {
    return FunctionPrototypeCall(nativeSplit, this, separator, limit);
  }
  let parts = 1;
  if (separator === "") {
    parts = this.length;
  } else {
    for (let at = 0; parts <= MAX_ARRAY; parts++) {
      at = StringPrototypeIndexOf(this, separator, at);
      if (at === -1) break;
      at += separator.length;
    }
  }
  if (parts > MAX_ARRAY) throw new RangeError("Invalid array length");
  return FunctionPrototypeCall(nativeSplit, this, separator, limit);
}
// The longest array the worker's Array methods go through (bind() sets it
// from the memory budget).
export function setLongestArray(n) {
  longestArray = n;
}

for (const [proto, fns] of [[Array.prototype, [fill, copyWithin, reverse]], [String.prototype, [split]]]) {
  for (const fn of fns) {
    ObjectDefineProperty(proto, fn.name, { value: fn, writable: true, configurable: true });
  }
}
// The other Array methods that V8 runs index by index over a sparse array
// or an array-like (1-9 s for a length of 10^8, termination unchecked)
// refuse one longer than the worker's memory budget could hold densely:
// such an array can only be sparse. (bind() sets the figure: a quarter of
// the budget.)
let longestArray = 2 ** 25;
function tooLong(name, length) {
  return new RangeError(
    `Array.prototype.${name}: an array of length ${length} is longer than this worker's memory ` +
      `limit could hold (${longestArray} elements); a sparse array this long is not supported`,
  );
}
for (const name of [
  "every", "filter", "flat", "flatMap", "forEach", "indexOf", "join", "lastIndexOf", "map",
  "reduce", "reduceRight", "shift", "slice", "some", "sort", "splice", "toReversed",
  "toSorted", "toSpliced", "toString", "unshift", "with",
]) {
  const native = Array.prototype[name];
  // Arity matters (`splice(0)` is not `splice(0, undefined)`): the
  // arguments are passed on as they came. (The wrapper costs ~15 ns a
  // call: TurboFan no longer inlines the builtin into the caller.)
  const guarded = {
    [name]() {
      const length = lengthOf(this);
      if (length > longestArray) throw tooLong(name, length);
      return ReflectApply(native, this, arguments);
    },
  }[name];
  ObjectDefineProperty(guarded, "length", { value: native.length });
  ObjectDefineProperty(Array.prototype, name, { value: guarded, writable: true, configurable: true });
}

