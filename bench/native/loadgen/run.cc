// The main thread's shared steps (see run.h).
#include "run.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "clock.h"

namespace loadgen {

namespace {

extern "C" void on_watchdog(int) {
  static const char msg[] = "loadgen: watchdog: the run did not finish in time\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(3);
}

}  // namespace

std::vector<std::unique_ptr<Worker>> make_workers(const Plan& plan, PhaseSync& sync, uint32_t first, int64_t count,
                                                  int connect_concurrency) {
  const Options& o = plan.opt;
  const uint64_t n = count < 0 ? static_cast<uint64_t>(o.conns) : static_cast<uint64_t>(count);
  const int cc = connect_concurrency < 0 ? o.connect_concurrency : connect_concurrency;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < o.threads; t++) {
    uint32_t lo = first + static_cast<uint32_t>(n * t / o.threads);
    uint32_t hi = first + static_cast<uint32_t>(n * (t + 1) / o.threads);
    // Each thread gets its share of the connect concurrency (at least 1).
    workers.emplace_back(new Worker(plan, sync, lo, hi - lo, std::max(1, cc / o.threads)));
  }
  return workers;
}

// Every mode starts alike: the clock, the connect deadline (none when connect_s < 0), and a
// watchdog at the mode's whole length plus 30 s. Workers stop on their own at the end
// (epoll_wait wakes at least every 100 ms); the watchdog is for a machine so overloaded that
// they do not.
void start_clock(Plan& plan, double connect_s, double rest_s) {
  plan.t_start = now_ns();
  plan.t_connect_deadline = connect_s < 0 ? ~0ull : plan.t_start + static_cast<uint64_t>(connect_s * 1e9);
  signal(SIGALRM, on_watchdog);
  alarm(static_cast<unsigned>(std::ceil(std::max(connect_s, 0.0) + rest_s)) + 30);
}

std::vector<std::thread> start_threads(std::vector<std::unique_ptr<Worker>>& workers) {
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    Worker* wp = w.get();
    threads.emplace_back([wp] { wp->run(); });
  }
  return threads;
}

void set_phases(const Options& o, PhaseSync& sync, uint64_t t_go, uint64_t* t_measure, uint64_t* t_end) {
  *t_measure = t_go + static_cast<uint64_t>(o.warmup_s * 1e9);
  *t_end = *t_measure + static_cast<uint64_t>(o.duration_s * 1e9);
  sync.end.store(*t_end, std::memory_order_relaxed);
  sync.start.store(t_go, std::memory_order_release);
}

void wait_connected(PhaseSync& sync) {
  while (sync.connecting.load(std::memory_order_acquire) > 0) sleep_until_ns(now_ns() + 1'000'000);
}

}  // namespace loadgen
