// Echo mode: messages out, their echoes checked byte by byte, round trips timed. Conn::on_payload
// (the verification) serves broadcast receivers too.
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

bool Conn::on_payload(const uint8_t* p, size_t n) {
  const Plan& plan = worker->plan();
  const size_t size = plan.opt.size;
  // What may arrive: the messages this connection sent (echo), or those published (broadcast).
  const uint64_t limit = plan.bc != nullptr ? plan.bc->published.load(std::memory_order_acquire) : send_seq;
  while (n > 0) {
    if (recv_seq >= limit) {  // the server sent more than it was sent
      worker->fail(*this, true, plan.bc != nullptr ? "bytes beyond what was published" : "bytes beyond what was sent", 0);
      return false;
    }
    size_t take = std::min(n, size - recv_off);
    if (!pattern_check(plan.pattern, recv_seed, recv_off, p, take)) {
      worker->fail(*this, true, "echoed bytes differ from the bytes sent", 0);
      return false;
    }
    p += take;
    n -= take;
    recv_off += take;
    if (recv_off == size) {
      worker->message_done(*this);
      if (state != ConnState::kOpen) return false;
    }
  }
  return true;
}

void Worker::start_messages(Conn& c) {
  // --rate follows its schedule and broadcast has one publisher: neither starts a window here.
  if (now_ >= end_ || plan_.opt.rate > 0 || plan_.bc != nullptr) return;
  for (int i = 0; i < plan_.opt.inflight; i++) send_message(c);
}

void Worker::send_message(Conn& c) {
  const size_t size = plan_.opt.size;
  uint64_t seq = c.send_seq++;
  uint8_t* payload = c.proto->frame_begin(size, c.out);
  pattern_fill(plan_.pattern, message_seed(c.id, seq), payload, size);
  c.proto->frame_end(payload, size);
  if (plan_.opt.rate > 0) {
    // Open loop: latency counts from when the message was due, not from when it went out, so
    // a server that falls behind (and makes the generator wait for a free slot) shows it in the
    // latency rather than hiding it (no coordinated omission). The lag is reported apart.
    const uint64_t due = due_at(c, seq);
    c.sent_at[seq % c.sent_at.size()] = due;
    if (now_ >= t_measure_ && now_ < end_) stats_.lag.record(now_ > due ? now_ - due : 0);
  } else {
    c.sent_at[seq % c.sent_at.size()] = now_;
  }
}

uint64_t Worker::due_at(const Conn& c, uint64_t seq) const {
  return start_ + c.phase_ns + static_cast<uint64_t>(1e9 / plan_.opt.rate * static_cast<double>(seq));
}

void Worker::message_done(Conn& c) {
  if (plan_.bc != nullptr) {
    broadcast_delivered(c);
    return;
  }
  // Echoes arrive in order, so the oldest in-flight slot is this message's.
  uint64_t sent = c.sent_at[c.recv_seq % c.sent_at.size()];
  c.recv_seq++;
  c.recv_off = 0;
  c.recv_seed = seed_of(c, c.recv_seq);
  if (plan_.opt.churn) {  // the cycle's one message is back: close (the cycle counts once closed)
    churn_close(c);
    return;
  }
  if (now_ >= t_measure_ && now_ < end_) {
    stats_.messages++;
    stats_.hist.record(now_ > sent ? now_ - sent : 0);
  }
  if (now_ >= end_) return;
  if (plan_.opt.rate > 0) {
    // Messages that became due while the window was full go out now.
    const uint64_t cap = static_cast<uint64_t>(plan_.opt.inflight);
    while (c.send_seq < c.due_seq && c.send_seq - c.recv_seq < cap) send_message(c);
    return;
  }
  send_message(c);
}

// --rate: sends every message that is due by now (each connection's schedule is fixed at the
// start) and notes when the next one is.
void Worker::send_due_messages() {
  next_msg_due_ = 0;
  if (conns_.empty()) return;
  const double period = 1e9 / plan_.opt.rate;
  const uint64_t cap = static_cast<uint64_t>(plan_.opt.inflight);
  for (;;) {
    Conn& c = conns_[rate_next_];
    const uint64_t due = start_ + c.phase_ns + static_cast<uint64_t>(period * static_cast<double>(rate_round_));
    if (due >= end_) return;
    if (due > now_) {
      next_msg_due_ = due;
      return;
    }
    if (c.state == ConnState::kOpen && c.ready_seen) {
      c.due_seq = rate_round_ + 1;
      bool sent = false;
      while (c.send_seq < c.due_seq && c.send_seq - c.recv_seq < cap) {
        send_message(c);
        sent = true;
      }
      if (sent && !c.want_out) flush(c);
    }
    if (++rate_next_ == conns_.size()) {
      rate_next_ = 0;
      rate_round_++;
    }
  }
}

// Churn: the echo is back. WebSocket: send a close frame (1000) and wait for the server's close

// Echo: open everything, then start the messages, warm up, and measure.
int run_echo(Plan& plan) {
  const Options& o = plan.opt;
  start_clock(plan, o.connect_timeout_s, o.warmup_s + o.duration_s);

  PhaseSync sync;
  sync.connecting.store(o.threads);
  std::vector<std::unique_ptr<Worker>> workers = make_workers(plan, sync);
  std::vector<std::thread> threads = start_threads(workers);
  wait_connected(sync);
  uint64_t t_measure = 0, t_end = 0;
  set_phases(o, sync, now_ns(), &t_measure, &t_end);

  const bool have_pid = o.server_pid > 0;
  const auto [srv_ok, srv0, srv1, self0, self1] = measure_cpu(o, t_measure, t_end);
  if (have_pid && !srv_ok) fprintf(stderr, "loadgen: cannot read /proc/%ld/stat: server CPU unknown\n", o.server_pid);

  for (auto& t : threads) t.join();
  alarm(0);
  const Stats total = total_of(workers);

  const double dur = o.duration_s;
  const double msgs = static_cast<double>(total.messages);
  JsonLine j;
  j.str("proto", o.proto);
  j.u64("conns", static_cast<uint64_t>(o.conns));
  j.u64("inflight", static_cast<uint64_t>(o.inflight));
  j.u64("size", o.size);
  j.num("duration_s", dur, 3);
  j.u64("messages", total.messages);
  j.num("rtt_per_sec", msgs / dur, 1);
  j.num("bytes_per_sec", msgs * static_cast<double>(o.size) / dur, 1);
  percentiles(j, total.hist, "p50_us", "p99_us", "max_us");
  j.u64("errors", total.errors);
  j.u64("verify_failures", total.verify_failures);
  j.u64("conns_ok", total.conns_ok);
  if (srv_ok) {
    double cpu = ticks_to_s(srv1 - srv0);
    j.num("server_cpu_s", cpu, 3);
    if (total.messages > 0) {
      j.num("server_cpu_us_per_msg", cpu * 1e6 / msgs, 4);
    } else {
      j.null("server_cpu_us_per_msg");
    }
  } else {
    j.null("server_cpu_s");
    j.null("server_cpu_us_per_msg");
  }
  // Extra fields: how the generator itself was loaded (to see which side saturated).
  j.u64("threads", static_cast<uint64_t>(o.threads));
  j.num("warmup_s", o.warmup_s, 3);
  j.num("loadgen_cpu_s", self1 - self0, 3);
  if (total.messages > 0) {
    j.num("loadgen_cpu_us_per_msg", (self1 - self0) * 1e6 / msgs, 4);
  } else {
    j.null("loadgen_cpu_us_per_msg");
  }
  if (o.proto == "ws") j.str("msg_type", o.msg_type);
  j.u64("handshake_failures", total.handshake_failures);
  j.u64("connect_retries", total.connect_retries);
  if (total.upgraded > 0) {
    j.num("connect_time_s", static_cast<double>(total.last_ready_ns - plan.t_start) / 1e9, 3);
  } else {
    j.null("connect_time_s");
  }
  j.u64("server_pings", total.server_pings);
  j.u64("source_ips", plan.sources.size());
  tail_percentiles(j, total.hist, "");
  if (o.rate > 0) {
    // Open loop: the schedule asked for target_per_sec; rtt_per_sec is what came back in time.
    j.num("rate_per_conn", o.rate, 3);
    j.num("target_per_sec", o.rate * o.conns, 1);
    j.u64("backlog_at_end", total.backlog);
    percentiles(j, total.lag, "send_lag_p50_us", "send_lag_p99_us", nullptr);
  }
  std::string line = j.done();
  printf("%s\n", line.c_str());
  fflush(stdout);

  return (total.verify_failures > 0 || total.conns_ok < static_cast<uint64_t>(o.conns)) ? 1 : 0;
}

}  // namespace loadgen
