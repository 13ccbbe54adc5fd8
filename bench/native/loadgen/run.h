// What every mode's main thread does alike: workers and their threads, the clock, the
// watchdog, the phases.
#ifndef NETLOOP_LOADGEN_RUN_H_
#define NETLOOP_LOADGEN_RUN_H_

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "options.h"
#include "plan.h"
#include "worker.h"

namespace loadgen {

// --threads workers, connections [first, first + count) (default: all) split evenly between
// them, with connect_concurrency (default: --connect-concurrency) shared out.
std::vector<std::unique_ptr<Worker>> make_workers(const Plan& plan, PhaseSync& sync, uint32_t first = 0,
                                                  int64_t count = -1, int connect_concurrency = -1);
// Every mode starts alike: the clock, the connect deadline (none when connect_s < 0), and a
// watchdog at the mode's whole length plus 30 s.
void start_clock(Plan& plan, double connect_s, double rest_s);
// One thread per worker, running it.
std::vector<std::thread> start_threads(std::vector<std::unique_ptr<Worker>>& workers);
// The phases every worker follows: messages from t_go on, counted from the end of the warm-up
// (*t_measure) to *t_end.
void set_phases(const Options& o, PhaseSync& sync, uint64_t t_go, uint64_t* t_measure, uint64_t* t_end);
// Waits until every worker has its connections ready or failed (they enforce the deadline).
void wait_connected(PhaseSync& sync);

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_RUN_H_
