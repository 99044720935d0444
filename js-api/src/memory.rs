//! Memory of one isolate against one budget: the V8 heap (capped by V8's
//! heap limit, with a near-limit callback that stops the script instead of
//! letting V8 abort the process), ArrayBuffer bytes, which live outside the
//! heap and are counted by our ArrayBuffer allocator when they are made, and
//! Wasm memories, which V8 makes and grows itself (also from inside Wasm)
//! and counts in its external memory total: [`isolate_memory`] is looked at
//! every few milliseconds while JS runs, and whenever JS makes or grows a
//! `WebAssembly.Memory`.

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
  handle: OnceLock<v8::IsolateHandle>,
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
      handle: OnceLock::new(),
    })
  }

  pub(crate) fn set_handle(&self, h: v8::IsolateHandle) {
    let _ = self.handle.set(h);
  }

  /// Whether the isolate went over its budget (it was terminated).
  pub fn exceeded(&self) -> bool {
    self.exceeded.load(Ordering::SeqCst)
  }

  /// The budget, in bytes.
  pub fn limit(&self) -> usize {
    self.limit
  }

  /// Bytes the isolate held, or asked for, when its budget was found
  /// spent.
  pub fn reached(&self) -> usize {
    self.reached.load(Ordering::SeqCst)
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
  /// thread; over budget, the script is stopped.
  pub fn request_check(self: &Arc<Self>) {
    let Some(h) = self.handle.get() else { return };
    let data = Arc::into_raw(self.clone()) as *mut c_void;
    if !h.request_interrupt(check_interrupt, data) {
      // SAFETY: the interrupt will never run; take back the reference.
      drop(unsafe { Arc::from_raw(data as *const MemoryBudget) });
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
        Ok(_) => return true,
        Err(now) => cur = now,
      }
    }
  }

  fn release(&self, len: usize) {
    self.array_buffers.fetch_sub(len, Ordering::Relaxed);
  }

  /// Compares what the isolate holds with the budget; over it, the script
  /// is stopped. Returns the bytes held.
  pub(crate) fn check(&self, isolate: &mut v8::Isolate) -> usize {
    let (heap, external) = isolate_memory(isolate);
    // The allocator counts ArrayBuffers itself: what it may still hand out
    // is what heap and other external memory (Wasm) leave.
    self.note_heap(heap + external.saturating_sub(self.array_buffer_bytes()));
    let used = heap + external + self.native.load(Ordering::Relaxed);
    if used > self.limit {
      self.exceed(used);
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

fn refuse(b: &MemoryBudget, len: usize) -> *mut c_void {
  let held = b.heap_hint.load(Ordering::Relaxed) + b.array_buffer_bytes() + b.native.load(Ordering::Relaxed);
  b.exceed(held.saturating_add(len));
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
  // SAFETY: `data` is the Arc made in `request_check`, passed once.
  let budget = unsafe { Arc::from_raw(data as *const MemoryBudget) };
  // SAFETY: V8 runs interrupts on the isolate's thread with it entered.
  let mut isolate = unsafe { v8::Isolate::from_raw_isolate_ptr(isolate) };
  budget.check(&mut isolate);
}

impl crate::ext::codec::NativeMemory for MemoryBudget {
  fn charge(&self, bytes: usize) {
    let native = self.native.fetch_add(bytes, Ordering::Relaxed) + bytes;
    let held = self.heap_hint.load(Ordering::Relaxed) + self.array_buffer_bytes() + native;
    if held > self.limit {
      self.exceed(held);
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
    let wanted = self.check(isolate).saturating_add(bytes);
    if wanted > self.limit {
      self.exceed(wanted);
      return false;
    }
    true
  }
}
