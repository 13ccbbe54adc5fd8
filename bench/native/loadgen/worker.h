// Conn and Worker. A worker is one thread with its own epoll and its share of the connections.
// Its methods are spread by concern:
//   worker.cc          the event loop: readiness, reads, writes, failures, phases, the end
//   connect.cc         opening connections: concurrency, source addresses, retries, deadline
//   mode_echo.cc       messages and their verification (echo; broadcast receivers use it too)
//   mode_churn.cc      connect, one message, close, again
//   mode_broadcast.cc  the publisher and the deliveries
//   mode_hold.cc       pings and pongs on held connections
#ifndef NETLOOP_LOADGEN_WORKER_H_
#define NETLOOP_LOADGEN_WORKER_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <utility>
#include <vector>

#include "byte_queue.h"
#include "pattern.h"
#include "plan.h"
#include "protocol.h"
#include "stats.h"

namespace loadgen {

enum class ConnState { kIdle, kConnecting, kOpen, kClosed };

class Worker;

class Conn final : public PayloadSink {
 public:
  int fd = -1;
  uint32_t id = 0;  // global connection id, part of every payload seed
  ConnState state = ConnState::kIdle;
  bool want_out = false;     // EPOLLOUT armed
  bool ready_seen = false;   // protocol ready (upgraded); echo: initial window sent
  bool in_progress = false;  // counts against the connect concurrency
  uint8_t attempts = 0;      // connects tried
  bool ping_outstanding = false;
  uint64_t ping_payload = 0;
  uint64_t ping_sent_at = 0;
  std::unique_ptr<Protocol> proto;
  ByteQueue out;
  uint64_t send_seq = 0;   // next message to send
  uint64_t recv_seq = 0;   // message whose echo is arriving
  size_t recv_off = 0;     // bytes of it already checked
  uint64_t recv_seed = 0;  // message_seed(id, recv_seq)
  std::vector<uint64_t> sent_at;  // ring of W send times, indexed by seq % W
  Worker* worker = nullptr;
  // --rate: messages due so far, and this connection's offset in the schedule.
  uint64_t due_seq = 0;
  uint64_t phase_ns = 0;
  // Churn: when this cycle's first connect began; closing: our close is out, waiting for the end.
  uint64_t cycle_start = 0;
  uint64_t cycles = 0;
  bool closing = false;
  bool close_seen = false;  // ws: the server's close frame arrived

  bool on_payload(const uint8_t* p, size_t n) override;
  void on_pong(const uint8_t* p, size_t n) override;
};


class Worker {
 public:
  Worker(const Plan& plan, PhaseSync& sync, uint32_t first_id, uint32_t count, int connect_limit)
      : plan_(plan), sync_(sync), conns_(count), rbuf_(kReadBuf), limit_(std::max(1, connect_limit)) {
    const double period = plan.opt.rate > 0 ? 1e9 / plan.opt.rate : 0;
    for (uint32_t i = 0; i < count; i++) {
      conns_[i].id = first_id + i;
      conns_[i].worker = this;
      if (!plan.opt.hold) conns_[i].sent_at.assign(static_cast<size_t>(plan.opt.inflight), 0);
      // --rate: connections are spread evenly over one period (all threads together), so the
      // server sees a steady stream rather than all connections at once.
      conns_[i].phase_ns = static_cast<uint64_t>(period * (static_cast<double>(first_id + i) + 0.5) / plan.opt.conns);
    }
    // Churn has no connect phase: slots connect, talk and close until the end.
    connecting_ = !plan.opt.churn;
    publisher_ = plan.opt.broadcast && first_id == 0 && count > 0;
  }

  void run();
  const Stats& stats() const { return stats_; }
  const Plan& plan() const { return plan_; }

  // Called from Conn::on_payload when a message's echo is complete.
  void message_done(Conn& c);
  // The seed of message seq as this connection receives it.
  uint64_t seed_of(const Conn& c, uint64_t seq) const {
    return message_seed(plan_.opt.broadcast ? kBroadcastId : c.id, seq);
  }
  // Called from Conn::on_pong for the pong of the outstanding ping.
  void pong_matched(Conn& c);
  void pong_unexpected() { stats_.pongs_unexpected++; }
  void fail(Conn& c, bool verify, const char* what, int err);

 private:
  // Read budget per readiness event: bounded so one busy connection cannot starve the others
  // (level-triggered epoll reports the rest on the next wait).
  static constexpr int kReadsPerEvent = 4;
  static constexpr size_t kReadBuf = 256 << 10;
  static constexpr int kMaxEvents = 1024;
  // ECONNREFUSED (a full listen backlog can refuse) and EAGAIN/EADDRNOTAVAIL (no local port
  // free yet) are retried after 50, 100, 150, 200 ms; then the connection fails.
  static constexpr int kMaxAttempts = 5;
  static constexpr uint64_t kRetryStepNs = 50'000'000;

  void open_more();
  void start_connect(Conn& c);
  bool retry_later(Conn& c, int err);
  void leave_progress(Conn& c);
  void connect_phase_check();
  void connect_deadline();
  void on_event(Conn& c, uint32_t events);
  void on_connected(Conn& c);
  void on_ready(Conn& c);
  void start_messages(Conn& c);
  void send_message(Conn& c);
  void on_readable(Conn& c);
  void flush(Conn& c);
  void set_want_out(Conn& c, bool on);
  void close_conn(Conn& c);
  bool phase_step();
  void send_due_pings(uint64_t start, uint64_t end);
  void send_ping(Conn& c, uint64_t round);
  void send_due_messages();
  uint64_t due_at(const Conn& c, uint64_t seq) const;
  void churn_close(Conn& c);
  void churn_done(Conn& c);
  void churn_restart(Conn& c, uint64_t at);
  void publish_more();
  void broadcast_delivered(Conn& c);
  uint64_t wait_timeout_ns();
  void finish();

  const Plan& plan_;
  PhaseSync& sync_;
  std::vector<Conn> conns_;
  std::vector<uint8_t> rbuf_;
  int ep_ = -1;
  uint64_t now_ = 0;  // time of the event being handled
  Stats stats_;
  // Connecting.
  const int limit_;            // connects + handshakes in progress at once
  int in_progress_ = 0;
  size_t next_open_ = 0;       // conns_[next_open_..] not tried yet
  using Retry = std::pair<uint64_t, uint32_t>;  // (due time, index)
  std::priority_queue<Retry, std::vector<Retry>, std::greater<Retry>> retries_;
  bool connecting_ = true;     // until every connection is ready or failed
  // Phases, from PhaseSync once published (0 before).
  uint64_t start_ = 0;
  uint64_t end_ = 0;           // echo: stats stop, nothing more is sent; hold: pings stop
  uint64_t t_measure_ = 0;     // echo: stats count from here (start + warmup)
  // Hold mode pings: round r of connection k is due at start + interval * (r + (k + 1) / m).
  uint64_t ping_round_ = 0;
  size_t ping_next_ = 0;
  uint64_t next_ping_due_ = 0;
  uint64_t outstanding_ = 0;  // pings without their pong yet
  // --rate: round r of connection k is due at start + phase(k) + r * period.
  uint64_t rate_round_ = 0;
  size_t rate_next_ = 0;
  uint64_t next_msg_due_ = 0;
  // Churn: source addresses taken in turn, one per connect.
  size_t src_next_ = 0;
  // Broadcast: this worker holds connection 0, the publisher.
  bool publisher_ = false;
};

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_WORKER_H_
