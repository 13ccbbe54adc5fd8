// The shared layout of the arrays that cross the native/JS boundary once per
// batch. lib/native.ts mirrors these numbers; test/native/batch-layout checks
// that both sides agree.
//
// Records (native -> JS) and commands (JS -> native) are both runs of
// kRecordInts int32 values: [type, slot, gen, a, b].
#ifndef NETLOOP_BATCH_H_
#define NETLOOP_BATCH_H_

#include <cstdint>

namespace netloop {

constexpr int kRecordInts = 5;

// Record types.
enum : int32_t {
  kRecOpen = 1,      // a: listener id, -1 for a dialed connection, -2 for an adopted one
  kRecData = 2,      // a: offset in the receive slab, b: length
  kRecClose = 3,     // a: close reason, b: errno (0 if none)
  kRecDrain = 4,     // the write queue became empty
  kRecDialFail = 5,  // a: errno; the connection never opened
  kRecTlsFail = 6,   // a: TlsError (0: the engine stopped), b: errno; the TLS handshake never completed
};

// kRecOpen's listener id of a connection taken over from another owner (Loop::Adopt).
constexpr int32_t kAdoptedListener = -2;

// Close reasons (kRecClose a).
enum : int32_t {
  kReasonEof = 1,           // the peer closed its side (FIN)
  kReasonErrno = 2,         // a socket error, b holds errno
  kReasonReadTimeout = 3,   // the read deadline passed
  kReasonWriteTimeout = 4,  // the write deadline (or a graceful close's flush) timed out
  kReasonOverflow = 5,      // the write queue went over max_write_buffer
  kReasonLocal = 6,         // closed by a CLOSE command
  kReasonStop = 7,          // the engine stopped
  kReasonBudget = 8,        // queuing would take the server past its memory budget
  kReasonTlsTruncated = 9,  // TLS: the peer's FIN came without close_notify (a truncation)
  kReasonTls = 10,          // TLS: b holds the TlsError (a bad record, a fatal alert, a handshake failure)
};

// Command types.
enum : int32_t {
  kCmdWrite = 1,     // a: offset in the out slab, b: length
  kCmdWriteRef = 2,  // a: index in the refs array, b: skip mark (0: none; >0: dropped when the queue holds more bytes)
  kCmdClose = 3,     // a: 0 graceful (flush, FIN), 1 abortive (RST, drop queue); b: graceful timeout ms (0: default)
  kCmdDeadline = 4,  // a: 0 read, 1 write; b: ms from now, or -1 to clear
};

// Timer kinds (deadlines); a slot has at most one of each.
enum : int {
  kTimerRead = 0,
  kTimerWrite = 1,
  kTimerClose = 2,  // dial timeout, graceful close timeout, listener resume
  kTimerKinds = 3,
};

}  // namespace netloop

#endif  // NETLOOP_BATCH_H_
