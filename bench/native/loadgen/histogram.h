// Histogram: log-linear buckets over nanoseconds (HdrHistogram's layout with 2^7 sub-buckets).
// Values below 256 ns are exact; above, each power of two is split into 128 linear buckets, so
// a bucket's midpoint is within 0.4% of any value in it. 7424 counters cover the whole uint64.
#ifndef NETLOOP_LOADGEN_HISTOGRAM_H_
#define NETLOOP_LOADGEN_HISTOGRAM_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace loadgen {

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kSub = 1ull << kSubBits;  // 128
  static constexpr size_t kBuckets = kSub * 58;       // index max = 128*56 + 255

  Histogram() : counts_(kBuckets, 0) {}

  static size_t index_of(uint64_t v) {
    if (v < 2 * kSub) return static_cast<size_t>(v);
    int top = 63 - __builtin_clzll(v);  // >= 8
    int shift = top - kSubBits;         // >= 1
    uint64_t mant = v >> shift;         // [128, 255]
    return static_cast<size_t>(kSub * static_cast<uint64_t>(shift) + mant);
  }

  // The value that represents a bucket: its midpoint (exact below 256).
  static uint64_t value_of(size_t idx) {
    if (idx < 2 * kSub) return idx;
    uint64_t shift = (idx >> kSubBits) - 1;
    uint64_t mant = idx - kSub * shift;
    uint64_t low = mant << shift;
    return low + ((1ull << shift) >> 1);
  }

  void record(uint64_t v) {
    counts_[index_of(v)]++;
    total_++;
    if (v > max_) max_ = v;
  }

  void merge(const Histogram& o) {
    for (size_t i = 0; i < kBuckets; i++) counts_[i] += o.counts_[i];
    total_ += o.total_;
    max_ = std::max(max_, o.max_);
  }

  // q in (0, 1]: smallest bucket value with at least ceil(q * total) samples at or below it.
  uint64_t percentile(double q) const {
    if (total_ == 0) return 0;
    uint64_t want = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_)));
    if (want < 1) want = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; i++) {
      seen += counts_[i];
      if (seen >= want) return std::min(value_of(i), max_);
    }
    return max_;
  }

  // A flat copy (the counts, then total and max) that another process can merge: broadcast
  // mode's subscriber processes hand theirs to the publisher's through shared memory.
  static constexpr size_t kWords = kBuckets + 2;
  void save(uint64_t* out) const {
    std::copy(counts_.begin(), counts_.end(), out);
    out[kBuckets] = total_;
    out[kBuckets + 1] = max_;
  }
  void merge_saved(const uint64_t* in) {
    for (size_t i = 0; i < kBuckets; i++) counts_[i] += in[i];
    total_ += in[kBuckets];
    max_ = std::max(max_, in[kBuckets + 1]);
  }

  uint64_t total() const { return total_; }
  uint64_t max() const { return max_; }

 private:
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_HISTOGRAM_H_
