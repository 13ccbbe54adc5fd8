#include "timer_heap.h"

#include <algorithm>

namespace netloop {

void TimerHeap::Place(size_t i, Entry e) {
  heap_[i] = e;
  pos_[e.id] = static_cast<int32_t>(i);
}

void TimerHeap::SiftUp(size_t i) {
  Entry e = heap_[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap_[parent].rel <= e.rel) break;
    Place(i, heap_[parent]);
    i = parent;
  }
  Place(i, e);
}

void TimerHeap::SiftDown(size_t i) {
  Entry e = heap_[i];
  size_t n = heap_.size();
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_[child + 1].rel < heap_[child].rel) child++;
    if (e.rel <= heap_[child].rel) break;
    Place(i, heap_[child]);
    i = child;
  }
  Place(i, e);
}

uint32_t TimerHeap::Offset(int64_t when_ms) const {
  int64_t d = when_ms - base_;
  if (d < 0) return 0;  // already due: at base_, which is not after now
  if (d > int64_t{UINT32_MAX}) return UINT32_MAX;  // unreachable for int32 delays (see the header)
  return static_cast<uint32_t>(d);
}

void TimerHeap::KeepBaseNear(int64_t now_ms) {
  if (now_ms - base_ < kRebaseAfter) return;
  int64_t target = heap_.empty() ? now_ms : std::min(now_ms, base_ + heap_[0].rel);
  Rebase(std::max(target, now_ms - kMaxOverdue));
}

void TimerHeap::Rebase(int64_t new_base) {
  // new_base > base_ (KeepBaseNear), so shift is positive. Subtracting it,
  // floored at 0, is non-decreasing in rel: every parent stays <= its
  // children and the heap needs no repair.
  int64_t shift = new_base - base_;
  for (Entry& e : heap_) e.rel = e.rel > shift ? static_cast<uint32_t>(e.rel - shift) : 0;
  base_ = new_base;
}

void TimerHeap::Set(uint32_t id, int64_t now_ms, int32_t delay_ms) {
  if (heap_.empty()) {
    base_ = now_ms;  // nothing to shift: the cheapest rebase
  } else {
    KeepBaseNear(now_ms);
  }
  uint32_t rel = Offset(now_ms + delay_ms);
  if (id >= pos_.size()) pos_.resize(static_cast<size_t>(id) + 1, -1);
  int32_t at = pos_[id];
  if (at < 0) {
    heap_.push_back(Entry{rel, id});
    pos_[id] = static_cast<int32_t>(heap_.size() - 1);
    SiftUp(heap_.size() - 1);
    return;
  }
  uint32_t old = heap_[at].rel;
  heap_[at].rel = rel;
  if (rel < old) {
    SiftUp(static_cast<size_t>(at));
  } else if (rel > old) {
    SiftDown(static_cast<size_t>(at));
  }
}

void TimerHeap::RemoveAt(size_t i) {
  pos_[heap_[i].id] = -1;
  Entry last = heap_.back();
  heap_.pop_back();
  if (i == heap_.size()) return;
  Place(i, last);
  SiftDown(i);
  SiftUp(static_cast<size_t>(pos_[last.id]));
}

void TimerHeap::Cancel(uint32_t id) {
  if (!Has(id)) return;
  RemoveAt(static_cast<size_t>(pos_[id]));
}

bool TimerHeap::PopDue(int64_t now_ms, uint32_t* id) {
  if (heap_.empty() || base_ + heap_[0].rel > now_ms) {
    // Nothing is due, so every deadline is after now: a rebase here moves
    // base_ to now and loses nothing. (While timers are due they are popped
    // first, exactly, however overdue: their offsets are still valid.)
    KeepBaseNear(now_ms);
    return false;
  }
  *id = heap_[0].id;
  RemoveAt(0);
  return true;
}

}  // namespace netloop
