#include "timer_heap.h"

namespace netloop {

void TimerHeap::Place(size_t i, Entry e) {
  heap_[i] = e;
  pos_[e.id] = static_cast<int32_t>(i);
}

void TimerHeap::SiftUp(size_t i) {
  Entry e = heap_[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap_[parent].when <= e.when) break;
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
    if (child + 1 < n && heap_[child + 1].when < heap_[child].when) child++;
    if (e.when <= heap_[child].when) break;
    Place(i, heap_[child]);
    i = child;
  }
  Place(i, e);
}

void TimerHeap::Set(uint32_t id, int64_t when_ms) {
  if (id >= pos_.size()) pos_.resize(static_cast<size_t>(id) + 1, -1);
  int32_t at = pos_[id];
  if (at < 0) {
    heap_.push_back(Entry{when_ms, id});
    pos_[id] = static_cast<int32_t>(heap_.size() - 1);
    SiftUp(heap_.size() - 1);
    return;
  }
  int64_t old = heap_[at].when;
  heap_[at].when = when_ms;
  if (when_ms < old) {
    SiftUp(static_cast<size_t>(at));
  } else if (when_ms > old) {
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
  if (heap_.empty() || heap_[0].when > now_ms) return false;
  *id = heap_[0].id;
  RemoveAt(0);
  return true;
}

}  // namespace netloop
