// Broadcast over several generator processes (--processes): what they share, in one MAP_SHARED
// mapping made before the subscriber processes fork, and how a subscriber process hands its
// counts back to the publisher's.
#ifndef NETLOOP_LOADGEN_SHARED_RUN_H_
#define NETLOOP_LOADGEN_SHARED_RUN_H_

#include <cstddef>
#include <cstdint>

#include "histogram.h"
#include "plan.h"
#include "stats.h"

namespace loadgen {

// One subscriber process's figures, written once its threads are done, read after it exited.
struct ProcResult {
  uint64_t messages, errors, verify_failures, handshake_failures, conns_ok, connect_retries, upgraded,
      last_ready_ns, broadcasts;
  double cpu_s;  // its CPU time over the measured period
  uint64_t hist[Histogram::kWords];
  uint64_t fanout[Histogram::kWords];
};

struct SharedRun {
  PhaseSync* sync;
  Broadcast* bc;
  ProcResult* results;  // one per subscriber process (processes - 1)
  void* base;
  size_t bytes;
};

// nullptr members on failure (errno set by mmap).
SharedRun map_shared_run(size_t window, int processes);
void unmap_shared_run(SharedRun& r);

void save_result(const Stats& s, double cpu_s, ProcResult* out);
void add_result(const ProcResult& r, Stats* total);

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_SHARED_RUN_H_
