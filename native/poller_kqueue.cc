// Poller backend for macOS and FreeBSD: kqueue.
//
// Written to the contract in poller.h but never run on the Linux machines this
// project is built and tested on (the README says so). kqueue filters are not
// bit masks: read and write interest are two separate filters, each added or
// deleted on its own, and wait() may report the same token twice (once per
// filter); the loop tolerates that because events may be spurious anyway.
#include "poller.h"

#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace netloop {

namespace {

uint32_t KeventToEvents(const struct kevent& kev) {
  uint32_t out = 0;
  if (kev.filter == EVFILT_READ) out |= kEventReadable;
  if (kev.filter == EVFILT_WRITE) out |= kEventWritable;
  if (kev.flags & EV_EOF) out |= kEventHangup;
  if ((kev.flags & EV_EOF) && kev.fflags != 0) out |= kEventError;
  if (kev.flags & EV_ERROR) out |= kEventError;
  return out;
}

// Applies the filter changes between two interests in one kevent() call.
int ApplyChanges(int kq, int fd, uint64_t token, uint32_t old_interest, uint32_t interest) {
  struct kevent changes[2];
  int n = 0;
  void* udata = reinterpret_cast<void*>(static_cast<uintptr_t>(token));
  uint32_t added = interest & ~old_interest;
  uint32_t removed = old_interest & ~interest;
  if (added & kInterestRead) EV_SET(&changes[n++], fd, EVFILT_READ, EV_ADD, 0, 0, udata);
  if (added & kInterestWrite) EV_SET(&changes[n++], fd, EVFILT_WRITE, EV_ADD, 0, 0, udata);
  if (removed & kInterestRead) EV_SET(&changes[n++], fd, EVFILT_READ, EV_DELETE, 0, 0, udata);
  if (removed & kInterestWrite) EV_SET(&changes[n++], fd, EVFILT_WRITE, EV_DELETE, 0, 0, udata);
  if (n == 0) return 0;
  return kevent(kq, changes, n, nullptr, 0, nullptr) == 0 ? 0 : -errno;
}

}  // namespace

Poller::~Poller() { Close(); }

int Poller::Open() {
  fd_ = kqueue();
  if (fd_ < 0) return -errno;
  scratch_ = std::calloc(kMaxEvents, sizeof(struct kevent));
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
  return ApplyChanges(fd_, fd, token, 0, interest);
}

int Poller::Modify(int fd, uint64_t token, uint32_t old_interest, uint32_t interest) {
  // kqueue keeps the udata of an existing filter only if it is re-added, so a
  // token change (never done by the loop) would need a delete and add.
  return ApplyChanges(fd_, fd, token, old_interest, interest);
}

int Poller::Remove(int fd, uint32_t old_interest) {
  return ApplyChanges(fd_, fd, 0, old_interest, 0);
}

int Poller::Wait(PollEvent* out, int max, int timeout_ms) {
  if (max > kMaxEvents) max = kMaxEvents;
  auto* evs = static_cast<struct kevent*>(scratch_);
  struct timespec ts;
  struct timespec* tsp = nullptr;
  if (timeout_ms >= 0) {
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = static_cast<long>(timeout_ms % 1000) * 1000000L;
    tsp = &ts;
  }
  int n;
  do {
    n = kevent(fd_, nullptr, 0, evs, max, tsp);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  for (int i = 0; i < n; i++) {
    out[i].token = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(evs[i].udata));
    out[i].events = KeventToEvents(evs[i]);
  }
  return n;
}

}  // namespace netloop
