// The command line: every flag, its default, and the checks between flags.
#ifndef NETLOOP_LOADGEN_OPTIONS_H_
#define NETLOOP_LOADGEN_OPTIONS_H_

#include <cstddef>
#include <string>
#include <vector>

namespace loadgen {

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int conns = 100;
  int inflight = 4;
  size_t size = 64;
  double duration_s = 5;
  double warmup_s = 1;
  int threads = 1;
  long server_pid = -1;  // -1: not given
  std::string proto = "tcp";
  // WebSocket
  std::string msg_type = "binary";  // binary | text
  std::string path = "/";
  std::string host_header;  // "" -> host:port
  // Connecting (both modes)
  int connect_concurrency = 500;  // connections connecting or upgrading at once (all threads)
  std::vector<std::string> source_ips;
  // Hold mode
  bool hold = false;
  double connect_timeout_s = 60;
  // Echo mode, open loop: each connection sends --rate messages a second on a fixed schedule,
  // whatever the echoes do (0: closed loop, --inflight messages in flight). --inflight then caps
  // the messages outstanding per connection; a due message beyond the cap waits, and its
  // latency still counts from when it was due.
  double rate = 0;
  // Churn mode: each of --conns slots loops connect, (upgrade,) one message, close.
  bool churn = false;
  // Broadcast mode: connection 0 publishes, the server sends every message to every connection
  // (the publisher included), every connection checks every message.
  bool broadcast = false;
  // Broadcast mode: generator processes (this one holds the publisher; the others, forked,
  // only subscribers), so that more connections than one process may open can take part.
  int processes = 1;
  double settle_s = 2;
  // --hold --barrier: once every connection is upgraded (or failed), print
  // {"phase":"connected","conns_ok":N} and wait for a line on stdin (or its end) before the
  // settle and the hold: the harness holds several generators at a level, samples the server,
  // then lets them all ping at once (bench/harness/hold-levels.js).
  bool barrier = false;
  double ping_interval_s = 0;  // 0: no pings
  bool self_test = false;
  // TLS (any mode, any protocol): the protocol's bytes go through TLS (tls.h).
  bool tls = false;
  bool tls_resume = false;           // offer each connection's last session ticket on its next connect
  std::string tls_servername = "localhost";  // SNI ("" sends none)
  std::string tls_max_version;       // "" (highest), "1.2" or "1.3"
};

extern const char kUsage[];

// Returns "" on success, else an error message. Sets *help when --help was asked.
std::string parse_options(int argc, char** argv, Options* o, bool* help);

// "a,b,,c" -> {"a", "b", "c"}.
std::vector<std::string> split_commas(const std::string& s);

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_OPTIONS_H_
