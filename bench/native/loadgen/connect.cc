// Opening connections (Worker): at most --connect-concurrency connecting or upgrading at once,
// source addresses (--source-ips), retries, the connect deadline, and the step to "ready".
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24  // Linux 4.2+; older headers lack the name
#endif

namespace loadgen {

// Opens connections while fewer than limit_ are connecting or upgrading: due retries first,
// then the ones not tried yet.
void Worker::open_more() {
  while (in_progress_ < limit_) {
    Conn* c = nullptr;
    if (!retries_.empty() && retries_.top().first <= now_) {
      c = &conns_[retries_.top().second];
      retries_.pop();
    } else if (next_open_ < conns_.size()) {
      c = &conns_[next_open_++];
    } else {
      break;
    }
    start_connect(*c);
  }
  connect_phase_check();
}

void Worker::start_connect(Conn& c) {
  if (!c.proto) {
    c.proto = make_protocol(plan_, c.id);
    c.recv_seed = seed_of(c, c.recv_seq);  // churn: recv_seq goes on over the cycles
  }
  c.attempts++;
  if (c.attempts == 1) c.cycle_start = now_;
  c.in_progress = true;
  in_progress_++;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail(c, false, "socket", errno);  // state kIdle: counted, nothing to close
    c.state = ConnState::kClosed;
    return;
  }
  c.fd = fd;
  c.state = ConnState::kConnecting;
  c.want_out = false;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!plan_.sources.empty()) {
    // Port chosen at connect() from the full 4-tuple, not reserved by bind(): with several
    // source addresses each gets its own ~28k ephemeral ports towards the server's address.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    // Churn takes the addresses in turn, one per connect; the other modes one per connection.
    const size_t k = plan_.opt.churn ? src_next_++ : c.id;
    const sockaddr_in& src = plan_.sources[k % plan_.sources.size()];
    if (bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0) {
      fail(c, false, "bind to the source address", errno);
      return;
    }
  }
  int rc = connect(fd, reinterpret_cast<const sockaddr*>(&plan_.addr), sizeof plan_.addr);
  if (rc != 0 && errno != EINPROGRESS) {
    int err = errno;
    if (!retry_later(c, err)) fail(c, false, "connect", err);
    return;
  }
  // Connecting: wait for writability, then read SO_ERROR (a refused connect shows as
  // EPOLLERR|EPOLLOUT). A connect that completed at once gets the same path.
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = static_cast<uint64_t>(&c - conns_.data());
  if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    fail(c, false, "epoll_ctl add", errno);
    return;
  }
  c.want_out = true;
}

// A connect that may work a moment later: close, and try again after a pause. False when the
// error is not one of those or the attempts are used up.
bool Worker::retry_later(Conn& c, int err) {
  if (err != ECONNREFUSED && err != EAGAIN && err != EADDRNOTAVAIL) return false;
  if (c.attempts >= kMaxAttempts) return false;
  if (c.fd >= 0) close(c.fd);
  c.fd = -1;
  c.state = ConnState::kIdle;
  c.want_out = false;
  leave_progress(c);
  stats_.connect_retries++;
  retries_.push({now_ + kRetryStepNs * c.attempts, static_cast<uint32_t>(&c - conns_.data())});
  return true;
}

void Worker::leave_progress(Conn& c) {
  if (!c.in_progress) return;
  c.in_progress = false;
  in_progress_--;
}

// Once every connection is ready or failed, tell the main thread (once).
void Worker::connect_phase_check() {
  if (!connecting_) return;
  if (next_open_ < conns_.size() || !retries_.empty() || in_progress_ > 0) return;
  connecting_ = false;
  sync_.connecting.fetch_sub(1, std::memory_order_release);
}

// --connect-timeout passed: whatever is not ready now fails.
void Worker::connect_deadline() {
  for (Conn& c : conns_) {
    if (c.state == ConnState::kClosed || c.ready_seen) continue;
    fail(c, false, "not upgraded within --connect-timeout", 0);
  }
  next_open_ = conns_.size();
  while (!retries_.empty()) retries_.pop();
  connect_phase_check();
}

void Worker::on_connected(Conn& c) {
  c.state = ConnState::kOpen;
  now_ = now_ns();
  if (plan_.tls != nullptr) {
    start_tls(c);  // the protocol opens once the handshake is over (worker_tls.cc)
    return;
  }
  open_protocol(c);
}

// The connection carries the protocol now (TCP: connected; TLS: handshake done).
void Worker::open_protocol(Conn& c) {
  c.proto->on_open(c.out);
  if (c.proto->ready()) on_ready(c);
  if (c.state == ConnState::kOpen) flush(c);  // also disarms EPOLLOUT once the queue is empty
}

// The protocol is ready (TCP: connected; WebSocket: upgraded).
void Worker::on_ready(Conn& c) {
  c.ready_seen = true;
  leave_progress(c);
  stats_.upgraded++;
  if (plan_.bc != nullptr) plan_.bc->upgraded.fetch_add(1, std::memory_order_relaxed);  // before `connecting` drops
  stats_.last_ready_ns = now_;
  if (!plan_.opt.hold && start_ != 0) start_messages(c);  // (not reached: start_ waits for all)
}

}  // namespace loadgen
