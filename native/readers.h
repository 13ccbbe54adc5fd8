// Blocking mode: one native thread per connection, doing blocking reads.
//
// The reader thread owns nothing but its read buffer. It reads, hands the
// bytes to the loop thread (the JS thread) and waits until the loop has
// copied them out; the loop thread does everything else (writes, deadlines,
// closing). Handing over is one mutex per engine and one wake-up call
// (uv_async_send in the host), so the loop thread collects the bytes of every
// reader that is ready in one batch.
//
// Closing, the way Go's blocking net.Conn does it: the loop thread marks the
// reader stopped (with the reason) and shuts the socket's read side down,
// which makes the blocked recv() return. The reader reports its last read
// and exits; only then does the loop join it and close the descriptor, so a
// descriptor number can never be reused under a thread that still reads it.
#ifndef NETLOOP_READERS_H_
#define NETLOOP_READERS_H_

#include <pthread.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace netloop {

struct Reader;

// What a reader hands over: bytes, and/or how its reading ended.
struct ReaderEvent {
  uint32_t slot;
  uint32_t gen;
  size_t offset;  // in the destination buffer given to Take(); len 0: none
  size_t len;
  bool done;          // the reader has exited (joined); its fields below hold
  int32_t stopped_by;  // 0: the reader saw the transport end first; else the loop's stop reason
  int32_t err;        // 0: EOF; else the errno of the failed read
};

class Readers {
 public:
  using WakeFn = void (*)(void* arg);

  Readers() = default;
  ~Readers();
  Readers(const Readers&) = delete;
  Readers& operator=(const Readers&) = delete;

  // wake is called from reader threads when something is ready to take.
  void Init(size_t stack_size, size_t buffer_size, WakeFn wake, void* wake_arg);

  // Starts a reader thread for fd (made blocking for reads). Returns the
  // reader, or nullptr with *err set (EAGAIN: out of threads, ENOMEM).
  Reader* Start(int fd, uint32_t slot, uint32_t gen, int* err);

  // Loop thread: from now on the reader's input is discarded and its end is
  // reported as stopped by `reason`. Does not wake a blocked read: the caller
  // shuts the socket down when it wants that.
  void Stop(Reader* r, int32_t reason);

  // Loop thread: backpressure. A paused reader's bytes stay in its buffer
  // (Take() skips them), so it does not read again and TCP flow control
  // holds the peer back; resuming hands them over in the next Take().
  void SetPaused(Reader* r, bool paused);

  // Loop thread: copies ready bytes into dst (up to room), in the order the
  // readers became ready, and reports exited readers (joined here). A reader
  // that has both bytes and its end ready reports the end in a later call,
  // so that the loop gets a turn to answer the bytes (an echoed close frame)
  // before the connection is closed. Returns true when more is waiting.
  bool Take(uint8_t* dst, size_t room, std::vector<ReaderEvent>* out);

  // Loop thread: blocks until every reader has exited (each must have been
  // stopped and its socket shut down), for an orderly stop or teardown.
  void WaitAll();

  size_t alive() const { return alive_; }
  uint64_t started() const { return started_; }
  size_t stack_size() const { return stack_size_; }
  size_t buffer_size() const { return buffer_size_; }

 private:
  static void* Main(void* arg);
  void Run(Reader* r);

  std::mutex mu_;
  std::condition_variable exited_;  // signalled when a reader sets done
  std::vector<Reader*> ready_;      // readers with bytes or an end to take
  size_t stack_size_ = 0;
  size_t buffer_size_ = 0;
  WakeFn wake_ = nullptr;
  void* wake_arg_ = nullptr;
  size_t alive_ = 0;  // started and not yet joined (loop thread only)
  uint64_t started_ = 0;
};

}  // namespace netloop

#endif  // NETLOOP_READERS_H_
