// Deadlines of every connection in one indexed binary min-heap.
//
// One OS timer for the whole loop (the host arms it for Earliest()), not one per
// connection. Each timer has a small integer id (slot * kinds + kind) and the
// heap keeps the position of every id, so that moving a deadline (a read
// deadline pushed back after every message) is O(log n) with no garbage left
// behind, unlike a heap with lazy deletion.
#ifndef NETLOOP_TIMER_HEAP_H_
#define NETLOOP_TIMER_HEAP_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace netloop {

class TimerHeap {
 public:
  static constexpr int64_t kNone = INT64_MAX;

  // Sets (or moves) the deadline of id to when_ms.
  void Set(uint32_t id, int64_t when_ms);
  // Removes the deadline of id, if it has one.
  void Cancel(uint32_t id);
  bool Has(uint32_t id) const { return id < pos_.size() && pos_[id] >= 0; }
  // The earliest deadline, or kNone.
  int64_t Earliest() const { return heap_.empty() ? kNone : heap_[0].when; }
  // Pops the earliest timer if it is due at now_ms; returns false otherwise.
  bool PopDue(int64_t now_ms, uint32_t* id);
  size_t size() const { return heap_.size(); }
  // Room for ids below max_id without reallocation.
  void Reserve(size_t max_id) {
    pos_.reserve(max_id);
    heap_.reserve(max_id / 3 + 1);
  }

 private:
  struct Entry {
    int64_t when;
    uint32_t id;
  };
  void Place(size_t i, Entry e);
  void SiftUp(size_t i);
  void SiftDown(size_t i);
  void RemoveAt(size_t i);

  std::vector<Entry> heap_;
  std::vector<int32_t> pos_;  // id -> index in heap_, or -1
};

}  // namespace netloop

#endif  // NETLOOP_TIMER_HEAP_H_
