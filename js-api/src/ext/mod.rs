//! The deno_core extensions a worker isolate is built from: ours (ops and the
//! bootstrap that defines the globals) and a stand-in for deno_net's TLS file.
//!
//! This module is also compiled into `build.rs` (through `#[path]`) to make
//! the startup snapshot, so it may only refer to its own submodules.

pub mod body;
pub mod cache;
pub mod codec;
pub mod d1;
pub mod html;
pub mod json;
pub mod kv;
pub mod list;
pub mod ops;
pub mod queue;
pub mod r2;
pub mod rsa;
pub mod service;

#[allow(unused_imports)]
pub use ops::{hops_of, LogSink, RequestSlot, RequestSlots, WorkerLogContext, HOP_HEADER, MAX_LOG_LINE};

deno_core::extension!(
  deno_net,
  lazy_loaded_js = [dir "js/deno_net", "02_tls.js"],
);

deno_core::extension!(
  edge_runtime,
  deps = [deno_webidl, deno_web, deno_crypto, deno_fetch, deno_net],
  ops = [
    ops::op_edge_limit_hit,
    ops::op_edge_log,
    ops::op_edge_hops,
    ops::op_edge_req_cf,
    ops::op_edge_wasm_pages,
    ops::op_edge_req_headers,
    ops::op_edge_req_body,
    ops::op_edge_settled,
    ops::op_edge_offthread,
    rsa::op_edge_rsa_generate,
    kv::op_edge_kv_get,
    kv::op_edge_kv_take,
    kv::op_edge_kv_put,
    kv::op_edge_kv_delete,
    kv::op_edge_kv_list,
    d1::op_edge_d1_batch,
    d1::op_edge_d1_exec,
    cache::op_edge_cache_put,
    cache::op_edge_cache_match,
    cache::op_edge_cache_delete,
    service::op_edge_service_fetch,
    queue::op_edge_queue_send,
    r2::op_edge_r2_head,
    r2::op_edge_r2_get,
    r2::op_edge_r2_read,
    r2::op_edge_r2_stage,
    r2::op_edge_r2_append,
    r2::op_edge_r2_discard,
    r2::op_edge_r2_commit,
    r2::op_edge_r2_delete,
    r2::op_edge_r2_list,
    r2::op_edge_r2_create_multipart,
    r2::op_edge_r2_commit_part,
    r2::op_edge_r2_complete,
    r2::op_edge_r2_abort,
    codec::op_edge_codec_new,
    codec::op_edge_codec_pump,
    codec::op_edge_codec_close,
    html::op_edge_html_selector,
    html::op_edge_html_new,
    html::op_edge_html_write,
    html::op_edge_html_end,
    html::op_edge_html_reply,
    html::op_edge_html_close,
    json::op_edge_json_plan,
    json::op_edge_json_take_plan,
    json::op_edge_json_check,
    json::op_edge_json_error,
    json::op_edge_json_constants,
  ],
  esm_entry_point = "ext:edge_runtime/bootstrap.js",
  esm = [dir "js", "bootstrap.js", "json.js", "guards.js", "compression.js", "webcrypto.js", "kv.js", "d1.js", "cache.js", "service.js", "r2.js", "html.js", "queue.js", "entrypoints.js", "cloudflare:workers" = "workers.js", "node:async_hooks" = "node_async_hooks.js", "node:events" = "node_events.js", "node:process" = "node_process.js", "node:buffer" = "node_buffer.js", "node:path" = "node_path.js", "node:util" = "node_util.js"],
);
