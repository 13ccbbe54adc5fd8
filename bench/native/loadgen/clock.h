// Monotonic time in nanoseconds, and sleeping until a deadline.
#ifndef NETLOOP_LOADGEN_CLOCK_H_
#define NETLOOP_LOADGEN_CLOCK_H_

#include <time.h>

#include <cstdint>

namespace loadgen {

inline uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: ~20 ns, cheap enough to call once per event
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline void sleep_until_ns(uint64_t deadline) {
  for (;;) {
    uint64_t now = now_ns();
    if (now >= deadline) return;
    uint64_t left = deadline - now;
    timespec ts{static_cast<time_t>(left / 1000000000ull), static_cast<long>(left % 1000000000ull)};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_CLOCK_H_
