// Hold mode: connections held idle, pinged on a schedule, and the server's RSS per connection.
#include "modes.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "clock.h"
#include "measure.h"
#include "report.h"
#include "run.h"
#include "worker.h"

namespace loadgen {

void Conn::on_pong(const uint8_t* p, size_t n) {
  if (ping_outstanding && n == 8 && load64(p) == ping_payload) {
    worker->pong_matched(*this);
  } else {
    worker->pong_unexpected();
  }
}

void Worker::pong_matched(Conn& c) {
  c.ping_outstanding = false;
  outstanding_--;
  stats_.pongs_received++;
  stats_.hist.record(now_ - c.ping_sent_at);
}

void Worker::send_due_pings(uint64_t start, uint64_t end) {
  next_ping_due_ = 0;
  if (plan_.opt.ping_interval_s <= 0 || conns_.empty()) return;
  const double interval = plan_.opt.ping_interval_s * 1e9;
  const double m = static_cast<double>(conns_.size());
  for (;;) {
    const double frac = static_cast<double>(ping_round_) + static_cast<double>(ping_next_ + 1) / m;
    const uint64_t due = start + static_cast<uint64_t>(interval * frac);
    if (due >= end) return;  // no ping the hold has no time left to answer
    if (due > now_) {
      next_ping_due_ = due;
      return;
    }
    Conn& c = conns_[ping_next_];
    if (c.state == ConnState::kOpen && c.ready_seen) send_ping(c, ping_round_);
    if (++ping_next_ == conns_.size()) {
      ping_next_ = 0;
      ping_round_++;
    }
  }
}

void Worker::send_ping(Conn& c, uint64_t round) {
  if (c.ping_outstanding) {  // the last one was not answered within an interval
    stats_.pings_unanswered++;
    outstanding_--;
  }
  c.ping_payload = (static_cast<uint64_t>(c.id) << 32) ^ round;
  uint8_t payload[8];
  store64(payload, c.ping_payload);
  c.proto->ping(payload, sizeof payload, c.out);
  c.ping_outstanding = true;
  c.ping_sent_at = now_;
  outstanding_++;
  stats_.pings_sent++;
  if (!c.want_out) flush(c);
}

// After the barrier: time for the hold's end and the teardown beyond settle + duration + the pong
// grace. Dozens of generators closing a million connections at once on one shared core took
// longer than the usual 30 s.
constexpr unsigned kBarrierTeardownS = 180;

// --barrier: says how many connections are up, then waits for the harness's go (a line on
// stdin, or stdin's end if the harness is gone) while the workers keep every connection open.
// The watchdog is off meanwhile (the harness bounds the wait) and re-armed for the rest.
static void wait_for_go(const std::vector<std::unique_ptr<Worker>>& workers, const Options& o) {
  uint64_t up = 0;
  for (auto& w : workers) up += w->stats().upgraded;  // written before `connecting` dropped
  printf("{\"phase\":\"connected\",\"conns_ok\":%" PRIu64 "}\n", up);
  fflush(stdout);
  alarm(0);
  char c = 0;
  ssize_t r;
  do {
    r = read(0, &c, 1);
  } while ((r < 0 && errno == EINTR) || (r == 1 && c != '\n'));
  alarm(static_cast<unsigned>(std::ceil(o.settle_s + o.duration_s + 5)) + kBarrierTeardownS);
}

// Hold: sample the server's RSS, open everything, wait until all are upgraded (or failed),
// let the server settle, sample RSS again, hold (and ping) for the duration, sample once more.
int run_hold(Plan& plan) {
  const Options& o = plan.opt;
  const bool have_pid = o.server_pid > 0;
  uint64_t rss_before = 0, rss_idle = 0, rss_end = 0;
  uint64_t cpu_before = 0, cpu_up = 0, cpu_hold = 0, cpu_end = 0;
  bool rss_ok = have_pid && read_proc_rss_bytes(o.server_pid, &rss_before);
  bool cpu_ok = have_pid && read_proc_cpu_ticks(o.server_pid, &cpu_before);

  plan.pong_grace_ns = o.ping_interval_s > 0 ? static_cast<uint64_t>(std::min(std::max(o.ping_interval_s, 1.0), 5.0) * 1e9) : 0;
  start_clock(plan, o.connect_timeout_s, o.settle_s + o.duration_s + 5);

  PhaseSync sync;
  sync.connecting.store(o.threads);
  const double self0 = self_cpu_s();
  std::vector<std::unique_ptr<Worker>> workers = make_workers(plan, sync);
  std::vector<std::thread> threads = start_threads(workers);
  wait_connected(sync);
  cpu_ok = cpu_ok && read_proc_cpu_ticks(o.server_pid, &cpu_up);
  if (o.barrier) wait_for_go(workers, o);
  sleep_until_ns(now_ns() + static_cast<uint64_t>(o.settle_s * 1e9));
  rss_ok = rss_ok && read_proc_rss_bytes(o.server_pid, &rss_idle);
  cpu_ok = cpu_ok && read_proc_cpu_ticks(o.server_pid, &cpu_hold);
  const uint64_t hold_start = now_ns();
  const uint64_t hold_end = hold_start + static_cast<uint64_t>(o.duration_s * 1e9);
  sync.end.store(hold_end, std::memory_order_relaxed);
  sync.start.store(hold_start, std::memory_order_release);
  sleep_until_ns(hold_end);
  rss_ok = rss_ok && read_proc_rss_bytes(o.server_pid, &rss_end);
  cpu_ok = cpu_ok && read_proc_cpu_ticks(o.server_pid, &cpu_end);
  for (auto& t : threads) t.join();
  const double self1 = self_cpu_s();
  alarm(0);
  if (have_pid && !(rss_ok && cpu_ok)) fprintf(stderr, "loadgen: cannot read /proc/%ld: server RSS or CPU unknown\n", o.server_pid);
  const Stats total = total_of(workers);
  const uint64_t errors = total.errors + total.pings_unanswered;

  JsonLine j;
  j.str("mode", "hold");
  j.str("proto", o.proto);
  j.u64("conns", static_cast<uint64_t>(o.conns));
  j.u64("conns_ok", total.conns_ok);
  j.u64("errors", errors);
  j.u64("failed_conns", total.errors);
  j.u64("handshake_failures", total.handshake_failures);
  j.u64("connect_retries", total.connect_retries);
  if (total.upgraded > 0) {
    const double t = static_cast<double>(total.last_ready_ns - plan.t_start) / 1e9;
    j.num("connect_time_s", t, 3);
    j.num("connects_per_sec", t > 0 ? static_cast<double>(total.upgraded) / t : NAN, 1);
  } else {
    j.null("connect_time_s");
    j.null("connects_per_sec");
  }
  j.num("settle_s", o.settle_s, 3);
  j.num("duration_s", o.duration_s, 3);
  j.num("ping_interval_s", o.ping_interval_s, 3);
  j.u64("pings_sent", total.pings_sent);
  j.u64("pongs_received", total.pongs_received);
  j.u64("pings_unanswered", total.pings_unanswered);
  j.u64("pongs_unexpected", total.pongs_unexpected);
  j.u64("server_pings", total.server_pings);
  percentiles(j, total.hist, "ping_p50_us", "ping_p99_us", nullptr);
  if (rss_ok) {
    j.u64("rss_before_bytes", rss_before);
    j.u64("rss_idle_bytes", rss_idle);
    j.u64("rss_end_bytes", rss_end);
    if (total.conns_ok > 0) {
      j.num("rss_per_conn_bytes", (static_cast<double>(rss_idle) - static_cast<double>(rss_before)) / static_cast<double>(total.conns_ok), 1);
    } else {
      j.null("rss_per_conn_bytes");
    }
  } else {
    for (const char* k : {"rss_before_bytes", "rss_idle_bytes", "rss_end_bytes", "rss_per_conn_bytes"}) j.null(k);
  }
  if (cpu_ok) {
    j.num("server_connect_cpu_s", ticks_to_s(cpu_up - cpu_before), 3);
    j.num("server_hold_cpu_s", ticks_to_s(cpu_end - cpu_hold), 3);
  } else {
    j.null("server_connect_cpu_s");
    j.null("server_hold_cpu_s");
  }
  j.num("loadgen_cpu_s", self1 - self0, 3);
  j.u64("threads", static_cast<uint64_t>(o.threads));
  j.u64("connect_concurrency", static_cast<uint64_t>(o.connect_concurrency));
  j.u64("source_ips", plan.sources.size());
  tls_fields(j, o, total);
  std::string line = j.done();
  printf("%s\n", line.c_str());
  fflush(stdout);
  return (errors > 0 || total.conns_ok < static_cast<uint64_t>(o.conns)) ? 1 : 0;
}

}  // namespace loadgen
