//! The idle isolates of a thread's pool, by worker and in the order they
//! were released (least recently used first), with the heap they hold.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::worker::{Worker, WorkerId};

/// An isolate waiting for its worker's next request.
pub struct Idle<T> {
  pub iso: T,
  pub seq: u64,
  pub since: Instant,
  pub heap: usize,
  /// Garbage collected since it went idle.
  pub compacted: bool,
}

struct Slot<T> {
  worker: Arc<Worker>,
  idle: Vec<Idle<T>>,
}

pub struct IdleSet<T> {
  slots: HashMap<WorkerId, Slot<T>>,
  /// Release sequence number -> worker, oldest first.
  lru: BTreeMap<u64, WorkerId>,
  next_seq: u64,
  heap: usize,
}

impl<T> Default for IdleSet<T> {
  fn default() -> Self {
    Self {
      slots: HashMap::new(),
      lru: BTreeMap::new(),
      next_seq: 0,
      heap: 0,
    }
  }
}

impl<T> IdleSet<T> {
  /// Heap held by all idle isolates, as last looked at.
  pub fn heap(&self) -> usize {
    self.heap
  }

  pub fn push(&mut self, worker: &Arc<Worker>, iso: T, heap: usize) {
    self.next_seq += 1;
    let seq = self.next_seq;
    self
      .slots
      .entry(worker.id)
      .or_insert_with(|| Slot {
        worker: worker.clone(),
        idle: Vec::new(),
      })
      .idle
      .push(Idle {
        iso,
        seq,
        since: Instant::now(),
        heap,
        compacted: false,
      });
    self.lru.insert(seq, worker.id);
    self.heap += heap;
  }

  /// The most recently released idle isolate of `worker`. Its slot stays
  /// (the isolate comes back to it after the request, without a new
  /// allocation); [`IdleSet::forget`] drops it once the worker has no
  /// isolate left on the thread.
  pub fn pop(&mut self, worker: &Worker) -> Option<Idle<T>> {
    let slot = self.slots.get_mut(&worker.id)?;
    let idle = slot.idle.pop()?;
    self.lru.remove(&idle.seq);
    self.heap -= idle.heap;
    Some(idle)
  }

  /// Drops the slot of a worker that has no isolate on the thread any more
  /// (it holds the worker's `Arc`).
  pub fn forget(&mut self, id: WorkerId) {
    if self.slots.get(&id).is_some_and(|s| s.idle.is_empty()) {
      self.slots.remove(&id);
    }
  }

  /// The least recently released idle isolate: its sequence number, worker
  /// and when it went idle.
  pub fn oldest(&self) -> Option<(u64, WorkerId, Instant)> {
    let (&seq, &id) = self.lru.first_key_value()?;
    let since = self.slots.get(&id)?.idle.iter().find(|i| i.seq == seq)?.since;
    Some((seq, id, since))
  }

  /// Takes out the idle isolate `seq` of worker `id`.
  pub fn remove(&mut self, seq: u64, id: WorkerId) -> Option<(Arc<Worker>, Idle<T>)> {
    self.lru.remove(&seq);
    let slot = self.slots.get_mut(&id)?;
    let pos = slot.idle.iter().position(|i| i.seq == seq)?;
    let idle = slot.idle.swap_remove(pos);
    let worker = slot.worker.clone();
    self.heap -= idle.heap;
    Some((worker, idle))
  }

  /// Sequence numbers of `worker`'s idle isolates.
  pub fn seqs_of(&self, worker: &Worker) -> Vec<u64> {
    self
      .slots
      .get(&worker.id)
      .map(|s| s.idle.iter().map(|i| i.seq).collect())
      .unwrap_or_default()
  }

  /// Calls `f` on the oldest idle isolate for which `pick` holds, of those
  /// idle since before `before`; returns its sequence number, worker and
  /// what `f` returned. `f` gets the isolate and its worker and returns
  /// the heap it now holds.
  pub fn with_oldest<R>(
    &mut self,
    before: Instant,
    pick: impl Fn(&Idle<T>) -> bool,
    f: impl FnOnce(&Arc<Worker>, &mut Idle<T>) -> R,
  ) -> Option<(u64, WorkerId, R)> {
    for (&seq, &id) in self.lru.iter() {
      let Some(slot) = self.slots.get_mut(&id) else { continue };
      let Some(idle) = slot.idle.iter_mut().find(|i| i.seq == seq) else {
        continue;
      };
      if idle.since >= before {
        return None;
      }
      if !pick(idle) {
        continue;
      }
      let old_heap = idle.heap;
      let r = f(&slot.worker, idle);
      self.heap = self.heap - old_heap + idle.heap;
      return Some((seq, id, r));
    }
    None
  }

  /// Every idle isolate, oldest first (at thread exit).
  pub fn drain(&mut self) -> Vec<T> {
    self.lru.clear();
    self.heap = 0;
    let mut all: Vec<Idle<T>> = self.slots.drain().flat_map(|(_, s)| s.idle).collect();
    all.sort_by_key(|i| i.seq);
    all.into_iter().map(|i| i.iso).collect()
  }
}
