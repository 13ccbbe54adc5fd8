// Churn mode: each slot loops connect, (upgrade,) one message, close.
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

void Worker::churn_close(Conn& c) {
  c.closing = true;
  if (c.proto->close_frame(1000, c.out)) {
    if (!c.want_out) flush(c);
    return;
  }
  c.close_seen = true;  // TCP: no close frame to wait for, only the FIN
  if (shutdown(c.fd, SHUT_WR) != 0) fail(c, false, "shutdown", errno);
}

// Churn: the server closed after our close: one cycle done. It counts if it ended inside the
// measured window; its time runs from the first connect attempt to the server's FIN.
void Worker::churn_done(Conn& c) {
  close_conn(c);
  c.cycles++;
  if (now_ >= t_measure_ && now_ < end_) {
    stats_.messages++;
    stats_.hist.record(now_ - c.cycle_start);
  }
  if (now_ < end_) churn_restart(c, now_);
}

void Worker::churn_restart(Conn& c, uint64_t at) {
  c.state = ConnState::kIdle;
  c.closing = false;
  c.close_seen = false;
  c.ready_seen = false;
  c.want_out = false;
  c.attempts = 0;
  c.recv_off = 0;
  c.send_seq = c.recv_seq;  // a message lost with a failed connection is not waited for
  c.recv_seed = seed_of(c, c.recv_seq);
  c.out.consume(c.out.size());
  c.proto.reset();
  retries_.push({at, static_cast<uint32_t>(&c - conns_.data())});
}


// Churn: slots start connecting at once and cycle (connect, upgrade, one message, close) until
// the end; cycles completed after the warmup and before the end count.
int run_churn(Plan& plan) {
  const Options& o = plan.opt;
  start_clock(plan, -1, o.warmup_s + o.duration_s);  // no connect phase
  PhaseSync sync;
  sync.connecting.store(0);
  uint64_t t_measure = 0, t_end = 0;
  set_phases(o, sync, plan.t_start, &t_measure, &t_end);
  std::vector<std::unique_ptr<Worker>> workers = make_workers(plan, sync);
  std::vector<std::thread> threads = start_threads(workers);
  const auto [srv_ok, srv0, srv1, self0, self1] = measure_cpu(o, t_measure, t_end);
  for (auto& t : threads) t.join();
  alarm(0);
  const Stats total = total_of(workers);
  const double dur = o.duration_s;
  const double cycles = static_cast<double>(total.messages);
  JsonLine j;
  j.str("mode", "churn");
  j.str("proto", o.proto);
  j.u64("conns", static_cast<uint64_t>(o.conns));
  j.u64("size", o.size);
  j.num("duration_s", dur, 3);
  j.num("warmup_s", o.warmup_s, 3);
  j.u64("cycles", total.messages);
  j.num("cycles_per_sec", cycles / dur, 1);
  percentiles(j, total.hist, "p50_us", "p99_us", "max_us");
  tail_percentiles(j, total.hist, "");
  j.u64("errors", total.errors);
  j.u64("verify_failures", total.verify_failures);
  j.u64("handshake_failures", total.handshake_failures);
  j.u64("connect_retries", total.connect_retries);
  j.u64("connects", total.upgraded);
  j.u64("conns_ok", total.conns_ok);
  server_cpu_fields(j, srv_ok, srv0, srv1, "server_cpu_us_per_cycle", total.messages > 0 ? cycles : 0, 3);
  j.num("loadgen_cpu_s", self1 - self0, 3);
  j.u64("threads", static_cast<uint64_t>(o.threads));
  if (o.proto == "ws") j.str("msg_type", o.msg_type);
  j.u64("source_ips", plan.sources.size());
  std::string line = j.done();
  printf("%s\n", line.c_str());
  fflush(stdout);
  return (total.errors > 0 || total.conns_ok < static_cast<uint64_t>(o.conns)) ? 1 : 0;
}

}  // namespace loadgen
