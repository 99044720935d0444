//! D1 database bindings: the ops behind `env.DB.prepare(...).all()`,
//! `batch()` and `exec()` over the [`SqlDatabase`]s the isolate's worker
//! names (its own table, indexed from JS). Calls run on the blocking pool
//! through the same gate as KV's; the engine bounds each call's time and
//! the bytes of its results (`edge_storage::sql`), and the rows become JS
//! values on the isolate's heap, counted like any other.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use deno_core::{op2, JsBuffer, OpState};
use deno_error::JsErrorBox;
use edge_storage::sql::{SqlDatabase, SqlError, SqlResult, SqlValue, Statement};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::kv::{gated, Charged};

/// The D1 databases of the isolate's worker, in the order its bindings are
/// given to JS.
pub struct D1Bindings(pub Vec<Arc<dyn SqlDatabase>>);

fn database(state: &Rc<RefCell<OpState>>, db: u32) -> Result<Arc<dyn SqlDatabase>, JsErrorBox> {
  state
    .borrow()
    .try_borrow::<D1Bindings>()
    .and_then(|b| b.0.get(db as usize).cloned())
    .ok_or_else(|| JsErrorBox::type_error("D1_ERROR: no such database binding"))
}

fn failed(e: SqlError) -> JsErrorBox {
  JsErrorBox::generic(format!("D1_ERROR: {e}"))
}

/// A bound parameter as JS hands it over: `t` is its kind (0 null, 1
/// integer, 2 real, 3 text, 4 blob).
#[derive(Deserialize)]
pub struct Param {
  t: u8,
  #[serde(default)]
  n: f64,
  #[serde(default)]
  s: Option<String>,
  #[serde(default)]
  b: Option<JsBuffer>,
}

#[derive(Deserialize)]
pub struct Query {
  sql: String,
  params: Vec<Param>,
}

fn statement(q: Query) -> Result<Statement, JsErrorBox> {
  let params = q
    .params
    .into_iter()
    .map(|p| match p.t {
      0 => Ok(SqlValue::Null),
      1 => Ok(SqlValue::Integer(p.n as i64)),
      2 => Ok(SqlValue::Real(p.n)),
      3 => Ok(SqlValue::Text(p.s.unwrap_or_default())),
      4 => Ok(SqlValue::Blob(p.b.map(|b| b.to_vec()).unwrap_or_default())),
      _ => Err(JsErrorBox::type_error("D1_TYPE_ERROR: unknown parameter kind")),
    })
    .collect::<Result<_, _>>()?;
  Ok(Statement { sql: q.sql, params })
}

/// A value out, as D1 gives it: numbers, strings, null, blobs as arrays
/// of byte values.
struct Out<'a>(&'a SqlValue);

impl Serialize for Out<'_> {
  fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
    match self.0 {
      SqlValue::Null => s.serialize_unit(),
      SqlValue::Integer(i) => s.serialize_f64(*i as f64),
      SqlValue::Real(f) => s.serialize_f64(*f),
      SqlValue::Text(t) => s.serialize_str(t),
      SqlValue::Blob(b) => {
        let mut seq = s.serialize_seq(Some(b.len()))?;
        for byte in b {
          seq.serialize_element(byte)?;
        }
        seq.end()
      }
    }
  }
}

/// One statement's result for JS.
pub struct Answer(SqlResult);

impl Serialize for Answer {
  fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let r = &self.0;
    let mut st = s.serialize_struct("Answer", 6)?;
    st.serialize_field("columns", &r.columns)?;
    let rows: Vec<Vec<Out<'_>>> = r.rows.iter().map(|row| row.iter().map(Out).collect()).collect();
    st.serialize_field("rows", &rows)?;
    st.serialize_field("changes", &(r.changes as f64))?;
    st.serialize_field("lastRowId", &(r.last_row_id as f64))?;
    st.serialize_field("duration", &r.duration_ms)?;
    st.serialize_field("sizeAfter", &(r.size_after as f64))?;
    st.end()
  }
}

/// Runs `queries` in one transaction (one statement's `all()` is a batch
/// of one).
#[op2]
#[serde]
pub async fn op_edge_d1_batch(
  state: Rc<RefCell<OpState>>,
  #[smi] db: u32,
  #[serde] queries: Vec<Query>,
) -> Result<Vec<Answer>, JsErrorBox> {
  let database = database(&state, db)?;
  let bytes: usize = queries
    .iter()
    .map(|q| {
      q.sql.len()
        + q
          .params
          .iter()
          .map(|p| p.b.as_ref().map_or(0, |b| b.len()) + p.s.as_ref().map_or(0, |s| s.len()))
          .sum::<usize>()
    })
    .sum();
  let _held = Charged::new(&state, bytes);
  let statements = queries.into_iter().map(statement).collect::<Result<Vec<_>, _>>()?;
  let results = gated(&state, move || database.batch(&statements))
    .await
    .map_err(|e| JsErrorBox::generic(format!("D1_ERROR: {e}")))?
    .map_err(failed)?;
  Ok(results.into_iter().map(Answer).collect())
}

#[derive(Serialize)]
pub struct Executed {
  count: usize,
  duration: f64,
}

/// Runs a script of statements without parameters.
#[op2]
#[serde]
pub async fn op_edge_d1_exec(
  state: Rc<RefCell<OpState>>,
  #[smi] db: u32,
  #[string] script: String,
) -> Result<Executed, JsErrorBox> {
  let database = database(&state, db)?;
  let start = std::time::Instant::now();
  let count = gated(&state, move || database.exec(&script))
    .await
    .map_err(|e| JsErrorBox::generic(format!("D1_EXEC_ERROR: {e}")))?
    .map_err(|e| JsErrorBox::generic(format!("D1_EXEC_ERROR: Error in line 1: {e}")))?;
  Ok(Executed {
    count,
    duration: start.elapsed().as_secs_f64() * 1000.0,
  })
}
