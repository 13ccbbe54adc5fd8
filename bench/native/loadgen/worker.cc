// The worker's event loop: readiness, reads into the protocol, writes, failures, the run's
// phases, and the end-of-run accounting.
#include "worker.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <vector>

#include "clock.h"

namespace loadgen {

void Worker::fail(Conn& c, bool verify, const char* what, int err) {
  if (c.state == ConnState::kClosed) return;
  stats_.errors++;
  if (verify) stats_.verify_failures++;
  if (c.state == ConnState::kOpen && !c.ready_seen) stats_.handshake_failures++;
  if (c.ping_outstanding) {
    c.ping_outstanding = false;  // the connection's failure is the error, not the ping
    outstanding_--;
  }
  // Say why, but do not flood stderr when a server drops thousands of connections at once.
  if (stats_.errors <= 5) {
    if (err != 0) {
      fprintf(stderr, "loadgen: conn %u: %s: %s\n", c.id, what, strerror(err));
    } else if (!verify) {
      fprintf(stderr, "loadgen: conn %u: %s\n", c.id, what);
    } else {
      fprintf(stderr, "loadgen: conn %u: %s (message %" PRIu64 ", offset %zu)\n", c.id, what,
              c.recv_seq, c.recv_off);
    }
  }
  leave_progress(c);
  close_conn(c);
  // Broadcast: this connection will never complete a message, so no message can reach everyone
  // any more: the publisher stops (the error is reported, the run fails).
  if (plan_.bc != nullptr) plan_.bc->broken.store(true, std::memory_order_relaxed);
  // Churn: the slot goes on (after a pause, so a refusing server is not hammered); the error counts.
  if (plan_.opt.churn && start_ != 0 && now_ < end_) churn_restart(c, now_ + 10'000'000);
}

void Worker::close_conn(Conn& c) {
  if (c.fd >= 0) close(c.fd);  // close() also drops the fd from the epoll set
  c.fd = -1;
  c.state = ConnState::kClosed;
}

void Worker::set_want_out(Conn& c, bool on) {
  if (c.want_out == on) return;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u);
  ev.data.u64 = static_cast<uint64_t>(&c - conns_.data());
  if (epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev) != 0) {
    fail(c, false, "epoll_ctl", errno);
    return;
  }
  c.want_out = on;
}


void Worker::on_readable(Conn& c) {
  for (int i = 0; i < kReadsPerEvent; i++) {
    ssize_t n = recv(c.fd, rbuf_.data(), rbuf_.size(), 0);
    if (n > 0) {
      now_ = now_ns();
      ParseError e = c.proto->parse(rbuf_.data(), static_cast<size_t>(n), c, c.out);
      if (c.state != ConnState::kOpen) return;
      if (e != ParseError::kNone) {
        if (e == ParseError::kPeerClosed && c.closing) {  // churn: the answer to our close
          c.close_seen = true;
          continue;  // the server's FIN is next
        }
        fail(c, e == ParseError::kVerify, c.proto->error(), 0);
        return;
      }
      if (!c.ready_seen && c.proto->ready()) {
        on_ready(c);
        if (c.state != ConnState::kOpen) return;
      }
      if (static_cast<size_t>(n) < rbuf_.size()) break;  // drained: skip the EAGAIN read
      continue;
    }
    if (n == 0) {
      if (c.closing && c.close_seen) {
        churn_done(c);
        return;
      }
      fail(c, false, c.closing ? "server closed without answering the close frame" : "server closed the connection", 0);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    fail(c, false, "read", errno);
    return;
  }
  // New messages go out in one write per readiness event. If EPOLLOUT is armed the socket buffer
  // was full: wait for it rather than try a write that would fail.
  if (!c.out.empty() && !c.want_out) flush(c);
}

void Worker::flush(Conn& c) {
  while (!c.out.empty()) {
    size_t want = c.out.size();
    ssize_t n = send(c.fd, c.out.data(), want, MSG_NOSIGNAL);
    if (n >= 0) {
      c.out.consume(static_cast<size_t>(n));
      if (static_cast<size_t>(n) < want) break;  // socket buffer full: the next try would EAGAIN
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    fail(c, false, "write", errno);
    return;
  }
  set_want_out(c, !c.out.empty());
}

void Worker::on_event(Conn& c, uint32_t events) {
  if (c.state == ConnState::kClosed || c.state == ConnState::kIdle) return;  // idle: waiting to retry
  if (c.state == ConnState::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      if (!retry_later(c, err)) fail(c, false, "connect", err);
      return;
    }
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    on_connected(c);
    if (c.state != ConnState::kOpen) return;
    events &= ~static_cast<uint32_t>(EPOLLOUT);  // just flushed
  }
  if (events & EPOLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    fail(c, false, "socket error", err != 0 ? err : EIO);
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) {
    on_readable(c);
    if (c.state != ConnState::kOpen) return;
  }
  if ((events & EPOLLOUT) && c.want_out) flush(c);
}

// One pass of the loop: move through the phases. Returns false when the worker is done.
bool Worker::phase_step() {
  if (connecting_) {
    if (now_ >= plan_.t_connect_deadline) connect_deadline();
    return true;
  }
  if (start_ == 0) {
    const uint64_t start = sync_.start.load(std::memory_order_acquire);
    if (start == 0) return true;  // the others are still connecting, or the server settles
    start_ = start;
    end_ = sync_.end.load(std::memory_order_relaxed);
    if (!plan_.opt.hold) {
      t_measure_ = start_ + static_cast<uint64_t>(plan_.opt.warmup_s * 1e9);
      for (Conn& c : conns_) {
        if (c.state != ConnState::kOpen || !c.ready_seen) continue;
        start_messages(c);
        if (c.state == ConnState::kOpen && !c.want_out) flush(c);
      }
    }
    if (publisher_) publish_more();
  }
  if (!plan_.opt.hold) {
    if (plan_.opt.rate > 0 && now_ < end_) send_due_messages();
    return now_ < end_;
  }
  if (now_ < end_) {
    send_due_pings(start_, end_);
    return true;
  }
  // The hold is over: wait for the last pongs, at most the grace period.
  next_ping_due_ = 0;
  return outstanding_ > 0 && now_ < end_ + plan_.pong_grace_ns;
}

uint64_t Worker::wait_timeout_ns() {
  // Wake at least every 100 ms so no deadline is missed by more than that; sooner while
  // retries are pending, the main thread's next phase is awaited, or pings or messages are due.
  uint64_t wake = now_ + 100'000'000;
  if (connecting_) {
    if (!retries_.empty()) wake = std::min(wake, retries_.top().first);
    wake = std::min(wake, plan_.t_connect_deadline);
  } else if (start_ == 0) {
    wake = std::min(wake, now_ + 2'000'000);
  } else if (!plan_.opt.hold || now_ < end_) {
    wake = std::min(wake, end_);
    if (next_ping_due_ != 0) wake = std::min(wake, next_ping_due_);
    if (next_msg_due_ != 0) wake = std::min(wake, next_msg_due_);
    if (plan_.opt.churn && !retries_.empty()) wake = std::min(wake, retries_.top().first);
  } else {
    wake = std::min(wake, now_ + 10'000'000);  // waiting for the last pongs
  }
  return wake <= now_ ? 0 : wake - now_;
}

// epoll_wait with a nanosecond timeout (epoll_pwait2, Linux 5.11+): --rate sends on a schedule
// and measures latency from it, so waking up to a millisecond late (epoll_wait's unit) would
// show up as latency. Falls back to epoll_wait where the kernel lacks it.
namespace {

int epoll_wait_ns(int ep, epoll_event* events, int max, uint64_t ns) {
#ifdef SYS_epoll_pwait2
  static std::atomic<bool> unsupported{false};
  if (!unsupported.load(std::memory_order_relaxed)) {
    timespec ts{static_cast<time_t>(ns / 1000000000ull), static_cast<long>(ns % 1000000000ull)};
    long r = syscall(SYS_epoll_pwait2, ep, events, max, &ts, nullptr, 0);
    if (r >= 0 || errno != ENOSYS) return static_cast<int>(r);
    unsupported.store(true, std::memory_order_relaxed);
  }
#endif
  return epoll_wait(ep, events, max, static_cast<int>((ns + 999'999) / 1'000'000));
}

}  // namespace

// epoll_data of the publisher's eventfd (connection indexes are smaller).
constexpr uint64_t kWakeToken = ~0ull;

void Worker::run() {
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) {
    fprintf(stderr, "loadgen: epoll_create1: %s\n", strerror(errno));
    stats_.errors += conns_.size();
    sync_.connecting.fetch_sub(1, std::memory_order_release);
    return;
  }
  // Timers of this thread fire when due, not up to 50 us later (the default slack).
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  if (publisher_) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeToken;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, plan_.bc->efd, &ev) != 0) fprintf(stderr, "loadgen: epoll_ctl eventfd: %s\n", strerror(errno));
  }
  std::vector<epoll_event> events(kMaxEvents);
  for (;;) {
    now_ = now_ns();
    if (!phase_step()) break;
    if (connecting_ || (plan_.opt.churn && start_ != 0)) open_more();
    int n = epoll_wait_ns(ep_, events.data(), kMaxEvents, wait_timeout_ns());
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "loadgen: epoll_wait: %s\n", strerror(errno));
      break;
    }
    for (int i = 0; i < n; i++) {
      if (events[i].data.u64 == kWakeToken) {
        uint64_t count = 0;
        ssize_t r = read(plan_.bc->efd, &count, sizeof count);
        (void)r;
        now_ = now_ns();
        publish_more();
        continue;
      }
      on_event(conns_[static_cast<size_t>(events[i].data.u64)], events[i].events);
    }
  }
  finish();
}

void Worker::finish() {
  if (connecting_) {  // left the loop early (epoll_wait failed)
    connecting_ = false;
    sync_.connecting.fetch_sub(1, std::memory_order_release);
  }
  uint64_t stalled = 0;
  const bool churn = plan_.opt.churn;
  for (Conn& c : conns_) {
    if (plan_.opt.rate > 0 && c.state == ConnState::kOpen) stats_.backlog += c.due_seq - std::min(c.due_seq, c.recv_seq);
    if (churn) {
      // A slot is healthy if it completed cycles; one caught mid-cycle by the end is no error.
      if (c.cycles > 0) stats_.conns_ok++;
      if (c.fd >= 0) close(c.fd);
      c.fd = -1;
      c.state = ConnState::kClosed;
      continue;
    }
    if (c.ping_outstanding) {
      stats_.pings_unanswered++;
      c.ping_outstanding = false;
    }
    const bool healthy = c.state == ConnState::kOpen && (plan_.opt.hold ? c.ready_seen : c.recv_seq > 0);
    if (healthy) {
      stats_.conns_ok++;
    } else if (c.state == ConnState::kOpen && c.ready_seen) {
      // Healthy socket, but not one echo came back: a stalled or starving server.
      stalled++;
    } else if (c.state != ConnState::kClosed) {
      stats_.errors++;
      if (c.state == ConnState::kOpen) stats_.handshake_failures++;
      if (stats_.errors <= 5) {
        fprintf(stderr, "loadgen: conn %u: %s by the end of the run\n", c.id,
                c.state == ConnState::kOpen ? "not upgraded" : "not established");
      }
    }
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
    c.state = ConnState::kClosed;
    if (c.proto) stats_.server_pings += c.proto->server_pings();
  }
  outstanding_ = 0;
  if (stalled > 0) fprintf(stderr, "loadgen: %" PRIu64 " connection(s) open but without a single completed echo\n", stalled);
  close(ep_);
  ep_ = -1;
}

}  // namespace loadgen
