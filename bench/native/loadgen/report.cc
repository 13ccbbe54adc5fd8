// Adding up the workers' figures and writing them as JSON fields (see report.h).
#include "report.h"

#include <algorithm>

#include "measure.h"
#include "worker.h"

namespace loadgen {

Stats total_of(const std::vector<std::unique_ptr<Worker>>& workers) {
  Stats total;
  for (auto& w : workers) {
    const Stats& s = w->stats();
    total.messages += s.messages;
    total.errors += s.errors;
    total.verify_failures += s.verify_failures;
    total.handshake_failures += s.handshake_failures;
    total.conns_ok += s.conns_ok;
    total.connect_retries += s.connect_retries;
    total.upgraded += s.upgraded;
    total.last_ready_ns = std::max(total.last_ready_ns, s.last_ready_ns);
    total.pings_sent += s.pings_sent;
    total.pongs_received += s.pongs_received;
    total.pongs_unexpected += s.pongs_unexpected;
    total.pings_unanswered += s.pings_unanswered;
    total.server_pings += s.server_pings;
    total.hist.merge(s.hist);
    total.lag.merge(s.lag);
    total.fanout.merge(s.fanout);
    total.broadcasts += s.broadcasts;
    total.backlog += s.backlog;
  }
  return total;
}

void percentiles(JsonLine& j, const Histogram& h, const char* p50, const char* p99, const char* max) {
  if (h.total() > 0) {
    j.num(p50, static_cast<double>(h.percentile(0.50)) / 1e3, 2);
    j.num(p99, static_cast<double>(h.percentile(0.99)) / 1e3, 2);
    if (max != nullptr) j.num(max, static_cast<double>(h.max()) / 1e3, 2);
  } else {
    j.null(p50);
    j.null(p99);
    if (max != nullptr) j.null(max);
  }
}

void tail_percentiles(JsonLine& j, const Histogram& h, const std::string& prefix) {
  const std::string p90 = prefix + "p90_us", p999 = prefix + "p999_us";
  if (h.total() > 0) {
    j.num(p90.c_str(), static_cast<double>(h.percentile(0.90)) / 1e3, 2);
    j.num(p999.c_str(), static_cast<double>(h.percentile(0.999)) / 1e3, 2);
  } else {
    j.null(p90.c_str());
    j.null(p999.c_str());
  }
}

void server_cpu_fields(JsonLine& j, bool srv_ok, uint64_t srv0, uint64_t srv1, const char* per_key, double units,
                       int digits) {
  if (srv_ok && units > 0) {
    double cpu = ticks_to_s(srv1 - srv0);
    j.num("server_cpu_s", cpu, 3);
    j.num(per_key, cpu * 1e6 / units, digits);
  } else {
    j.null("server_cpu_s");
    j.null(per_key);
  }
}

}  // namespace loadgen
