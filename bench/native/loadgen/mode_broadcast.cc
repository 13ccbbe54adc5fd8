// Broadcast mode: connection 0 publishes, the server fans out, every connection checks every message.
#include "modes.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
#include "shared_run.h"
#include "worker.h"

namespace loadgen {

// Broadcast: the publisher sends while fewer than W messages are on their way to everyone.
void Worker::publish_more() {
  Broadcast& b = *plan_.bc;
  Conn& p = conns_[0];
  if (now_ >= end_ || b.broken.load(std::memory_order_relaxed) || p.state != ConnState::kOpen) return;
  const uint64_t w = static_cast<uint64_t>(plan_.opt.inflight);
  const size_t size = plan_.opt.size;
  bool sent = false;
  for (;;) {
    const uint64_t seq = b.published.load(std::memory_order_relaxed);  // only this thread writes it
    if (seq >= w && b.slot_done[seq % w].load(std::memory_order_acquire) != seq - w + 1) break;
    b.slot_time[seq % w].store(now_, std::memory_order_relaxed);
    b.published.store(seq + 1, std::memory_order_release);  // before its bytes can arrive anywhere
    uint8_t* payload = p.proto->frame_begin(size, p.out);
    pattern_fill(plan_.pattern, message_seed(kBroadcastId, seq), payload, size);
    p.proto->frame_end(payload, size);
    sent = true;
  }
  if (sent && !p.want_out) flush(p);
}

void Worker::broadcast_delivered(Conn& c) {
  Broadcast& b = *plan_.bc;
  const uint64_t seq = c.recv_seq;
  const size_t slot = seq % static_cast<uint64_t>(plan_.opt.inflight);
  // Ordered by the acquire load of `published` in on_payload, which the publisher stored after
  // this; the slot cannot be reused before this connection counts itself below.
  const uint64_t t = b.slot_time[slot].load(std::memory_order_relaxed);
  const bool counted = now_ >= t_measure_ && now_ < end_;
  if (counted) {
    stats_.messages++;
    stats_.hist.record(now_ > t ? now_ - t : 0);
  }
  c.recv_seq++;
  c.recv_off = 0;
  c.recv_seed = seed_of(c, c.recv_seq);
  if (b.slot_count[slot].fetch_add(1, std::memory_order_acq_rel) + 1 == b.expected) {
    b.slot_count[slot].store(0, std::memory_order_relaxed);
    if (counted) {
      stats_.broadcasts++;
      stats_.fanout.record(now_ > t ? now_ - t : 0);
    }
    b.slot_done[slot].store(seq + 1, std::memory_order_release);
    const uint64_t one = 1;
    ssize_t r = write(b.efd, &one, sizeof one);  // wakes the publisher's epoll (maybe this one)
    (void)r;
  }
}

namespace {

// Process k of n holds connections [conns * k / n, conns * (k + 1) / n); process 0 (this one)
// holds connection 0, the publisher.
uint32_t slice_start(const Options& o, int k) {
  return static_cast<uint32_t>(static_cast<uint64_t>(o.conns) * static_cast<uint64_t>(k) / static_cast<uint64_t>(o.processes));
}

// A forked subscriber process: its slice of the connections (no publisher among them), the same
// phases as everyone's (the shared PhaseSync), its figures into *out; never returns.
[[noreturn]] void run_subscriber_process(Plan& plan, PhaseSync& sync, int k, ProcResult* out) {
  const Options& o = plan.opt;
  start_clock(plan, o.connect_timeout_s, o.warmup_s + o.duration_s);  // fork cleared the watchdog
  const uint32_t first = slice_start(o, k);
  std::vector<std::unique_ptr<Worker>> workers =
      make_workers(plan, sync, first, slice_start(o, k + 1) - first, o.connect_concurrency / o.processes);
  std::vector<std::thread> threads = start_threads(workers);
  uint64_t t_go = 0;
  while ((t_go = sync.start.load(std::memory_order_acquire)) == 0) sleep_until_ns(now_ns() + 1'000'000);
  Options mine = o;
  mine.server_pid = -1;  // the publisher's process reads the server's CPU
  const uint64_t t_measure = t_go + static_cast<uint64_t>(o.warmup_s * 1e9);
  const CpuWindow cpu = measure_cpu(mine, t_measure, t_measure + static_cast<uint64_t>(o.duration_s * 1e9));
  for (auto& t : threads) t.join();
  save_result(total_of(workers), cpu.self1 - cpu.self0, out);
  _exit(0);
}

}  // namespace

// Broadcast: open everything; once all are upgraded, connection 0 publishes (at most --inflight
// messages on their way to everyone at once), every connection receives and checks every message.
// With --processes P, P - 1 forked processes hold the subscribers past this one's share; they
// share the slots, the phases and the publisher's eventfd (shared_run.h), and report back at
// the end. Forked before any thread starts.
int run_broadcast(Plan& plan) {
  const Options& o = plan.opt;
  SharedRun shared = map_shared_run(static_cast<size_t>(o.inflight), o.processes);
  if (shared.base == nullptr) {
    fprintf(stderr, "loadgen: mmap: %s\n", strerror(errno));
    return 2;
  }
  Broadcast& bc = *shared.bc;
  PhaseSync& sync = *shared.sync;
  bc.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (bc.efd < 0) {
    fprintf(stderr, "loadgen: eventfd: %s\n", strerror(errno));
    return 2;
  }
  plan.bc = &bc;
  start_clock(plan, o.connect_timeout_s, o.warmup_s + o.duration_s);
  sync.connecting.store(o.threads * o.processes);
  fflush(nullptr);
  std::vector<pid_t> children;
  for (int k = 1; k < o.processes; k++) {
    pid_t pid = fork();
    if (pid == 0) run_subscriber_process(plan, sync, k, &shared.results[k - 1]);
    if (pid < 0) {
      fprintf(stderr, "loadgen: fork: %s\n", strerror(errno));
      for (pid_t c : children) kill(c, SIGKILL);
      for (pid_t c : children) waitpid(c, nullptr, 0);
      return 2;
    }
    children.push_back(pid);
  }
  const int cc = o.processes > 1 ? o.connect_concurrency / o.processes : o.connect_concurrency;
  std::vector<std::unique_ptr<Worker>> workers = make_workers(plan, sync, 0, slice_start(o, 1), cc);
  std::vector<std::thread> threads = start_threads(workers);
  wait_connected(sync);
  const uint64_t ready = bc.upgraded.load(std::memory_order_relaxed);  // added before `connecting` dropped
  bc.expected = ready;
  if (ready < static_cast<uint64_t>(o.conns)) bc.broken.store(true);  // someone would never get them
  uint64_t t_measure = 0, t_end = 0;
  set_phases(o, sync, now_ns(), &t_measure, &t_end);
  const auto [srv_ok, srv0, srv1, self0, self1] = measure_cpu(o, t_measure, t_end);
  for (auto& t : threads) t.join();
  Stats total = total_of(workers);
  double generator_cpu_s = self1 - self0;
  for (size_t i = 0; i < children.size(); i++) {
    int status = 0;
    waitpid(children[i], &status, 0);
    const int k = static_cast<int>(i) + 1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      add_result(shared.results[i], &total);
      generator_cpu_s += shared.results[i].cpu_s;
    } else {  // its connections' figures are lost: count every one of them failed
      fprintf(stderr, "loadgen: subscriber process %d ended badly (status %d)\n", k, status);
      total.errors += slice_start(o, k + 1) - slice_start(o, k);
    }
  }
  alarm(0);
  close(bc.efd);
  unmap_shared_run(shared);
  const double dur = o.duration_s;
  const double deliveries = static_cast<double>(total.messages);
  JsonLine j;
  j.str("mode", "broadcast");
  j.str("proto", o.proto);
  j.u64("conns", static_cast<uint64_t>(o.conns));
  j.u64("inflight", static_cast<uint64_t>(o.inflight));
  j.u64("size", o.size);
  j.num("duration_s", dur, 3);
  j.num("warmup_s", o.warmup_s, 3);
  j.u64("deliveries", total.messages);
  j.num("deliveries_per_sec", deliveries / dur, 1);
  j.u64("broadcasts", total.broadcasts);
  j.num("broadcasts_per_sec", static_cast<double>(total.broadcasts) / dur, 1);
  percentiles(j, total.hist, "p50_us", "p99_us", "max_us");
  tail_percentiles(j, total.hist, "");
  percentiles(j, total.fanout, "fanout_p50_us", "fanout_p99_us", "fanout_max_us");
  j.u64("errors", total.errors);
  j.u64("verify_failures", total.verify_failures);
  j.u64("handshake_failures", total.handshake_failures);
  j.u64("conns_ok", total.conns_ok);
  server_cpu_fields(j, srv_ok, srv0, srv1, "server_cpu_us_per_delivery", total.messages > 0 ? deliveries : 0, 4);
  j.num("loadgen_cpu_s", generator_cpu_s, 3);  // every generator process's
  j.u64("threads", static_cast<uint64_t>(o.threads));
  j.str("msg_type", o.msg_type);
  if (total.upgraded > 0) {
    j.num("connect_time_s", static_cast<double>(total.last_ready_ns - plan.t_start) / 1e9, 3);
  } else {
    j.null("connect_time_s");
  }
  j.u64("source_ips", plan.sources.size());
  tls_fields(j, o, total);
  j.u64("generator_processes", static_cast<uint64_t>(o.processes));
  std::string line = j.done();
  printf("%s\n", line.c_str());
  fflush(stdout);
  return (total.errors > 0 || total.conns_ok < static_cast<uint64_t>(o.conns)) ? 1 : 0;
}

}  // namespace loadgen
