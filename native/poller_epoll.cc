// Poller backend for Linux: epoll, level-triggered.
//
// Level-triggered is deliberate: the loop reads at most a budget per socket per
// iteration, and whatever it leaves behind is reported again on the next
// wait(). Edge-triggered would need a rescan list of its own that must also
// respect backpressure.
#include "poller.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace netloop {

namespace {

uint32_t InterestToEpoll(uint32_t interest) {
  uint32_t ev = 0;
  if (interest & kInterestRead) ev |= EPOLLIN | EPOLLRDHUP;
  if (interest & kInterestWrite) ev |= EPOLLOUT;
  return ev;
}

uint32_t EpollToEvents(uint32_t ev) {
  uint32_t out = 0;
  if (ev & (EPOLLIN | EPOLLPRI)) out |= kEventReadable;
  if (ev & EPOLLOUT) out |= kEventWritable;
  if (ev & EPOLLERR) out |= kEventError;
  // EPOLLRDHUP: the peer shut down its write side; a read returns 0 (EOF).
  if (ev & (EPOLLHUP | EPOLLRDHUP)) out |= kEventHangup;
  return out;
}

}  // namespace

Poller::~Poller() { Close(); }

int Poller::Open() {
  fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (fd_ < 0) return -errno;
  scratch_ = std::calloc(kMaxEvents, sizeof(epoll_event));
  if (scratch_ == nullptr) {
    ::close(fd_);
    fd_ = -1;
    return -ENOMEM;
  }
  return 0;
}

void Poller::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  std::free(scratch_);
  scratch_ = nullptr;
}

int Poller::Add(int fd, uint64_t token, uint32_t interest) {
  epoll_event ev{};
  ev.events = InterestToEpoll(interest);
  ev.data.u64 = token;
  return epoll_ctl(fd_, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

int Poller::Modify(int fd, uint64_t token, uint32_t /*old_interest*/, uint32_t interest) {
  epoll_event ev{};
  ev.events = InterestToEpoll(interest);
  ev.data.u64 = token;
  return epoll_ctl(fd_, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -errno;
}

int Poller::Remove(int fd, uint32_t /*old_interest*/) {
  // Kernels before 2.6.9 required a non-null event pointer for DEL.
  epoll_event ev{};
  return epoll_ctl(fd_, EPOLL_CTL_DEL, fd, &ev) == 0 ? 0 : -errno;
}

int Poller::Wait(PollEvent* out, int max, int timeout_ms) {
  if (max > kMaxEvents) max = kMaxEvents;
  auto* evs = static_cast<epoll_event*>(scratch_);
  int n;
  do {
    n = epoll_wait(fd_, evs, max, timeout_ms);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  for (int i = 0; i < n; i++) {
    out[i].token = evs[i].data.u64;
    out[i].events = EpollToEvents(evs[i].events);
  }
  return n;
}

}  // namespace netloop
