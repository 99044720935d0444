//! One V8 isolate with the worker API: created blank from the snapshot, bound
//! once to a worker (its modules evaluated), then called once per request.
//!
//! Several isolates live on one thread, so every method enters its isolate
//! and exits it before returning; V8 wants entries and exits in LIFO order.

use std::cell::Cell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use deno_core::{v8, JsRuntime, PollEventLoopOptions, RuntimeOptions};

use crate::error::JsApiError;
use crate::ext::list::{extensions, ExtOptions};
use crate::ext::{LogSink, RequestSlot, RequestSlots, WorkerLogContext};
use crate::loader::{WorkerCode, WorkerLoader};
use crate::memory::MemoryBudget;
use crate::net::NetPolicy;
use crate::shares::CpuShares;

/// Requests between two readings of an isolate's heap size.
const HEAP_SAMPLE_EVERY: u32 = 32;

/// Settings for making isolates; one per server, shared by its threads.
#[derive(Clone)]
pub struct IsolateConfig {
  /// Memory budget of an isolate: V8 heap plus ArrayBuffers, in bytes.
  pub memory_limit_bytes: usize,
  /// Heap V8 may use past the budget to finish the step it is in once the
  /// script has been told to stop (one builtin can allocate up to about a
  /// gigabyte at once); past budget plus slack, V8 ends the process.
  pub heap_slack_bytes: usize,
  /// `user-agent` of subrequests.
  pub user_agent: String,
  /// Roots trusted by subrequests over HTTPS; `None`: the Mozilla roots.
  pub root_certs: Option<Arc<dyn deno_tls::RootCertStoreProvider>>,
  /// Runs service bindings' requests through the node's other workers;
  /// `None`: a worker's service bindings reject (no other workers here).
  pub services: Option<Arc<dyn crate::ext::service::ServiceCaller>>,
}

impl Default for IsolateConfig {
  fn default() -> Self {
    Self {
      memory_limit_bytes: 128 << 20,
      heap_slack_bytes: DEFAULT_HEAP_SLACK,
      user_agent: "edge-worker".into(),
      root_certs: None,
      services: None,
    }
  }
}

/// JS functions of our bootstrap, taken out of the global scope at creation.
struct Internals {
  prepare: v8::Global<v8::Function>,
  bind: v8::Global<v8::Function>,
  handle: v8::Global<v8::Function>,
  finish: v8::Global<v8::Function>,
  register_crypto_symbols: v8::Global<v8::Function>,
}

thread_local! {
  /// The isolate (by [`Isolate::id`]) whose symbols deno_crypto's
  /// thread-local holds on this thread; 0 for none.
  static CRYPTO_SYMBOLS_OF: Cell<u64> = const { Cell::new(0) };
}

/// Ids of isolates in this process (never reused).
static NEXT_ISOLATE_ID: AtomicU64 = AtomicU64::new(1);

/// A thread-safe handle to stop whatever the isolate runs (limits).
pub struct IsolateStopper {
  handle: v8::IsolateHandle,
  /// The isolate's memory budget; knows when it was exceeded.
  pub memory: Arc<MemoryBudget>,
  /// Set when the isolate may not serve again (a limit stopped it, or an
  /// error left its event loop in an unknown state).
  condemned: AtomicBool,
}

impl IsolateStopper {
  /// Terminates running JS; returns false if the isolate is gone.
  pub fn terminate(&self) -> bool {
    self.handle.terminate_execution()
  }

  /// Marks the isolate as not to be reused (from any thread).
  pub fn condemn(&self) {
    self.condemned.store(true, Ordering::Relaxed);
  }

  pub fn is_condemned(&self) -> bool {
    self.condemned.load(Ordering::Relaxed)
  }

  /// Asks the isolate to sample which request runs in shared turn `turn`
  /// (see [`crate::shares`]); from any thread.
  pub fn request_sample(&self, turn: u64) -> bool {
    crate::shares::request_sample(&self.handle, turn)
  }
}

pub struct Isolate {
  rt: ManuallyDrop<JsRuntime>,
  /// Unique in the process: whose crypto symbols a thread holds.
  id: u64,
  config: IsolateConfig,
  internals: Internals,
  loader: Rc<WorkerLoader>,
  stopper: Arc<IsolateStopper>,
  worker: Option<Arc<WorkerCode>>,
  shares: Rc<CpuShares>,
  next_request: u32,
  /// Requests served so far (when to look at the heap again).
  served: u32,
  heap_seen: usize,
}

/// While alive, the isolate is V8's current one on this thread. Made by
/// every public method of [`Isolate`], so callers never see it.
struct Entered(*const v8::Isolate);

impl Entered {
  fn new(iso: &v8::Isolate) -> Self {
    // SAFETY: paired with the `exit()` in `Drop for Entered`; guards are
    // locals of one method, so they nest in LIFO order.
    unsafe { iso.enter() };
    Self(iso)
  }
}

impl Drop for Entered {
  fn drop(&mut self) {
    // SAFETY: the pointer came from a live isolate owned by the `Isolate`
    // whose method created this guard and is still running.
    unsafe { (*self.0).exit() };
  }
}

/// Polls `fut` with the isolate entered, exiting between polls so that
/// other isolates of the thread can run in the meantime.
struct EnterEachPoll<F> {
  iso: *const v8::Isolate,
  fut: std::pin::Pin<Box<F>>,
}

impl<F: std::future::Future> std::future::Future for EnterEachPoll<F> {
  type Output = F::Output;
  fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
    // SAFETY: `iso` belongs to the isolate the inner future borrows
    // mutably, so it outlives this future.
    let _entered = Entered::new(unsafe { &*self.iso });
    self.fut.as_mut().poll(cx)
  }
}

thread_local! {
  /// What the last isolate past its budget on this thread was, for the
  /// line written when V8 ends the process.
  static OVER_BUDGET: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// V8's fatal out-of-memory: says which worker (V8 aborts the process on
/// return, printing its own report).
unsafe extern "C" fn out_of_memory(_location: *const std::ffi::c_char, _details: &v8::OomDetails) {
  let over = OVER_BUDGET.with(|o| o.borrow().clone());
  eprintln!(
    "edge: V8 is out of memory and ends the process: {}",
    over
      .as_deref()
      .unwrap_or("no isolate on this thread was past its memory budget")
  );
}

/// Heap V8 may use past an isolate's budget once the script has been told
/// to stop (see the near-heap-limit callback in [`Isolate::new`]).
pub const DEFAULT_HEAP_SLACK: usize = 2 << 30;

impl Isolate {
  /// Makes a blank isolate from the startup snapshot (about 2-3 ms).
  pub fn new(config: &IsolateConfig) -> Result<Self, JsApiError> {
    let loader = Rc::new(WorkerLoader::default());
    let memory = MemoryBudget::new(config.memory_limit_bytes);
    let create_params = v8::CreateParams::default()
      .heap_limits(0, config.memory_limit_bytes)
      .array_buffer_allocator(memory.allocator());
    // Blank isolates may not fetch anywhere private; `bind` sets the
    // worker's own policy.
    let fetch = NetPolicy::default().fetch_options(config);
    let ext = ExtOptions {
      fetch,
      ..Default::default()
    };
    let mut rt = JsRuntime::try_new(RuntimeOptions {
      startup_snapshot: Some(crate::snapshot::SNAPSHOT),
      residual_lazy_js_sources: crate::snapshot::RESIDUAL_LAZY_JS,
      residual_lazy_esm_sources: crate::snapshot::RESIDUAL_LAZY_ESM,
      extensions: extensions(ext),
      module_loader: Some(loader.clone()),
      create_params: Some(create_params),
      // Where a transferred ArrayBuffer's memory waits between serializing
      // and deserializing (structuredClone's and postMessage's `transfer`;
      // without a store deno_core copies and never detaches). One per
      // isolate: nothing crosses to another tenant.
      shared_array_buffer_store: Some(deno_core::SharedArrayBufferStore::default()),
      ..Default::default()
    })
    .map_err(|e| JsApiError::Create(e.to_string()))?;

    let handle = rt.v8_isolate().thread_safe_handle();
    // Atomics.wait would block the executor thread, and every isolate and
    // connection on it, where no limit can stop it (workerd refuses it too).
    rt.v8_isolate().set_allow_atomics_wait(false);
    memory.set_handle(handle.clone());
    {
      let memory = memory.clone();
      let ceiling = config.memory_limit_bytes.saturating_add(config.heap_slack_bytes);
      rt.add_near_heap_limit_callback(move |current, _initial| {
        // Stop the script (again, each time V8 comes here: until the
        // termination lands), and give V8 room to finish what it is doing
        // meanwhile: one allocation of up to a gigabyte
        // (`"x".repeat(1e8).split("")`), or a builtin that allocates as
        // it goes. The caller drops the isolate afterwards. The room is
        // the slack once, never more: a step that needs more than that
        // ends the process when V8 finds no room (the supervisor, with
        // `runtime.processes` > 1, replaces it while the others serve).
        memory.exceed(current.max(memory.limit()));
        let over = format!(
          "worker {:?}: an isolate needs more heap than its memory budget ({} MiB) plus \
           runtime.heap_slack_mb ({} MiB) in one step of V8 that no termination stops",
          memory.owner().unwrap_or("(none)"),
          memory.limit() >> 20,
          (ceiling - memory.limit()) >> 20
        );
        // For the OOM handler, should V8 find no room even so.
        OVER_BUDGET.with(|o| *o.borrow_mut() = Some(over.clone()));
        if current < ceiling {
          return ceiling;
        }
        // Written straight to stderr: V8 ends the process on return, before
        // a buffered log line would be written.
        eprintln!("edge: {over}: V8 ends the process");
        current
      });
    }
    rt.v8_isolate().set_oom_error_handler(out_of_memory);
    let account: Arc<dyn crate::ext::ops::WasmMemoryAccount> = memory.clone();
    rt.op_state().borrow_mut().put(account);
    let native: Arc<dyn crate::ext::codec::NativeMemory> = memory.clone();
    rt.op_state().borrow_mut().put(native);
    rt.op_state().borrow_mut().put(RequestSlots::default());
    rt.op_state().borrow_mut().put(crate::ext::kv::KvState::default());
    rt.op_state().borrow_mut().put(crate::ext::r2::R2State::default());
    let context = rt.main_context();
    let shares = crate::shares::install(rt.v8_isolate(), context);
    let internals = take_internals(&mut rt).map_err(JsApiError::Create)?;
    // SAFETY: JsRuntime::try_new entered the isolate; it is exited here and
    // re-entered around each use (see `enter`).
    unsafe { rt.v8_isolate().exit() };
    Ok(Self {
      rt: ManuallyDrop::new(rt),
      id: NEXT_ISOLATE_ID.fetch_add(1, Ordering::Relaxed),
      config: config.clone(),
      internals,
      loader,
      stopper: Arc::new(IsolateStopper {
        handle,
        memory,
        condemned: AtomicBool::new(false),
      }),
      worker: None,
      shares,
      next_request: 0,
      served: 0,
      heap_seen: 0,
    })
  }

  fn entered(&mut self) -> Entered {
    Entered::new(self.rt.v8_isolate())
  }

  /// Makes deno_crypto's per-thread brand symbols this isolate's before
  /// its JS runs (a CryptoKey branded with another isolate's symbols
  /// aborts the process). One thread-local read when the thread's last
  /// isolate was this one; a short JS call after a switch. Call with the
  /// isolate entered.
  fn own_crypto_symbols(&mut self) {
    if CRYPTO_SYMBOLS_OF.get() == self.id {
      return;
    }
    deno_core::scope!(scope, &mut *self.rt);
    v8::tc_scope!(let tc, scope);
    let f = v8::Local::new(tc, &self.internals.register_crypto_symbols);
    let undefined = v8::undefined(tc).into();
    // Fails only when the isolate is being terminated: then no JS runs,
    // and the next entry tries again.
    if f.call(tc, undefined, &[]).is_some() {
      CRYPTO_SYMBOLS_OF.set(self.id);
    }
  }

  /// What stops this isolate's JS from another thread (shared: cloning it
  /// is one reference count).
  pub fn stopper(&self) -> &Arc<IsolateStopper> {
    &self.stopper
  }

  /// Whether the isolate may serve another request of its worker.
  pub fn is_reusable(&self) -> bool {
    self.worker.is_some() && !self.stopper.is_condemned() && !self.stopper.memory.exceeded()
  }

  /// Marks the isolate as not to be reused.
  pub fn poison(&self) {
    self.stopper.condemn();
  }

  /// After a termination: let the isolate run JS again (to unwind). The
  /// stopped code's request number may be left as the async context (its
  /// `finally` did not run): it is cleared, so that code run next is not
  /// taken for that request's.
  pub fn cancel_termination(&mut self) {
    self.rt.v8_isolate().cancel_terminate_execution();
    let _entered = self.entered();
    self.clear_async_context();
  }

  /// No request's code runs at the top of an entry.
  fn clear_async_context(&mut self) {
    deno_core::scope!(scope, &mut *self.rt);
    let undefined = v8::undefined(scope).into();
    scope.set_continuation_preserved_embedder_data(undefined);
  }

  /// Collects all garbage and gives V8's spare pages back (a full GC: a
  /// millisecond or so): for an isolate that has gone idle. Returns the
  /// memory it holds afterwards.
  pub fn compact(&mut self) -> usize {
    let _entered = self.entered();
    self
      .rt
      .v8_isolate()
      .memory_pressure_notification(v8::MemoryPressureLevel::Critical);
    self.heap_seen = self.stopper.memory.check(self.rt.v8_isolate());
    self.heap_seen
  }

  /// Memory the isolate holds (V8 heap in use, ArrayBuffers, Wasm
  /// memories), in bytes, as of the last look, if it may serve another
  /// request; looks again every few requests (reading heap statistics
  /// costs microseconds), and a look that finds it over its budget makes it
  /// not reusable.
  pub fn memory_if_reusable(&mut self) -> Option<usize> {
    if !self.is_reusable() {
      return None;
    }
    if self.served % HEAP_SAMPLE_EVERY == 1 || self.heap_seen == 0 {
      let _entered = self.entered();
      self.heap_seen = self.stopper.memory.check(self.rt.v8_isolate());
    }
    self.is_reusable().then_some(self.heap_seen)
  }

  /// Binds a blank isolate to a worker: loads and evaluates its main module
  /// and finds its fetch handler.
  pub async fn bind(
    &mut self,
    code: Arc<WorkerCode>,
    net: &NetPolicy,
    max_subrequests: u32,
    log: Rc<dyn LogSink>,
  ) -> Result<(), JsApiError> {
    if self.worker.is_some() {
      return Err(JsApiError::Load("this isolate is already bound to a worker".into()));
    }
    let iso: *const v8::Isolate = &**self.rt.v8_isolate();
    let fut = self.bind_inner(code, net, max_subrequests, log);
    EnterEachPoll {
      iso,
      fut: Box::pin(fut),
    }
    .await
  }

  async fn bind_inner(
    &mut self,
    code: Arc<WorkerCode>,
    net: &NetPolicy,
    max_subrequests: u32,
    log: Rc<dyn LogSink>,
  ) -> Result<(), JsApiError> {
    *self.loader.code.borrow_mut() = Some(code.clone());
    {
      let state = self.rt.op_state();
      let mut state = state.borrow_mut();
      state.put(net.permissions());
      state.put(net.fetch_options(&self.config));
      state.put(log);
      state.put(WorkerLogContext {
        worker: Rc::from(&*code.name),
        request_id: 0,
      });
      state.put(crate::ext::kv::KvBindings(
        code.kv.iter().map(|(_, store)| store.clone()).collect(),
      ));
      state.put(crate::ext::d1::D1Bindings(
        code.d1.iter().map(|(_, db)| db.clone()).collect(),
      ));
      state.put(crate::ext::r2::R2Bindings(
        code.r2.iter().map(|(_, b)| b.clone()).collect(),
      ));
      state.put(crate::ext::queue::QueueBindings(
        code.queues.iter().map(|(_, q)| q.clone()).collect(),
      ));
      state.put(crate::ext::service::ServiceBindings {
        services: code.services.iter().map(|(_, s)| s.clone()).collect(),
        caller: self.config.services.clone(),
      });
    }
    // The env first: top-level code may read it (`cloudflare:workers`).
    self.call_prepare(&code, max_subrequests)?;
    let id = self
      .rt
      .load_main_es_module(&code.main)
      .await
      .map_err(|e| JsApiError::from_core(e, true))?;
    // Top-level code runs inside mod_evaluate, and again on each turn of
    // the event loop (top-level await): the crypto symbols are this
    // isolate's before each (other isolates may run between two polls).
    self.own_crypto_symbols();
    let mut eval = std::pin::pin!(self.rt.mod_evaluate(id));
    std::future::poll_fn(|cx| {
      self.own_crypto_symbols();
      if let Poll::Ready(r) = eval.as_mut().poll(cx) {
        return Poll::Ready(r);
      }
      match self.rt.poll_event_loop(cx, PollEventLoopOptions::default()) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Ready(Ok(())) => match eval.as_mut().poll(cx) {
          Poll::Ready(r) => Poll::Ready(r),
          Poll::Pending => Poll::Ready(Err(
            deno_core::error::CoreErrorKind::PendingPromiseResolution.into_box(),
          )),
        },
      }
    })
    .await
    .map_err(|e| JsApiError::from_core(e, true))?;
    // One turn of the event loop hands the code cache V8 made while
    // compiling to the loader (shared with the worker's other isolates and
    // kept on disk); a module that evaluates at once ends the line above
    // before any turn. What the turn finds pending stays pending.
    std::future::poll_fn(|cx| {
      self.own_crypto_symbols();
      let _ = self.rt.poll_event_loop(cx, PollEventLoopOptions::default());
      std::task::Poll::Ready(())
    })
    .await;
    self.own_crypto_symbols();
    let ns = self
      .rt
      .get_module_namespace(id)
      .map_err(|e| JsApiError::from_core(e, true))?;
    self.call_bind(ns, &code)?;
    self.stopper.memory.set_owner(&code.name);
    self.worker = Some(code);
    Ok(())
  }

  /// Calls the bootstrap's `prepare()`: the worker's env, made before its
  /// main module evaluates.
  fn call_prepare(&mut self, code: &WorkerCode, max_subrequests: u32) -> Result<(), JsApiError> {
    deno_core::scope!(scope, &mut *self.rt);
    v8::tc_scope!(let tc, scope);
    let prepare = v8::Local::new(tc, &self.internals.prepare);
    let vars = v8::Object::new(tc);
    for (k, v) in &code.vars {
      let (Some(k), Some(v)) = (v8::String::new(tc, k), v8::String::new(tc, v)) else {
        return Err(JsApiError::Load("a var is too long".into()));
      };
      vars.set(tc, k.into(), v.into());
    }
    let undefined = v8::undefined(tc).into();
    let max = v8::Integer::new_from_unsigned(tc, max_subrequests).into();
    // Longest array the budget could hold densely (4-byte elements):
    // Array methods refuse longer ones, which V8 would go through index by
    // index without checking for termination.
    let longest = (self.stopper.memory.limit() / 4).min(u32::MAX as usize) as u32;
    let longest = v8::Integer::new_from_unsigned(tc, longest).into();
    // The names of the KV, D1, service, R2 and queue bindings, in the order of
    // their tables.
    let kv_names: Vec<&String> = code.kv.iter().map(|(n, _)| n).collect();
    let d1_names: Vec<&String> = code.d1.iter().map(|(n, _)| n).collect();
    let service_names: Vec<&String> = code.services.iter().map(|(n, _)| n).collect();
    let r2_names: Vec<&String> = code.r2.iter().map(|(n, _)| n).collect();
    let queue_names: Vec<&String> = code.queues.iter().map(|(n, _)| n).collect();
    let mut args = vec![vars.into(), max, longest];
    for list in [kv_names, d1_names, service_names, r2_names, queue_names] {
      let array = v8::Array::new(tc, list.len() as i32);
      for (i, name) in list.into_iter().enumerate() {
        let Some(name) = v8::String::new(tc, name) else {
          return Err(JsApiError::Load("a binding name is too long".into()));
        };
        array.set_index(tc, i as u32, name.into());
      }
      args.push(array.into());
    }
    args.push(v8::Boolean::new(tc, code.node == crate::NodeCompat::Full).into());
    if prepare.call(tc, undefined, &args).is_none() {
      if tc.has_terminated() {
        return Err(JsApiError::Terminated);
      }
      let message = tc.exception().map(|e| e.to_rust_string_lossy(tc)).unwrap_or_default();
      return Err(JsApiError::Load(message));
    }
    Ok(())
  }

  /// Calls the bootstrap's `bind()` with the main module's namespace: finds
  /// the worker's handlers.
  fn call_bind(&mut self, ns: v8::Global<v8::Object>, code: &WorkerCode) -> Result<(), JsApiError> {
    deno_core::scope!(scope, &mut *self.rt);
    v8::tc_scope!(let tc, scope);
    let bind = v8::Local::new(tc, &self.internals.bind);
    let ns: v8::Local<v8::Value> = v8::Local::new(tc, ns).into();
    let undefined = v8::undefined(tc).into();
    let consumer = v8::Boolean::new(tc, code.queue_consumer).into();
    if bind.call(tc, undefined, &[ns, consumer]).is_none() {
      if tc.has_terminated() {
        return Err(JsApiError::Terminated);
      }
      let message = tc.exception().map(|e| e.to_rust_string_lossy(tc)).unwrap_or_default();
      return Err(JsApiError::NoHandler(
        message.trim_start_matches("TypeError: ").to_string(),
      ));
    }
    Ok(())
  }

  /// Starts a request: calls the worker's handler with the isolate's
  /// number for the request (returned first; other requests may be in the
  /// isolate at the same time). The answer is ready at once for a handler
  /// that settles without waiting on I/O or timers; otherwise turn the
  /// event loop ([`Isolate::turn`]) until [`Isolate::drain_settled`] names
  /// it, then read it with [`Isolate::response`].
  pub fn call(
    &mut self,
    req: crate::call::JsRequest,
    request_id: u128,
  ) -> (u32, Result<crate::call::CallState, JsApiError>) {
    let _entered = self.entered();
    self.own_crypto_symbols();
    self.served = self.served.wrapping_add(1);
    // Numbers start at 1 (0 is "no request") and are not reused while the
    // isolate may still hold code of the request they named.
    self.next_request = self.next_request.wrapping_add(1).max(1);
    let id = self.next_request;
    // The body's declared length, -1 if it has none, 0 for no body.
    let body_length = req.body.as_ref().map_or(0.0, |b| {
      http_body::Body::size_hint(b).exact().map_or(-1.0, |n| n as f64)
    });
    {
      let state = self.rt.op_state();
      let mut state = state.borrow_mut();
      let slot = RequestSlot {
        request_id,
        hops: crate::ext::hops_of(&req.headers),
        headers: Some(req.headers),
        body: req.body,
        cf: req.cf,
        chain: req.chain,
        body_rid: None,
        subrequest_limit_hit: false,
        offthread: 0,
      };
      state.borrow_mut::<RequestSlots>().live.insert(id, slot);
    }
    let op_state = self.rt.op_state();
    deno_core::scope!(scope, &mut *self.rt);
    let r = crate::call::invoke(
      scope,
      &self.internals.handle,
      &op_state,
      id,
      crate::call::CallArgs {
        method: &req.method,
        url: &req.url,
        body_length,
        trigger: req.trigger.as_ref(),
        entrypoint: req.entrypoint.as_deref(),
      },
    );
    (id, r)
  }

  /// The CPU budgets and samples of this isolate's shared turns.
  pub fn shares(&self) -> &Rc<CpuShares> {
    &self.shares
  }

  /// Numbers of the requests whose handler settled since the last call,
  /// appended to `out`.
  pub fn drain_settled(&mut self, out: &mut Vec<u32>) {
    let state = self.rt.op_state();
    let mut state = state.borrow_mut();
    out.append(&mut state.borrow_mut::<RequestSlots>().settled);
  }

  /// The response of a pending call, if its promise has settled.
  pub fn response(
    &mut self,
    pending: &crate::call::PendingCall,
  ) -> Option<Result<crate::call::JsResponse, JsApiError>> {
    let _entered = self.entered();
    let op_state = self.rt.op_state();
    deno_core::scope!(scope, &mut *self.rt);
    crate::call::settled(scope, pending, &op_state)
  }

  /// One turn of the event loop: runs whatever of any request is ready.
  /// Ready(Ok) means the loop has nothing left to wait for.
  pub fn turn(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), JsApiError>> {
    let _entered = self.entered();
    self.own_crypto_symbols();
    self.clear_async_context();
    match self.rt.poll_event_loop(cx, PollEventLoopOptions::default()) {
      Poll::Ready(Err(e)) => {
        self.stopper.condemn();
        Poll::Ready(Err(JsApiError::from_core(e, false)))
      }
      Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
      Poll::Pending => Poll::Pending,
    }
  }

  /// Whether a promise (a waitUntil) has settled.
  pub fn is_settled(&mut self, p: &v8::Global<v8::Promise>) -> bool {
    let _entered = self.entered();
    deno_core::scope!(scope, &mut *self.rt);
    v8::Local::new(scope, p).state() != v8::PromiseState::Pending
  }

  /// Whether any request has crypto work running on the blocking pool.
  pub fn has_offthread(&self) -> bool {
    let state = self.rt.op_state();
    let state = state.borrow();
    state.borrow::<RequestSlots>().offthread > 0
  }

  /// The requests with crypto work running on the blocking pool now,
  /// appended to `out`.
  pub fn offthread_requests(&mut self, out: &mut Vec<u32>) {
    let state = self.rt.op_state();
    let state = state.borrow();
    state.borrow::<RequestSlots>().with_offthread(out);
  }

  /// Whether request `id`'s `fetch()` calls ran past the subrequest limit.
  pub fn take_subrequest_limit_hit(&mut self, id: u32) -> bool {
    let state = self.rt.op_state();
    let mut state = state.borrow_mut();
    state
      .borrow_mut::<RequestSlots>()
      .live
      .get_mut(&id)
      .is_some_and(|s| std::mem::take(&mut s.subrequest_limit_hit))
  }

  /// Ends request `id`'s hold on the isolate: its headers and body go.
  /// Its body too: the resource JS took it into is closed (pending reads
  /// cancelled), so the connection's body is dropped with the request.
  /// `tell_js`: the bootstrap still holds the request's state (it had
  /// work after its answer, or was given up on).
  pub fn finish_request(&mut self, id: u32, tell_js: bool) {
    self.shares.end(id);
    {
      let state = self.rt.op_state();
      let mut state = state.borrow_mut();
      let slots = state.borrow_mut::<RequestSlots>();
      let Some(slot) = slots.live.remove(&id) else {
        return;
      };
      slots.offthread = slots.offthread.saturating_sub(slot.offthread);
      if let Some(rid) = slot.body_rid {
        if let Ok(body) = state.resource_table.take_any(rid) {
          body.close();
        }
      }
    }
    if tell_js && !self.rt.v8_isolate().is_execution_terminating() {
      let _entered = self.entered();
      deno_core::scope!(scope, &mut *self.rt);
      v8::tc_scope!(let tc, scope);
      let f = v8::Local::new(tc, &self.internals.finish);
      let undefined = v8::undefined(tc).into();
      let id = v8::Integer::new_from_unsigned(tc, id).into();
      let _ = f.call(tc, undefined, &[id]);
    }
  }
}

impl Drop for Isolate {
  fn drop(&mut self) {
    // SAFETY: the isolate must be entered when it is disposed (rusty_v8
    // checks it is the current one); it exits itself in its own drop.
    unsafe { self.rt.v8_isolate().enter() };
    // SAFETY: `rt` is not used after this.
    unsafe { ManuallyDrop::drop(&mut self.rt) };
  }
}

fn take_internals(rt: &mut JsRuntime) -> Result<Internals, String> {
  let value = rt
    .execute_script("ext:edge/init.js", "globalThis.__edgeInternal")
    .map_err(|e| e.to_string())?;
  deno_core::scope!(scope, rt);
  let obj = v8::Local::new(scope, value);
  let obj = v8::Local::<v8::Object>::try_from(obj).map_err(|_| "the snapshot lacks the edge bootstrap".to_string())?;
  let mut funcs = Vec::with_capacity(6);
  for name in ["init", "bind", "handle", "finish", "registerCryptoSymbols", "prepare"] {
    let key = v8::String::new(scope, name).ok_or("string")?;
    let f = obj.get(scope, key.into()).ok_or("missing")?;
    funcs.push(v8::Local::<v8::Function>::try_from(f).map_err(|_| format!("bootstrap lacks {name}()"))?);
  }
  let (init, bind, handle, finish, register, prepare) = (funcs[0], funcs[1], funcs[2], funcs[3], funcs[4], funcs[5]);
  v8::tc_scope!(let tc, scope);
  let undefined = v8::undefined(tc).into();
  if init.call(tc, undefined, &[]).is_none() {
    let msg = tc.exception().map(|e| e.to_rust_string_lossy(tc)).unwrap_or_default();
    return Err(format!("isolate init failed: {msg}"));
  }
  Ok(Internals {
    prepare: v8::Global::new(tc, prepare),
    bind: v8::Global::new(tc, bind),
    handle: v8::Global::new(tc, handle),
    finish: v8::Global::new(tc, finish),
    register_crypto_symbols: v8::Global::new(tc, register),
  })
}
