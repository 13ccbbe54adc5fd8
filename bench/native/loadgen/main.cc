// netloop-loadgen: a closed-loop echo load generator and connection holder (Linux, epoll, C++17).
//
// Echo mode (the default): N connections are spread over T threads, each thread with its own
// level-triggered epoll. Every connection keeps W messages of SIZE bytes in flight: when the full
// echo of the oldest message has come back, the next one is sent. Every echoed byte is checked
// against the bytes that were sent: a message's payload is a pseudo-random pattern seeded by
// (connection id, sequence number), so a lost, duplicated, corrupted or reordered byte is caught.
// Latency is the time from the write that carried a message to the read that completed its echo.
//
// Hold mode (--hold): opens N connections (at most --connect-concurrency connecting or
// upgrading at a time), keeps them idle, optionally pings each one every --ping-interval seconds
// and requires the pong, and reports the server's resident memory per idle connection.
//
// Output: exactly one JSON line on stdout at the end (see README.md for the fields).
// Exit code: 0 ok, 1 if any verify failure, error or fewer healthy connections than asked,
// 2 bad usage, 3 watchdog.
//
// Files, one concern each (this directory; bench/native/build.js compiles every .cc):
//   options.{h,cc}        the command line
//   plan.h, stats.h       what the workers of a run share, and what each counts
//   histogram.h           log-linear latency buckets, ~0.4% relative error
//   pattern.{h,cc}        pure payload generation and checking (binary, or printable ASCII)
//   byte_queue.h          a growable byte queue with a read offset (outgoing bytes)
//   protocol.{h,cc}       per-connection framing: frame_begin()/frame_end() around each outgoing
//                         payload (generated in place, masked in place), parse() incoming bytes
//                         into payload bytes. TcpProtocol is the identity
//   ws_protocol.{h,cc}    WebSocket framing: an RFC 6455 client (upgrade handshake, masked frames
//                         out, unmasked frames in, ping/pong, close)
//   worker.{h,cc}         Conn (the closed loop over one socket) and Worker (one thread: one
//                         epoll, its connections, its own stats) and its event loop
//   connect.cc            connection setup: paced connects, source addresses, retries, deadline
//   shared_run.{h,cc}     broadcast over several processes: the MAP_SHARED slots and phases
//   mode_*.cc, modes.h    the modes (echo, churn, broadcast, hold): their Worker methods and the
//                         main thread's run_*(); a new mode is a new mode_*.cc
//   run.{h,cc}            the main thread's steps every mode shares: threads, clock, phases
//   measure.{h,cc}        CPU and RSS from /proc, our own CPU time
//   report.{h,cc}         the JSON line and the figures every mode reports alike
//   tls.{h,cc}            TLS (OpenSSL) between the socket and the protocol: context, BIO,
//                         handshake, records; worker_tls.cc: the worker's TLS steps
//   self_test.cc          --self-test
//
// Built with -fno-exceptions by bench/native/build.js: nothing here throws or catches.

#include <arpa/inet.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "clock.h"
#include "modes.h"
#include "options.h"
#include "pattern.h"
#include "plan.h"
#include "protocol.h"
#include "tls.h"

using namespace loadgen;  // NOLINT: main is the one function outside the namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  pattern_init();
  Plan plan;
  bool help = false;
  std::string err = parse_options(argc, argv, &plan.opt, &help);
  if (help) {
    fputs(kUsage, stdout);
    return 0;
  }
  if (err.empty() && plan.opt.self_test) return self_test();
  Options& o = plan.opt;
  if (err.empty() && !protocol_known(o.proto)) err = "unsupported --proto " + o.proto + " (have: tcp, ws)";
  plan.addr.sin_family = AF_INET;
  plan.addr.sin_port = htons(static_cast<uint16_t>(o.port));
  if (err.empty() && inet_pton(AF_INET, o.host.c_str(), &plan.addr.sin_addr) != 1) err = "--host must be an IPv4 address";
  for (const std::string& ip : o.source_ips) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    if (err.empty() && inet_pton(AF_INET, ip.c_str(), &src.sin_addr) != 1) err = "--source-ips: not an IPv4 address: " + ip;
    plan.sources.push_back(src);
  }
  if (!err.empty()) {
    fprintf(stderr, "netloop-loadgen: %s\n%s", err.c_str(), kUsage);
    return 2;
  }
  plan.pattern = o.msg_type == "text" ? kTextPattern : kBinaryPattern;
  plan.ws.path = o.path;
  plan.ws.host_header = o.host_header.empty() ? o.host + ":" + std::to_string(o.port) : o.host_header;
  plan.ws.opcode = o.msg_type == "text" ? 1 : 2;
  plan.ws.msg_size = o.size;
  if (getrandom(&plan.seed, sizeof plan.seed, 0) != static_cast<ssize_t>(sizeof plan.seed)) {
    plan.seed = now_ns() ^ (static_cast<uint64_t>(getpid()) << 32);
  }

  // One fd per connection plus a few: raise the soft limit as far as the hard one allows.
  rlimit rl{};
  // (--processes: each process holds its share)
  const rlim_t want = static_cast<rlim_t>((o.conns + o.processes - 1) / o.processes) + 64;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, want);
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want) {
      fprintf(stderr, "loadgen: the open-files limit (%llu) allows about %llu connections in one process; run several\n",
              static_cast<unsigned long long>(rl.rlim_cur), static_cast<unsigned long long>(rl.rlim_cur - 64));
    }
  }
  TlsClientContext tls;
  if (o.tls) {
    std::string why = tls.init(o.tls_resume, o.tls_max_version, o.hold);
    if (!why.empty()) {
      fprintf(stderr, "netloop-loadgen: --tls: %s\n", why.c_str());
      return 2;
    }
    plan.tls = &tls;
  }
  if (o.hold) return run_hold(plan);
  if (o.churn) return run_churn(plan);
  if (o.broadcast) return run_broadcast(plan);
  return run_echo(plan);
}
