//! Memory of one isolate against one budget: the V8 heap (capped by V8's
//! heap limit, with a near-limit callback that stops the script instead of
//! letting V8 abort the process), ArrayBuffer bytes, which live outside the
//! heap and are counted by our ArrayBuffer allocator when they are made, and
//! Wasm memories, which V8 makes and grows itself (also from inside Wasm)
//! and counts in its external memory total: [`isolate_memory`] is looked at
//! every few milliseconds while JS runs, and whenever JS makes or grows a
//! `WebAssembly.Memory`.
//!
//! Garbage counts until V8 collects it (dead ArrayBuffers stay in the
//! allocator's count and in V8's external total): a look that finds the
//! budget passed collects all garbage and looks again before it stops the
//! script, and a refused ArrayBuffer stops it only if V8's own collect and
//! retry (it tries up to four times) did not make room.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use deno_core::v8;

/// The budget of one isolate, shared with V8's allocator (any thread may
/// free a buffer).
pub struct MemoryBudget {
  limit: usize,
  array_buffers: AtomicUsize,
  /// Bytes Rust holds for the isolate (codec state), charged by
  /// [`crate::ext::codec::NativeMemory`].
  native: AtomicUsize,
  /// Heap size at the last look; ArrayBuffers may use what is left.
  heap_hint: AtomicUsize,
  exceeded: AtomicBool,
  /// Bytes held, or asked for, when the budget was found spent.
  reached: AtomicUsize,
  /// Bytes wanted by the last ArrayBuffer the allocator refused, until one
  /// is granted: still set when the script next reaches a safe point, V8's
  /// collect-and-retry did not make room.
  refused: AtomicUsize,
  /// A check is asked for and has not run yet (one at a time).
  check_asked: AtomicBool,
  handle: OnceLock<v8::IsolateHandle>,
  /// The worker the isolate is bound to (for the log line of a process
  /// that V8 ends).
  owner: OnceLock<Arc<str>>,
}

impl MemoryBudget {
  pub fn new(limit: usize) -> Arc<Self> {
    Arc::new(Self {
      limit,
      array_buffers: AtomicUsize::new(0),
      native: AtomicUsize::new(0),
      heap_hint: AtomicUsize::new(0),
      exceeded: AtomicBool::new(false),
      reached: AtomicUsize::new(0),
      refused: AtomicUsize::new(0),
      check_asked: AtomicBool::new(false),
      handle: OnceLock::new(),
      owner: OnceLock::new(),
    })
  }

  pub(crate) fn set_owner(&self, worker: &Arc<str>) {
    let _ = self.owner.set(worker.clone());
  }

  pub(crate) fn owner(&self) -> Option<&str> {
    self.owner.get().map(|s| &**s)
  }

  pub(crate) fn set_handle(&self, h: v8::IsolateHandle) {
    let _ = self.handle.set(h);
  }

  /// Whether the isolate went over its budget (it was, or is about to be,
  /// stopped). Also true when an ArrayBuffer was refused and none granted
  /// since: read on the isolate's thread between its JS runs, that refusal
  /// came after V8's collections and retries (the script got a RangeError).
  pub fn exceeded(&self) -> bool {
    self.exceeded.load(Ordering::SeqCst) || self.refused.load(Ordering::Relaxed) != 0
  }

  /// The budget, in bytes.
  pub fn limit(&self) -> usize {
    self.limit
  }

  /// Bytes the isolate held, or asked for, when its budget was found
  /// spent.
  pub fn reached(&self) -> usize {
    self
      .reached
      .load(Ordering::SeqCst)
      .max(self.refused.load(Ordering::Relaxed))
  }

  /// Records that the budget is spent at `bytes` and stops the script.
  pub(crate) fn exceed(&self, bytes: usize) {
    self.reached.fetch_max(bytes, Ordering::SeqCst);
    self.exceeded.store(true, Ordering::SeqCst);
    if let Some(h) = self.handle.get() {
      h.terminate_execution();
    }
  }

  pub(crate) fn note_heap(&self, bytes: usize) {
    self.heap_hint.store(bytes, Ordering::Relaxed);
  }

  /// Asks the isolate to compare its heap and external memory (Wasm
  /// memories, buffers) with the budget at its next safe point, from any
  /// thread; over budget after a full collection, or with an ArrayBuffer
  /// refused since, the script is stopped.
  pub fn request_check(&self) {
    let Some(h) = self.handle.get() else { return };
    if self.check_asked.swap(true, Ordering::AcqRel) {
      return;
    }
    // The isolate holds the budget (through its allocator) as long as an
    // interrupt may run.
    let data = self as *const MemoryBudget as *mut c_void;
    if !h.request_interrupt(check_interrupt, data) {
      self.check_asked.store(false, Ordering::Release);
    }
  }

  /// Bytes of ArrayBuffers alive now.
  pub fn array_buffer_bytes(&self) -> usize {
    self.array_buffers.load(Ordering::Relaxed)
  }

  fn reserve(&self, len: usize) -> bool {
    let held = self.heap_hint.load(Ordering::Relaxed) + self.native.load(Ordering::Relaxed);
    let room = self.limit.saturating_sub(held);
    let mut cur = self.array_buffers.load(Ordering::Relaxed);
    loop {
      let Some(next) = cur.checked_add(len).filter(|n| *n <= room) else {
        return false;
      };
      match self
        .array_buffers
        .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
      {
        Ok(_) => {
          if self.refused.load(Ordering::Relaxed) != 0 {
            self.refused.store(0, Ordering::Relaxed);
          }
          return true;
        }
        Err(now) => cur = now,
      }
    }
  }

  fn release(&self, len: usize) {
    self.array_buffers.fetch_sub(len, Ordering::Relaxed);
  }

  /// Bytes the isolate holds now, garbage included; notes the heap's part
  /// for the allocator.
  fn measure(&self, isolate: &mut v8::Isolate) -> usize {
    let (heap, external) = isolate_memory(isolate);
    // The allocator counts ArrayBuffers itself: what it may still hand out
    // is what heap and other external memory (Wasm) leave.
    self.note_heap(heap + external.saturating_sub(self.array_buffer_bytes()));
    heap + external + self.native.load(Ordering::Relaxed)
  }

  /// Compares what the isolate holds with the budget; over it, all garbage
  /// is collected and, still over, the script is stopped. Returns the bytes
  /// held. Call where V8 may collect garbage (not from a fast op).
  pub(crate) fn check(&self, isolate: &mut v8::Isolate) -> usize {
    self.check_with(isolate, 0)
  }

  /// [`Self::check`] with `more` bytes about to be taken (counted as held).
  fn check_with(&self, isolate: &mut v8::Isolate, more: usize) -> usize {
    let mut used = self.measure(isolate);
    if used.saturating_add(more) > self.limit {
      isolate.low_memory_notification();
      used = self.measure(isolate);
      if used.saturating_add(more) > self.limit {
        self.exceed(used.saturating_add(more));
      }
    }
    used
  }

  /// V8's ArrayBuffer allocator for an isolate with this budget.
  pub(crate) fn allocator(self: &Arc<Self>) -> v8::UniqueRef<v8::Allocator> {
    let raw = Arc::into_raw(self.clone());
    // SAFETY: `raw` stays valid until V8 calls `drop_budget`, which turns
    // it back into the Arc it came from; the vtable is 'static.
    unsafe { v8::new_rust_allocator(raw, &VTABLE) }
  }
}

static VTABLE: v8::RustAllocatorVtable<MemoryBudget> = v8::RustAllocatorVtable {
  allocate,
  allocate_uninitialized,
  free,
  drop: drop_budget,
};

/// Refuses a buffer that does not fit. V8 collects garbage and asks again
/// (dead buffers are counted until then); the check this asks for stops the
/// script if none of its tries got a buffer.
fn refuse(b: &MemoryBudget, len: usize) -> *mut c_void {
  let held = b.heap_hint.load(Ordering::Relaxed) + b.array_buffer_bytes() + b.native.load(Ordering::Relaxed);
  b.refused.store(held.saturating_add(len).max(1), Ordering::Relaxed);
  b.request_check();
  std::ptr::null_mut()
}

/// Buffers from this size up are mapped directly, so that their memory goes
/// back to the system when freed (malloc may keep it).
const MAP_FROM: usize = 256 << 10;

fn alloc_bytes(len: usize, zeroed: bool) -> *mut c_void {
  if len >= MAP_FROM {
    // SAFETY: an anonymous private mapping of `len` bytes; pages are zeroed.
    let p = unsafe {
      libc::mmap(
        std::ptr::null_mut(),
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
      )
    };
    return if p == libc::MAP_FAILED { std::ptr::null_mut() } else { p };
  }
  if zeroed {
    // SAFETY: calloc with a nonzero size returns zeroed memory or null.
    unsafe { libc::calloc(len.max(1), 1) }
  } else {
    // SAFETY: malloc with a nonzero size returns memory or null.
    unsafe { libc::malloc(len.max(1)) }
  }
}

fn reserve_and_alloc(b: &MemoryBudget, len: usize, zeroed: bool) -> *mut c_void {
  if !b.reserve(len) {
    return refuse(b, len);
  }
  let p = alloc_bytes(len, zeroed);
  if p.is_null() {
    b.release(len);
  }
  p
}

unsafe extern "C" fn allocate(b: &MemoryBudget, len: usize) -> *mut c_void {
  reserve_and_alloc(b, len, true)
}

unsafe extern "C" fn allocate_uninitialized(b: &MemoryBudget, len: usize) -> *mut c_void {
  reserve_and_alloc(b, len, false)
}

unsafe extern "C" fn free(b: &MemoryBudget, data: *mut c_void, len: usize) {
  b.release(len);
  if data.is_null() {
    return;
  }
  if len >= MAP_FROM {
    // SAFETY: buffers of this length were mapped by `alloc_bytes`.
    unsafe { libc::munmap(data, len) };
  } else {
    // SAFETY: smaller buffers came from calloc/malloc.
    unsafe { libc::free(data) };
  }
}

unsafe extern "C" fn drop_budget(b: *const MemoryBudget) {
  // SAFETY: `b` is the pointer made by Arc::into_raw in `allocator`.
  drop(unsafe { Arc::from_raw(b) });
}

/// What an isolate holds now, in bytes: its V8 heap in use, and outside
/// the heap what V8 counts as external memory kept alive by JS
/// (ArrayBuffers, Wasm memories at their current size, compiled Wasm).
fn isolate_memory(isolate: &mut v8::Isolate) -> (usize, usize) {
  let stats = isolate.get_heap_statistics();
  // Adjusting by 0 reads V8's external memory total without changing it.
  // (The heap statistics' external figure leaves Wasm memories out and
  // counts the snapshot's external strings, ~0.9 MB of static data every
  // isolate shares.)
  let total = isolate.adjust_amount_of_external_allocated_memory(0).max(0) as usize;
  (stats.used_heap_size(), total)
}

unsafe extern "C" fn check_interrupt(isolate: v8::UnsafeRawIsolatePtr, data: *mut c_void) {
  // SAFETY: `data` is the budget of this isolate (see `request_check`).
  let budget = unsafe { &*(data as *const MemoryBudget) };
  budget.check_asked.store(false, Ordering::Release);
  // SAFETY: V8 runs interrupts on the isolate's thread with it entered.
  let mut isolate = unsafe { v8::Isolate::from_raw_isolate_ptr(isolate) };
  budget.check(&mut isolate);
  // A buffer refused and none granted since: V8's retries did not fit it.
  let refused = budget.refused.swap(0, Ordering::Relaxed);
  if refused != 0 {
    budget.exceed(refused);
  }
}

/// Codec state is charged as it is allocated, inside an op: a charge that
/// passes the budget asks for a check at the next safe point (garbage may
/// be what fills it).
impl crate::ext::codec::NativeMemory for MemoryBudget {
  fn charge(&self, bytes: usize) {
    let native = self.native.fetch_add(bytes, Ordering::Relaxed) + bytes;
    let held = self.heap_hint.load(Ordering::Relaxed) + self.array_buffer_bytes() + native;
    if held > self.limit {
      self.request_check();
    }
  }

  fn uncharge(&self, bytes: usize) {
    self.native.fetch_sub(bytes, Ordering::Relaxed);
  }
}

/// A Wasm memory made or grown from JS must fit, with everything else the
/// isolate holds, in the budget; otherwise the script is stopped. (Growth
/// from inside Wasm is seen by the periodic [`MemoryBudget::check`].)
impl crate::ext::ops::WasmMemoryAccount for MemoryBudget {
  fn wasm_fits(&self, isolate: &mut v8::Isolate, bytes: usize) -> bool {
    self.check_with(isolate, bytes).saturating_add(bytes) <= self.limit
  }
}
