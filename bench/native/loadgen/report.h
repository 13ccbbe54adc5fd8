// The one JSON line a run prints, and the figures every mode reports alike.
#ifndef NETLOOP_LOADGEN_REPORT_H_
#define NETLOOP_LOADGEN_REPORT_H_

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "histogram.h"
#include "stats.h"

namespace loadgen {

// Builds {"key":value,...} in the order the fields are added.
class JsonLine {
 public:
  void str(const char* k, const std::string& v) {
    key(k);
    out_ += '"';
    for (char ch : v) {
      if (ch == '"' || ch == '\\') out_ += '\\';
      if (static_cast<unsigned char>(ch) < 0x20) continue;
      out_ += ch;
    }
    out_ += '"';
  }
  void u64(const char* k, uint64_t v) {
    key(k);
    out_ += std::to_string(v);
  }
  void num(const char* k, double v, int decimals) {
    key(k);
    if (!std::isfinite(v)) {
      out_ += "null";
      return;
    }
    char b[64];
    snprintf(b, sizeof b, "%.*f", decimals, v);
    out_ += b;
  }
  void null(const char* k) {
    key(k);
    out_ += "null";
  }
  std::string done() { return out_ + "}"; }

 private:
  void key(const char* k) {
    out_ += out_.empty() ? "{" : ",";
    out_ += '"';
    out_ += k;
    out_ += "\":";
  }
  std::string out_;
};

class Worker;
// The workers' stats added up.
Stats total_of(const std::vector<std::unique_ptr<Worker>>& workers);
// p50, p99 and (unless max is null) the maximum of h in microseconds, or nulls when h is empty.
void percentiles(JsonLine& j, const Histogram& h, const char* p50, const char* p99, const char* max);
// p90, p99.9 (named with a prefix, e.g. "p90_us" or "fanout_p90_us").
void tail_percentiles(JsonLine& j, const Histogram& h, const std::string& prefix);
// The server's CPU time over the measured period, and per unit of work as `per_key` (in us),
// or nulls when it could not be read or no work was done.
void server_cpu_fields(JsonLine& j, bool srv_ok, uint64_t srv0, uint64_t srv1, const char* per_key, double units,
                       int digits);

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_REPORT_H_
