// ByteQueue: bytes waiting for the kernel, as [head, tail) of one buffer. Consuming only moves
// head; live bytes are moved to the front only when appending would otherwise have to grow the
// buffer, so a queue drained by many partial writes costs no more than one copy per byte. The
// memory is kept between uses: the steady state allocates nothing, and nothing is zero-filled.
#ifndef NETLOOP_LOADGEN_BYTE_QUEUE_H_
#define NETLOOP_LOADGEN_BYTE_QUEUE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>

namespace loadgen {

class ByteQueue {
 public:
  size_t size() const { return tail_ - head_; }
  bool empty() const { return tail_ == head_; }
  const uint8_t* data() const { return buf_.get() + head_; }

  // Room for n more bytes at the end; the caller fills all of them.
  uint8_t* extend(size_t n) {
    if (head_ == tail_) head_ = tail_ = 0;
    if (cap_ - tail_ < n) {
      size_t live = tail_ - head_;
      if (cap_ - live >= n && head_ >= live) {  // enough room once compacted, and it is cheap
        memcpy(buf_.get(), buf_.get() + head_, live);
      } else {
        size_t cap = std::max<size_t>(cap_ * 2, 4096);
        while (cap - live < n) cap *= 2;
        std::unique_ptr<uint8_t[]> bigger(new uint8_t[cap]);
        if (live > 0) memcpy(bigger.get(), buf_.get() + head_, live);
        buf_ = std::move(bigger);
        cap_ = cap;
      }
      head_ = 0;
      tail_ = live;
    }
    uint8_t* at = buf_.get() + tail_;
    tail_ += n;
    return at;
  }

  void append(const uint8_t* p, size_t n) { memcpy(extend(n), p, n); }

  void consume(size_t n) {
    head_ += n;
    if (head_ == tail_) head_ = tail_ = 0;
  }

 private:
  std::unique_ptr<uint8_t[]> buf_;
  size_t cap_ = 0;
  size_t head_ = 0;
  size_t tail_ = 0;
};

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_BYTE_QUEUE_H_
