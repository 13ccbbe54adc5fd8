// Drives native/timer_heap.cc against a plain model (exact int64 deadlines)
// on a simulated clock over months, in jumps up to the int32 delay limit:
// the 32-bit offsets must fire every timer at its deadline, never early, in
// deadline order, and Earliest() must be exact. Built and run by
// test/native-timer-heap.test.js; prints one line per scenario, exits 1 on
// the first mismatch.
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "timer_heap.h"

using netloop::TimerHeap;

namespace {

uint64_t rng_state = 88172645463325252ull;
uint64_t Next() {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}
int64_t Between(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(Next() % static_cast<uint64_t>(hi - lo + 1)); }

[[noreturn]] void Fail(const char* scenario, const char* what, int64_t now, int64_t a, int64_t b) {
  std::printf("FAIL %s: %s at now=%" PRId64 " (%" PRId64 " vs %" PRId64 ")\n", scenario, what, now, a, b);
  std::exit(1);
}

struct Check {
  const char* name;
  TimerHeap heap;
  std::map<uint32_t, int64_t> model;  // id -> deadline
  uint64_t fired = 0;
  int64_t now;

  explicit Check(const char* n, int64_t start) : name(n), now(start) {}

  int64_t ModelEarliest() const {
    int64_t m = TimerHeap::kNone;
    for (const auto& [id, when] : model) m = std::min(m, when);
    return m;
  }
  void Set(uint32_t id, int32_t delay) {
    heap.Set(id, now, delay);
    model[id] = now + delay;
  }
  void Cancel(uint32_t id) {
    heap.Cancel(id);
    model.erase(id);
  }
  void Verify() {
    if (heap.size() != model.size()) Fail(name, "size", now, static_cast<int64_t>(heap.size()), static_cast<int64_t>(model.size()));
    int64_t e = ModelEarliest();
    if (heap.Earliest() != e) Fail(name, "Earliest()", now, heap.Earliest(), e);
  }
  // Pops everything due, checking each against the model: due, and no
  // other timer due strictly earlier.
  void Expire() {
    uint32_t id;
    while (heap.PopDue(now, &id)) {
      auto it = model.find(id);
      if (it == model.end()) Fail(name, "popped an unknown id", now, id, 0);
      if (it->second > now) Fail(name, "fired early", now, it->second, now);
      int64_t e = ModelEarliest();
      if (it->second != e) Fail(name, "out of order", now, it->second, e);
      model.erase(it);
      fired++;
    }
    for (const auto& [mid, when] : model) {
      if (when <= now) Fail(name, "a due timer did not fire", now, when, mid);
    }
    Verify();
  }
};

// Busy: many timers, short and long delays, moved and cancelled, the clock
// advancing in small steps for 120 days (several rebases).
void Busy() {
  Check c("busy", 5'000'000'000);  // the monotonic clock after ~58 days of uptime: past 2^32
  const int64_t end = c.now + 120LL * 86'400'000;
  while (c.now < end) {
    for (int k = 0; k < 8; k++) {
      uint32_t id = static_cast<uint32_t>(Next() % 512);
      uint64_t r = Next() % 10;
      if (r < 6) {
        c.Set(id, static_cast<int32_t>(Between(0, 200'000)));
      } else if (r < 8) {
        c.Set(id, static_cast<int32_t>(Between(0, INT32_MAX)));
      } else {
        c.Cancel(id);
      }
    }
    c.Verify();
    c.now += Between(0, 3'600'000);
    c.Expire();
  }
  std::printf("ok busy: %" PRIu64 " timers fired in order over 120 days\n", c.fired);
}

// Idle: a few far timers (24.8 days, the int32 limit) and long jumps of the
// clock between calls, as when the loop sleeps until its earliest deadline.
void Idle() {
  Check c("idle", 1000);
  for (int round = 0; round < 400; round++) {
    for (int k = 0; k < 4; k++) c.Set(static_cast<uint32_t>(Next() % 16), static_cast<int32_t>(Between(INT32_MAX - 1000, INT32_MAX)));
    c.Set(16, static_cast<int32_t>(Between(0, 5)));
    c.Verify();
    int64_t e = c.ModelEarliest();
    c.now = e + Between(0, 2);  // woken at (or just after) the earliest deadline
    c.Expire();
    if (Next() % 2 == 0) {
      c.now += Between(INT32_MAX / 2, INT32_MAX);  // nothing set for weeks
      c.Expire();
    }
  }
  std::printf("ok idle: %" PRIu64 " timers fired in order over %" PRId64 " days\n", c.fired, (c.now - 1000) / 86'400'000);
}

// Stalled: nothing expires for longer than kMaxOverdue, while new timers
// keep coming (the loop's timer never ran). Documented: timers overdue by
// more than that at a rebase lose their order among themselves, but every
// one still fires once due, none early, and the others keep theirs.
void Stalled() {
  Check c("stalled", 0);
  for (uint32_t id = 0; id < 64; id++) c.Set(id, static_cast<int32_t>(Between(0, 86'400'000)));
  for (int day = 0; day < 40; day++) {
    c.now += 86'400'000;
    c.Set(100 + static_cast<uint32_t>(day), static_cast<int32_t>(Between(0, INT32_MAX)));
  }
  uint32_t id;
  uint64_t fired = 0;
  int64_t last_when = INT64_MIN;
  int64_t limit = c.now - TimerHeap::kMaxOverdue;
  while (c.heap.PopDue(c.now, &id)) {
    int64_t when = c.model.at(id);
    if (when > c.now) Fail(c.name, "fired early", c.now, when, c.now);
    // Order holds from the rebase limit on.
    if (when >= limit && when < last_when) Fail(c.name, "out of order past the limit", c.now, when, last_when);
    if (when >= limit) last_when = when;
    c.model.erase(id);
    fired++;
  }
  for (const auto& [mid, when] : c.model) {
    if (when <= c.now) Fail(c.name, "a due timer did not fire", c.now, when, mid);
  }
  c.fired = fired;
  c.Expire();  // the rest, later, exactly
  while (!c.model.empty()) {
    c.now = c.ModelEarliest();
    c.Expire();
  }
  std::printf("ok stalled: %" PRIu64 " overdue timers fired at once, the rest in order\n", fired);
}

}  // namespace

int main() {
  Busy();
  Idle();
  Stalled();
  return 0;
}
