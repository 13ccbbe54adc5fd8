#include "readers.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace netloop {

struct Reader {
  Readers* owner;
  pthread_t thread;
  int fd;
  uint32_t slot;
  uint32_t gen;
  // Guarded by the owner's mutex.
  size_t len = 0;            // bytes in buf not yet taken
  bool queued = false;       // in the ready list
  bool done = false;         // the thread is about to exit; the fields below are final
  bool paused = false;       // SetPaused: bytes are not taken
  bool parked = false;       // ready, but set aside by Take() while paused
  int32_t stop_reason = 0;   // set by the loop thread (Stop)
  int32_t stopped_by = 0;    // stop_reason as the thread saw it when its reading ended
  int32_t err = 0;           // 0: EOF, else errno
  std::condition_variable taken;  // the loop copied buf out, or stopped the reader
  uint8_t* buf = nullptr;
  size_t cap = 0;
};

Readers::~Readers() {
  // The loop stops every reader before destroying this (Loop::Close).
}

void Readers::Init(size_t stack_size, size_t buffer_size, WakeFn wake, void* wake_arg) {
  // Never below what the C library needs; the reader's own frames are small
  // (its buffer is on the heap), so a small stack keeps a thread cheap.
  stack_size_ = stack_size < static_cast<size_t>(PTHREAD_STACK_MIN) ? static_cast<size_t>(PTHREAD_STACK_MIN) : stack_size;
  buffer_size_ = buffer_size < 1024 ? 1024 : buffer_size;
  wake_ = wake;
  wake_arg_ = wake_arg;
}

Reader* Readers::Start(int fd, uint32_t slot, uint32_t gen, int* err) {
  // Reads block; the loop thread's writes pass MSG_DONTWAIT per call.
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
    *err = errno;
    return nullptr;
  }
  auto* r = new Reader();
  r->owner = this;
  r->fd = fd;
  r->slot = slot;
  r->gen = gen;
  r->cap = buffer_size_;
  r->buf = static_cast<uint8_t*>(std::malloc(r->cap));
  if (r->buf == nullptr) {
    delete r;
    *err = ENOMEM;
    return nullptr;
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, stack_size_);
  // Signals belong to the JS thread: the reader starts with all blocked.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&r->thread, &attr, &Readers::Main, r);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    std::free(r->buf);
    delete r;
    fcntl(fd, F_SETFL, flags);
    *err = rc;
    return nullptr;
  }
  alive_++;
  started_++;
  return r;
}

void* Readers::Main(void* arg) {
  auto* r = static_cast<Reader*>(arg);
  r->owner->Run(r);
  return nullptr;
}

void Readers::Run(Reader* r) {
  for (;;) {
    ssize_t n;
    do {
      n = recv(r->fd, r->buf, r->cap, 0);
    } while (n < 0 && errno == EINTR);
    int read_err = n < 0 ? errno : 0;
    bool ended = n <= 0;
    if (n > 0 && static_cast<size_t>(n) < r->cap) {
      // A short read may have stopped at the peer's FIN or a reset that is
      // already here. Peek for it now, so that "close frame and FIN at once"
      // is reported as EOF whatever the loop thread does with the bytes.
      char b;
      ssize_t p = recv(r->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
      if (p == 0) {
        ended = true;
      } else if (p < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        ended = true;
        read_err = errno;
      }
    }
    bool wake = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (n > 0 && r->stop_reason == 0) {
        r->len = static_cast<size_t>(n);
        wake = true;
      }
      if (ended) {
        r->done = true;
        r->stopped_by = r->stop_reason;
        r->err = read_err;
        wake = true;
      }
      if (wake && !r->queued) {
        r->queued = true;
        ready_.push_back(r);
      }
      if (ended) {
        exited_.notify_all();
        lock.unlock();
        wake_(wake_arg_);  // safe: the loop joins this thread before the host goes away
        return;
      }
      if (wake) {
        lock.unlock();
        wake_(wake_arg_);
        lock.lock();
      }
      // Backpressure: the next read waits until the loop took these bytes.
      while (r->len > 0 && r->stop_reason == 0) r->taken.wait(lock);
      r->len = 0;
    }
  }
}

void Readers::Stop(Reader* r, int32_t reason) {
  std::unique_lock<std::mutex> lock(mu_);
  if (r->stop_reason == 0) r->stop_reason = reason;
  if (r->parked && r->done) {
    // Its thread has exited already: nothing else will wake the loop for it.
    r->parked = false;
    if (!r->queued) {
      r->queued = true;
      ready_.push_back(r);
    }
    lock.unlock();
    wake_(wake_arg_);
    return;
  }
  if (r->parked) {
    // Set aside while paused: back in line, so that its bytes are discarded
    // and its end (which may have come already) is reported and joined.
    r->parked = false;
    if (!r->queued) {
      r->queued = true;
      ready_.push_back(r);
    }
  }
  r->taken.notify_one();
}

void Readers::SetPaused(Reader* r, bool paused) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    r->paused = paused;
    if (!paused && r->parked) {
      r->parked = false;
      if (!r->queued) {
        r->queued = true;
        ready_.push_back(r);
      }
      wake = true;
    }
  }
  if (wake) wake_(wake_arg_);
}

bool Readers::Take(uint8_t* dst, size_t room, std::vector<ReaderEvent>* out) {
  std::vector<Reader*> finished;
  bool more = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    size_t used = 0;
    size_t keep = 0;  // ready_[0, keep) stays for the next call, in order
    for (size_t i = 0; i < ready_.size(); i++) {
      Reader* r = ready_[i];
      bool delivered = false;
      if (r->paused && r->stop_reason == 0 && (r->len > 0 || r->done)) {
        // Backpressure: left out of the ready list until SetPaused(false).
        r->queued = false;
        r->parked = true;
        continue;
      }
      if (r->len > 0) {
        if (r->stop_reason != 0) {
          r->len = 0;  // closed locally meanwhile: input after a close is discarded
        } else if (r->len > room - used) {
          ready_[keep++] = r;  // no room this time; keeps its place in line
          continue;
        } else {
          std::memcpy(dst + used, r->buf, r->len);
          out->push_back(ReaderEvent{r->slot, r->gen, used, r->len, false, 0, 0});
          used += r->len;
          r->len = 0;
          delivered = true;
        }
        if (!r->done) r->taken.notify_one();
      }
      if (r->done && !delivered) {
        r->queued = false;
        finished.push_back(r);
      } else if (r->done) {
        ready_[keep++] = r;  // its end goes out next time, after the loop answered the bytes
      } else {
        r->queued = false;
      }
    }
    ready_.resize(keep);
    more = keep > 0;
  }
  for (Reader* r : finished) {
    pthread_join(r->thread, nullptr);
    alive_--;
    out->push_back(ReaderEvent{r->slot, r->gen, 0, 0, true, r->stopped_by, r->err});
    std::free(r->buf);
    delete r;
  }
  return more;
}

void Readers::WaitAll() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    size_t done = 0;
    for (Reader* r : ready_) done += r->done ? 1 : 0;
    if (done >= alive_) return;
    exited_.wait(lock);
  }
}

}  // namespace netloop
