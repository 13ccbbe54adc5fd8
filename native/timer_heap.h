// Deadlines of every connection in one indexed binary min-heap.
//
// One OS timer for the whole loop (the host arms it for Earliest()), not one per
// connection. Each timer has a small integer id (slot * kinds + kind) and the
// heap keeps the position of every id, so that moving a deadline (a read
// deadline pushed back after every message) is O(log n) with no garbage left
// behind, unlike a heap with lazy deletion.
//
// An entry is 8 bytes (a million connections hold up to a few million
// timers): the deadline is kept as uint32 milliseconds after base_, a time
// the heap keeps at or before every call's now. Why that is exact:
//   - a deadline is now + delay with delay an int32 (< 2^31 ms, 24.8 days);
//   - base_ moves forward (Rebase) whenever it falls kRebaseAfter (2^30 ms,
//     12.4 days) behind now, so at any Set now - base_ < 2^30 and a deadline
//     is less than 2^30 + 2^31 < 2^32 ms after base_: it always fits, for
//     however long the loop runs (the clock is int64; only offsets are 32-bit);
//   - Rebase subtracts the same amount from every entry, which keeps their
//     order. It moves base_ to the earliest deadline (or now, if that is
//     earlier), but never to more than kMaxOverdue (2^29 ms, 6.2 days)
//     before now: a deadline already overdue by more than that at a rebase
//     is kept as "due at base_", still due and still first, only no longer
//     ordered against the other such ones (which all fire in the same
//     ExpireTimers pass anyway). A rebase is O(n), at most every 6.2 days.
//   - a deadline before base_ (a negative delay) is kept as due at base_,
//     which is not after now: due at once, as it was.
// The heap never needs the clamp at 2^32 - 1; it is there so that a broken
// caller gets an early timer, never a wrapped one.
#ifndef NETLOOP_TIMER_HEAP_H_
#define NETLOOP_TIMER_HEAP_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace netloop {

class TimerHeap {
 public:
  static constexpr int64_t kNone = INT64_MAX;

  // Sets (or moves) the deadline of id to now_ms + delay_ms. now_ms is the
  // caller's monotonic clock and must not go backwards between calls.
  void Set(uint32_t id, int64_t now_ms, int32_t delay_ms);
  // Removes the deadline of id, if it has one.
  void Cancel(uint32_t id);
  bool Has(uint32_t id) const { return id < pos_.size() && pos_[id] >= 0; }
  // The earliest deadline, or kNone.
  int64_t Earliest() const { return heap_.empty() ? kNone : base_ + heap_[0].rel; }
  // Pops the earliest timer if it is due at now_ms; returns false otherwise.
  bool PopDue(int64_t now_ms, uint32_t* id);
  size_t size() const { return heap_.size(); }
  // Room for ids below max_id without reallocation.
  void Reserve(size_t max_id) {
    pos_.reserve(max_id);
    heap_.reserve(max_id / 3 + 1);
  }

  static constexpr int64_t kRebaseAfter = int64_t{1} << 30;
  static constexpr int64_t kMaxOverdue = int64_t{1} << 29;

 private:
  struct Entry {
    uint32_t rel;  // deadline - base_, in ms
    uint32_t id;
  };
  static_assert(sizeof(Entry) == 8, "a timer entry is 8 bytes");

  // Moves base_ forward if it fell kRebaseAfter behind now_ms.
  void KeepBaseNear(int64_t now_ms);
  void Rebase(int64_t new_base);
  uint32_t Offset(int64_t when_ms) const;
  void Place(size_t i, Entry e);
  void SiftUp(size_t i);
  void SiftDown(size_t i);
  void RemoveAt(size_t i);

  int64_t base_ = 0;
  std::vector<Entry> heap_;
  std::vector<int32_t> pos_;  // id -> index in heap_, or -1
};

}  // namespace netloop

#endif  // NETLOOP_TIMER_HEAP_H_
