// What every worker of a run shares: the options, the target and source addresses, the phases,
// and (broadcast mode) the publisher's slots.
#ifndef NETLOOP_LOADGEN_PLAN_H_
#define NETLOOP_LOADGEN_PLAN_H_

#include <netinet/in.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "options.h"
#include "pattern.h"
#include "tls.h"
#include "ws_protocol.h"

namespace loadgen {

// Broadcast mode: what the publisher (connection 0) and every receiving connection share across
// threads. Message seq uses slot seq % W (W = --inflight broadcasts in flight). A receiver that
// completes a message bumps the slot's count; the one that makes it `expected` (every
// connection has it) marks the slot done and wakes the publisher through an eventfd. The
// publisher reuses a slot only once the message W before has reached everyone, so at most W
// broadcasts are in flight and a slow receiver slows the publisher (a closed loop, as in echo).
//
// Several generator processes (--processes) share one Broadcast: it lives in a MAP_SHARED
// mapping made before they fork (shared_run.h), its eventfd is inherited, and the atomics are
// lock-free, so they work across processes as across threads. now_ns() is CLOCK_MONOTONIC,
// one clock for the whole machine, so a publish time compares with any process's delivery time.
struct Broadcast {
  // slots: 3 * window atomics (count, time, done), zeroed here.
  Broadcast(size_t window, std::atomic<uint64_t>* slots)
      : slot_count(slots), slot_time(slots + window), slot_done(slots + 2 * window) {
    for (size_t i = 0; i < 3 * window; i++) slots[i].store(0);
  }
  std::atomic<uint64_t> published{0};  // messages sent so far (only the publisher writes it)
  std::atomic<bool> broken{false};     // a connection failed: no message can reach everyone
  std::atomic<uint64_t> upgraded{0};   // connections ready, every process's
  uint64_t expected = 0;               // receivers per message: connections ready at the start
  std::atomic<uint64_t>* slot_count;   // receivers that completed the slot's message
  std::atomic<uint64_t>* slot_time;    // when its message was queued for sending
  std::atomic<uint64_t>* slot_done;    // seq + 1 of the last message that reached all
  int efd = -1;                        // the publisher's wake-up
};

// The seed id of broadcast messages (connection ids are smaller).
constexpr uint32_t kBroadcastId = 0xFFFFFFFFu;

struct Plan {
  Options opt;
  Broadcast* bc = nullptr;  // broadcast mode only
  Pattern pattern = kBinaryPattern;
  WsConfig ws;
  sockaddr_in addr{};
  std::vector<sockaddr_in> sources;  // --source-ips; empty: the kernel picks
  uint64_t seed = 0;                 // random per run: handshake keys and masks
  uint64_t t_start = 0;              // connections start opening at t_start
  uint64_t t_connect_deadline = 0;   // connections not ready (upgraded) by then fail
  uint64_t pong_grace_ns = 0;        // hold: how long after the hold the last pongs may take
  const TlsClientContext* tls = nullptr;  // --tls only
};

// The run's phases, as the workers see them. Every worker first opens its connections and says
// when all are ready or failed (connecting drops to 0). The main thread then picks the start
// (echo: messages start, the warmup begins; hold: after the settle and the idle RSS sample,
// pings may start) and the end, and publishes them. No message is sent while connections are
// still being opened: a server saturated by the first connections' traffic would otherwise
// starve the later ones' handshakes (ws, 500 loaded connections, accepted about 150 more per
// second here), and the run would measure that instead.
struct PhaseSync {
  std::atomic<int> connecting{0};   // workers still opening connections
  std::atomic<uint64_t> start{0};   // 0 until published
  std::atomic<uint64_t> end{0};     // stored before start
};

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_PLAN_H_
