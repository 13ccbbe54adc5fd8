// What one worker counts; the main thread adds the workers' up at the end (report.h).
#ifndef NETLOOP_LOADGEN_STATS_H_
#define NETLOOP_LOADGEN_STATS_H_

#include <cstdint>

#include "histogram.h"

namespace loadgen {

struct Stats {
  uint64_t messages = 0;  // messages whose echo completed inside the measured window
  uint64_t errors = 0;    // failed connections, any reason (verify failures included)
  uint64_t verify_failures = 0;
  uint64_t handshake_failures = 0;  // connected, but failed before the protocol was ready
  uint64_t conns_ok = 0;  // echo: >= 1 echo completed; hold: upgraded; never failed, open at the end
  uint64_t connect_retries = 0;
  uint64_t upgraded = 0;       // connections that became ready
  uint64_t last_ready_ns = 0;  // when the last of them did
  uint64_t pings_sent = 0;
  uint64_t pongs_received = 0;     // pongs that matched the outstanding ping
  uint64_t pongs_unexpected = 0;   // other pongs (allowed by RFC 6455, ignored)
  uint64_t pings_unanswered = 0;   // no pong by the next ping, or by the end (+ grace)
  uint64_t server_pings = 0;       // pings the server sent (answered)
  Histogram hist;   // echo: message round trips (--rate: from when each was due); hold: ping
                    // round trips; churn: whole cycles; broadcast: publish to each delivery
  Histogram lag;    // --rate: how late each message was sent after it was due (the generator's lag)
  Histogram fanout; // broadcast: publish to the last connection having the message
  uint64_t broadcasts = 0;  // broadcast: messages that reached every connection in the window
  uint64_t backlog = 0;     // --rate: messages due but not echoed when the run ended
};

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_STATS_H_
