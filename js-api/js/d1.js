// D1 database bindings (`env.NAME` for a `[[worker.d1]]`): Cloudflare's
// D1Database and D1PreparedStatement over the ops of src/ext/d1.rs, with
// D1's result shapes (results, meta) and errors (D1_ERROR, D1_TYPE_ERROR,
// D1_COLUMN_NOTFOUND).

import { core, primordials } from "ext:core/mod.js";
import { bytesOfView } from "ext:edge_runtime/kv.js";

const {
  ArrayBufferIsView,
  ArrayBufferPrototypeGetByteLength,
  ArrayIsArray,
  ArrayPrototypeMap,
  ArrayPrototypeUnshift,
  Error,
  NumberIsSafeInteger,
  ObjectHasOwn,
  ObjectPrototypeIsPrototypeOf,
  String,
  SymbolToStringTag,
  TypeError,
  TypedArrayPrototypeSlice,
  Uint8Array,
} = primordials;
const { op_edge_d1_batch, op_edge_d1_exec } = core.ops;

/** The per-request gate: throws when the request may make no more calls. */
let admit = () => {};

/** Set by the bootstrap (it knows the request a call belongs to). */
export function setD1Admission(fn) {
  admit = fn;
}

function bytesOf(v) {
  return TypedArrayPrototypeSlice(bytesOfView(v));
}

function typeError(v) {
  return new Error(`D1_TYPE_ERROR: Type '${typeof v}' not supported for value '${String(v)}'`);
}

// A bound value as the op takes it (see Param in d1.rs).
function param(v) {
  if (v === null) return { t: 0 };
  switch (typeof v) {
    case "boolean":
      return { t: 1, n: v ? 1 : 0 };
    case "number":
      return NumberIsSafeInteger(v) ? { t: 1, n: v } : { t: 2, n: v };
    case "string":
      return { t: 3, s: v };
    case "object": {
      if (ArrayBufferIsView(v)) return { t: 4, b: bytesOf(v) };
      if (ArrayIsArray(v)) {
        // D1 gives blobs as arrays of byte values and takes them back.
        const b = new Uint8Array(v.length);
        for (let i = 0; i < v.length; i++) b[i] = v[i];
        return { t: 4, b };
      }
      try {
        ArrayBufferPrototypeGetByteLength(v);
        return { t: 4, b: TypedArrayPrototypeSlice(new Uint8Array(v)) };
      } catch {
        throw typeError(v);
      }
    }
    default:
      throw typeError(v);
  }
}

function rowObjects(answer) {
  const { columns, rows } = answer;
  return ArrayPrototypeMap(rows, (row) => {
    const o = {};
    for (let i = 0; i < columns.length; i++) o[columns[i]] = row[i];
    return o;
  });
}

function meta(answer) {
  return {
    served_by: "edge",
    duration: answer.duration,
    changes: answer.changes,
    last_row_id: answer.lastRowId,
    changed_db: answer.changes > 0,
    size_after: answer.sizeAfter,
    rows_read: answer.rows.length,
    rows_written: answer.changes,
  };
}

function result(answer) {
  return { success: true, meta: meta(answer), results: rowObjects(answer) };
}

class D1PreparedStatement {
  #db;
  #sql;
  #params;

  constructor(db, sql, params) {
    this.#db = db;
    this.#sql = sql;
    this.#params = params;
  }

  bind(...values) {
    return new D1PreparedStatement(this.#db, this.#sql, ArrayPrototypeMap(values, param));
  }

  /** For batch(): which database and what to run. */
  static query(s) {
    return { db: s.#db, query: { sql: s.#sql, params: s.#params } };
  }

  async #run() {
    admit();
    const answers = await op_edge_d1_batch(this.#db, [{ sql: this.#sql, params: this.#params }]);
    return answers[0];
  }

  async first(column = undefined) {
    const answer = await this.#run();
    const rows = rowObjects(answer);
    if (rows.length === 0) return null;
    if (column === undefined) return rows[0];
    if (!ObjectHasOwn(rows[0], column)) throw new Error("D1_COLUMN_NOTFOUND: Column not found");
    return rows[0][column];
  }

  async all() {
    return result(await this.#run());
  }

  async run() {
    return result(await this.#run());
  }

  async raw(options = undefined) {
    const answer = await this.#run();
    const rows = answer.rows;
    if (options?.columnNames) ArrayPrototypeUnshift(rows, answer.columns);
    return rows;
  }

  get [SymbolToStringTag]() {
    return "D1PreparedStatement";
  }
}

class D1Database {
  #index;

  constructor(index) {
    this.#index = index;
  }

  prepare(sql) {
    return new D1PreparedStatement(this.#index, String(sql), []);
  }

  async batch(statements) {
    if (!ArrayIsArray(statements)) throw new TypeError("D1_ERROR: batch() takes an array of prepared statements");
    const queries = ArrayPrototypeMap(statements, (s) => {
      if (!ObjectPrototypeIsPrototypeOf(D1PreparedStatement.prototype, s)) {
        throw new TypeError("D1_ERROR: batch() takes an array of prepared statements");
      }
      const { db, query } = D1PreparedStatement.query(s);
      if (db !== this.#index) throw new TypeError("D1_ERROR: a statement of another database in batch()");
      return query;
    });
    if (queries.length === 0) return [];
    admit();
    const answers = await op_edge_d1_batch(this.#index, queries);
    return ArrayPrototypeMap(answers, result);
  }

  async exec(sql) {
    admit();
    return await op_edge_d1_exec(this.#index, String(sql));
  }

  withSession() {
    // One copy of each database per node: every session reads its writes.
    return this;
  }

  get [SymbolToStringTag]() {
    return "D1Database";
  }
}

export function d1Database(index) {
  return new D1Database(index);
}
