// Broadcast mode: connection 0 publishes, the server fans out, every connection checks every message.
#include "modes.h"

#include <errno.h>
#include <sys/eventfd.h>
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

// Broadcast: open everything; once all are upgraded, connection 0 publishes (at most --inflight
// messages on their way to everyone at once), every connection receives and checks every message.
int run_broadcast(Plan& plan) {
  const Options& o = plan.opt;
  Broadcast bc(static_cast<size_t>(o.inflight));
  bc.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (bc.efd < 0) {
    fprintf(stderr, "loadgen: eventfd: %s\n", strerror(errno));
    return 2;
  }
  plan.bc = &bc;
  start_clock(plan, o.connect_timeout_s, o.warmup_s + o.duration_s);
  PhaseSync sync;
  sync.connecting.store(o.threads);
  std::vector<std::unique_ptr<Worker>> workers = make_workers(plan, sync);
  std::vector<std::thread> threads = start_threads(workers);
  wait_connected(sync);
  uint64_t ready = 0;
  for (auto& w : workers) ready += w->stats().upgraded;  // written before `connecting` dropped
  bc.expected = ready;
  if (ready < static_cast<uint64_t>(o.conns)) bc.broken.store(true);  // someone would never get them
  uint64_t t_measure = 0, t_end = 0;
  set_phases(o, sync, now_ns(), &t_measure, &t_end);
  const auto [srv_ok, srv0, srv1, self0, self1] = measure_cpu(o, t_measure, t_end);
  for (auto& t : threads) t.join();
  alarm(0);
  close(bc.efd);
  const Stats total = total_of(workers);
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
  j.num("loadgen_cpu_s", self1 - self0, 3);
  j.u64("threads", static_cast<uint64_t>(o.threads));
  j.str("msg_type", o.msg_type);
  if (total.upgraded > 0) {
    j.num("connect_time_s", static_cast<double>(total.last_ready_ns - plan.t_start) / 1e9, 3);
  } else {
    j.null("connect_time_s");
  }
  j.u64("source_ips", plan.sources.size());
  std::string line = j.done();
  printf("%s\n", line.c_str());
  fflush(stdout);
  return (total.errors > 0 || total.conns_ok < static_cast<uint64_t>(o.conns)) ? 1 : 0;
}

}  // namespace loadgen
