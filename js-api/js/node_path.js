// `node:path` (with `compatibility_flags = ["nodejs_compat"]`): Node's
// POSIX path functions, as Workers has them (the working directory is
// `/`). `win32` is not there.

import { primordials } from "ext:core/mod.js";

const { ArrayPrototypeJoin, ArrayPrototypePop, ArrayPrototypePush, StringPrototypeLastIndexOf, StringPrototypeSlice, TypeError } =
  primordials;

function check(p, name = "path") {
  if (typeof p !== "string") {
    throw new TypeError(`The "${name}" argument must be of type string. Received ${typeof p}`);
  }
}

// `.` and `..` resolved, repeated slashes dropped; `..` above the start
// kept unless the path is absolute.
function normalizeParts(path, absolute) {
  const out = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") ArrayPrototypePop(out);
      else if (!absolute) ArrayPrototypePush(out, "..");
      continue;
    }
    ArrayPrototypePush(out, part);
  }
  return ArrayPrototypeJoin(out, "/");
}

export const sep = "/";
export const delimiter = ":";

export function isAbsolute(path) {
  check(path);
  return path.length > 0 && path[0] === "/";
}

export function normalize(path) {
  check(path);
  if (path.length === 0) return ".";
  const absolute = path[0] === "/";
  const trailing = path[path.length - 1] === "/";
  let p = normalizeParts(path, absolute);
  if (p.length === 0) return absolute ? "/" : trailing ? "./" : ".";
  if (trailing) p += "/";
  return absolute ? "/" + p : p;
}

export function join(...paths) {
  const parts = [];
  for (const p of paths) {
    check(p);
    if (p.length > 0) ArrayPrototypePush(parts, p);
  }
  return parts.length === 0 ? "." : normalize(ArrayPrototypeJoin(parts, "/"));
}

export function resolve(...paths) {
  let resolved = "";
  let absolute = false;
  for (let i = paths.length - 1; i >= -1 && !absolute; i--) {
    const p = i >= 0 ? paths[i] : cwd();
    check(p);
    if (p.length === 0) continue;
    resolved = p + "/" + resolved;
    absolute = p[0] === "/";
  }
  const p = normalizeParts(resolved, true);
  return "/" + p;
}

function cwd() {
  return "/";
}

export function relative(from, to) {
  check(from, "from");
  check(to, "to");
  if (from === to) return "";
  const a = resolve(from).split("/").filter((x) => x !== "");
  const b = resolve(to).split("/").filter((x) => x !== "");
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const up = [];
  for (let j = i; j < a.length; j++) ArrayPrototypePush(up, "..");
  return ArrayPrototypeJoin([...up, ...b.slice(i)], "/");
}

export function dirname(path) {
  check(path);
  if (path.length === 0) return ".";
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end--;
  const i = StringPrototypeLastIndexOf(StringPrototypeSlice(path, 0, end), "/");
  if (i === -1) return ".";
  if (i === 0) return "/";
  let d = StringPrototypeSlice(path, 0, i);
  while (d.length > 1 && d[d.length - 1] === "/") d = StringPrototypeSlice(d, 0, -1);
  return d;
}

export function basename(path, ext = undefined) {
  check(path);
  if (ext !== undefined) check(ext, "ext");
  let end = path.length;
  while (end > 0 && path[end - 1] === "/") end--;
  if (end === 0) return "";
  const start = StringPrototypeLastIndexOf(StringPrototypeSlice(path, 0, end), "/") + 1;
  let base = StringPrototypeSlice(path, start, end);
  if (ext !== undefined && ext !== base && base.endsWith(ext)) base = StringPrototypeSlice(base, 0, base.length - ext.length);
  return base;
}

export function extname(path) {
  check(path);
  const base = basename(path);
  const i = StringPrototypeLastIndexOf(base, ".");
  if (i <= 0) return "";
  return StringPrototypeSlice(base, i);
}

export function parse(path) {
  check(path);
  const root = path[0] === "/" ? "/" : "";
  const base = basename(path);
  const ext = extname(path);
  let dir = dirname(path);
  if (dir === "." && !path.includes("/")) dir = "";
  return { root, dir, base, ext, name: ext ? StringPrototypeSlice(base, 0, base.length - ext.length) : base };
}

export function format(p) {
  if (p === null || typeof p !== "object") {
    throw new TypeError(`The "pathObject" argument must be of type object. Received ${typeof p}`);
  }
  const dir = p.dir || p.root || "";
  const base = p.base || `${p.name || ""}${p.ext ? (p.ext[0] === "." ? p.ext : "." + p.ext) : ""}`;
  if (!dir) return base;
  return dir === p.root ? `${dir}${base}` : `${dir}/${base}`;
}

export function toNamespacedPath(path) {
  return path;
}

const path = {
  sep,
  delimiter,
  isAbsolute,
  normalize,
  join,
  resolve,
  relative,
  dirname,
  basename,
  extname,
  parse,
  format,
  toNamespacedPath,
};
path.posix = path;
export const posix = path;
export default path;
