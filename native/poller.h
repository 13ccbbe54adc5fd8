// Poller contract: the one interface between the loop and the OS readiness API.
//
// One backend per file (poller_epoll.cc, poller_kqueue.cc), chosen in binding.gyp;
// the loop never sees an OS flag. Only integer tokens cross this boundary: the
// kernel stores the token and hands it back, nothing else.
//
// Readiness contract (as in mio): events can be spurious, and a readable or
// writable socket stays reported until the caller has drained it to EAGAIN or
// removed the interest (level-triggered on every backend). Every call returns
// 0 or a count on success and -errno on failure; nothing here throws or logs.
#ifndef NETLOOP_POLLER_H_
#define NETLOOP_POLLER_H_

#include <cstdint>

namespace netloop {

// Interest bits (ours, not the OS's).
enum : uint32_t {
  kInterestRead = 1u << 0,
  kInterestWrite = 1u << 1,
};

// Event bits reported by wait().
enum : uint32_t {
  kEventReadable = 1u << 0,
  kEventWritable = 1u << 1,
  kEventError = 1u << 2,   // a pending socket error: a read or write will report it
  kEventHangup = 1u << 3,  // the peer closed (both directions or the read side)
};

struct PollEvent {
  uint64_t token;
  uint32_t events;
};

class Poller {
 public:
  // The most events one wait() may return; callers pass max <= kMaxEvents.
  static constexpr int kMaxEvents = 1024;

  Poller() = default;
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  int Open();
  void Close();
  // The descriptor that becomes readable when events are pending, so that a
  // host event loop (libuv) can watch the poller itself.
  int fd() const { return fd_; }

  int Add(int fd, uint64_t token, uint32_t interest);
  // kqueue filters are not bit masks: the backend needs the old interest to
  // know which filters to add and which to delete.
  int Modify(int fd, uint64_t token, uint32_t old_interest, uint32_t interest);
  int Remove(int fd, uint32_t old_interest);
  // Returns the number of events written to out, or -errno. timeout_ms < 0
  // blocks, 0 polls.
  int Wait(PollEvent* out, int max, int timeout_ms);

 private:
  int fd_ = -1;
  void* scratch_ = nullptr;  // backend-specific event array, kMaxEvents long
};

}  // namespace netloop

#endif  // NETLOOP_POLLER_H_
