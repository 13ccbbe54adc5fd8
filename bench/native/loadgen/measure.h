// What the run measures on the side: a process's CPU time and RSS from /proc, our own CPU time.
#ifndef NETLOOP_LOADGEN_MEASURE_H_
#define NETLOOP_LOADGEN_MEASURE_H_

#include <cstdint>

#include "options.h"

namespace loadgen {

// utime + stime of a process in clock ticks (/proc/PID/stat sums all of its threads).
bool read_proc_cpu_ticks(long pid, uint64_t* ticks);
// VmRSS of a process in bytes (/proc/PID/status reports kB).
bool read_proc_rss_bytes(long pid, uint64_t* bytes);
// This process's user + system CPU time in seconds.
double self_cpu_s();
double ticks_to_s(uint64_t ticks);

// The server's CPU ticks (from /proc, when --server-pid was given and readable) and ours, at
// both ends of the measured period; returns once it is over.
struct CpuWindow {
  bool srv_ok;
  uint64_t srv0, srv1;
  double self0, self1;
};
CpuWindow measure_cpu(const Options& o, uint64_t t_measure, uint64_t t_end);

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_MEASURE_H_
