// The loop: one poller, a slot table, write queues, deadlines and budgets.
//
// This file knows nothing about JavaScript. The host (addon.cc) drives it:
// Poll() runs one bounded iteration and appends records (batch.h) describing
// what happened; the host hands them to JS in one call; JS answers with a
// command array that Apply() executes (writes, closes, deadlines). Any command
// may close any connection, so every event and command is checked against the
// slot's generation, and a closed slot is only reused once its close record has
// been delivered (FreeClosedSlots).
#ifndef NETLOOP_LOOP_H_
#define NETLOOP_LOOP_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "batch.h"
#include "poller.h"
#include "peer_addr.h"
#include "readers.h"
#include "sockets.h"
#include "timer_heap.h"
#include "tls.h"

namespace netloop {

enum IoMode : int { kIoNonBlocking = 0, kIoBlocking = 1, kIoMixed = 2 };

struct LoopConfig {
  // Bytes read from one connection per iteration: one busy connection cannot
  // fill the receive slab and starve the others.
  size_t read_budget = 64 * 1024;
  // Events taken from the poller per iteration, so that libuv regains control
  // (timers, other handles) at a bounded interval.
  int max_events = 1024;
  // Connections accepted per listener per iteration (same reason).
  int accept_budget = 256;
  size_t max_write_buffer = 64u * 1024 * 1024;
  // Backpressure: a connection whose write queue goes above the high mark is
  // no longer read (its peer sends faster than it takes our answers) until
  // the queue is back at the low mark. A peer that never reads then costs at
  // most about the high mark, not max_write_buffer. 0 disables pausing.
  size_t write_high_water = 1024 * 1024;
  size_t write_low_water = 256 * 1024;
  // Server-wide: bytes in every write queue plus the bytes the JS layer holds
  // for unfinished messages (the meter, below). Queuing past it fails that
  // connection (kReasonBudget). 0: no budget.
  uint64_t memory_budget = 0;
  // A graceful close (flush, FIN, wait for the peer's FIN) gives up after this.
  int close_timeout_ms = 5000;
  bool no_delay = true;
  uint32_t max_load = 1000000;
  // Who reads a connection: the poller (non-blocking), a thread of its own
  // (blocking), or a thread while fewer than max_blocking_online connections
  // have one and the poller beyond that (mixed). Chosen at accept or connect.
  int io_mode = kIoNonBlocking;
  uint32_t max_blocking_online = 1000;
  size_t reader_stack_size = 64 * 1024;
  size_t reader_buffer_size = 16 * 1024;
  // TLS (tls.h): a handshake must finish within this time and these many
  // bytes of the peer's, or the connection is dropped (kRecTlsFail): slow
  // and flooding handshakes cost a bounded amount each.
  int tls_handshake_timeout_ms = 10000;
  uint64_t tls_max_handshake_bytes = 64 * 1024;
};

struct LoopStats {
  uint64_t online = 0;
  uint64_t accepted = 0;
  uint64_t dialed = 0;
  uint64_t closed = 0;
  uint64_t rejected = 0;  // closed at accept: over max_load, or out of descriptors
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t queued = 0;  // bytes in all write queues
  uint64_t blocking_online = 0;  // connections with a reader thread (threads alive)
  uint64_t readers_started = 0;
  uint64_t read_paused = 0;  // connections not read now: their write queue is above the high mark
  uint64_t tls_handshakes = 0;  // TLS handshakes completed
  uint64_t tls_failed = 0;      // TLS connections dropped before their handshake completed
  uint64_t writes_skipped = 0;  // WRITE_REF commands dropped: the queue was above their skip mark (topics)
};

// Numbers shared with JS in a Float64Array(2), read and written on the loop
// thread only, so that neither side needs a call to learn the other's part of
// the memory budget.
enum : int {
  kMeterQueued = 0,  // native: bytes in every write queue (stats.queued)
  kMeterHeld = 1,    // JS: bytes held for unfinished messages
  kMeterLength = 2,
};

struct AddressInfo {
  int family = 0;  // AF_INET, AF_INET6, AF_UNIX
  char host[112] = {0};
  int port = 0;
};

class Loop {
 public:
  Loop() = default;
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // slab: the receive buffer, owned by the host; DATA records point into it
  // and stay valid until the next Poll().
  // wake is called from reader threads (blocking mode) when CollectReaders()
  // has something to take; the host turns it into a wake-up of its thread.
  // meter: see kMeterQueued; may be null (no JS-held bytes to count).
  int Open(const LoopConfig& config, uint8_t* slab, size_t slab_len, double* meter, Readers::WakeFn wake,
           void* wake_arg);
  // Closes every descriptor at once without producing records (environment
  // teardown). Stop() is the orderly way.
  void Close();
  // Stops and joins every reader thread without producing records (teardown;
  // Stop() is the orderly way). The host calls it before it closes the
  // handle the readers wake it with.
  void JoinReaders();
  int poller_fd() const { return poller_.fd(); }

  // Listening: returns a listener id (>= 0) or -errno.
  int ListenInet(const char* host, int port, int backlog, bool reuse_port);
  int ListenUnix(const char* path, int backlog);
  int ListenerAddress(int id, AddressInfo* out) const;
  // Starts a non-blocking connect. On success the connection reports an OPEN
  // record with listener -1, or a DIAL_FAIL record; returns 0 or -errno.
  // tls (may be null): the connection speaks TLS (client side); the loop
  // owns it from the call on, whatever the result. Its OPEN record then
  // waits for the handshake, or a kRecTlsFail record replaces it.
  int DialInet(const char* host, int port, int timeout_ms, uint32_t* slot, uint32_t* gen, TlsConn* tls = nullptr);
  int DialUnix(const char* path, int timeout_ms, uint32_t* slot, uint32_t* gen, TlsConn* tls = nullptr);
  // TLS on a listener (a reference is taken; nullptr: plain again). New
  // connections use it; live ones keep the context they started with.
  int SetListenerTls(int id, SSL_CTX* ctx);
  // A connection's TLS state until its slot is reused (so that a CLOSE or
  // TLS_FAIL record can be explained), or nullptr.
  const TlsConn* TlsOf(uint32_t slot, uint32_t gen) const;
  // Decrypted input that did not fit in the last slab is waiting: the host
  // runs Poll() again soon even if no socket is ready.
  bool has_tls_backlog() const { return !tls_backlog_.empty(); }
  // Where this loop's TLS connections put their ciphertext (TlsConn::New).
  TlsOutput* tls_output() { return &tls_output_; }
  // Takes over a connected socket from another owner (Node): the descriptor
  // is duplicated and the duplicate enters the slot table exactly as an
  // accepted one does (same OPEN record, listener kAdoptedListener, same I/O
  // mode choice). The caller closes its own descriptor afterwards. Returns
  // 0 or -errno (EMFILE past max_load).
  int Adopt(int fd, uint32_t* slot, uint32_t* gen);

  // One bounded iteration: accept, read into the slab, drain write queues.
  // The host must have delivered every DATA record of the previous Poll().
  void Poll();
  // Blocking mode: takes what the reader threads have read into the slab
  // (DATA records) and turns finished readers into closes. Like Poll(), it
  // starts a new slab: every DATA record before must have been delivered.
  // Returns true when more is waiting (the host calls it again).
  bool CollectReaders();
  // Fires due deadlines (read, write, close timeouts, listener resume).
  void ExpireTimers();
  // Executes a command array (batch.h); refs are the large buffers that
  // WRITE_REF commands point at, valid for the duration of the call.
  void Apply(const int32_t* cmds, size_t count, const uint8_t* out_slab, size_t out_len,
             const iovec* refs, size_t ref_count);
  // Stops accepting: every listener is closed (unix socket files removed).
  void CloseListeners();
  // Orderly stop: a last non-blocking flush of every queue, then every
  // connection is closed with a CLOSE(STOP) record and every listener closed.
  void Stop();

  // Milliseconds until the earliest deadline, or -1 when there is none.
  int64_t MsUntilNextDeadline() const;

  const std::vector<int32_t>& records() const { return records_; }
  bool has_records() const { return !records_.empty(); }
  // Removes the first `count` records (the host copied them out).
  void ConsumeRecords(size_t count);
  // Reuses the slots whose close records have all been delivered.
  void FreeClosedSlots();

  // Bytes queued for a connection, or -1 for a stale token.
  int64_t Queued(uint32_t slot, uint32_t gen) const;
  // Local or peer address of a live connection; -errno otherwise. The peer
  // address of a TCP connection stays readable until the slot is reused, so
  // that onClose can still log it.
  int Address(uint32_t slot, uint32_t gen, bool peer, AddressInfo* out) const;

  const LoopStats& stats() const { return stats_; }
  // Memory a reader thread reserves: its stack plus its read buffer.
  size_t reader_bytes() const { return readers_.stack_size() + readers_.buffer_size(); }

 private:
  enum SlotKind : uint8_t { kFree = 0, kListener = 1, kConn = 2 };

  enum SlotState : uint8_t {
    kConnecting = 1,  // dial in progress
    kOpen = 2,
    kFlushing = 3,  // closing: the queue drains first, then FIN
    kLinger = 4,    // FIN sent, reading (and discarding) until the peer's FIN
    kClosed = 5,    // descriptor closed, CLOSE record not yet delivered
    kStopping = 6,  // blocking: the reader was told to stop; closed once it has exited
  };

  enum SlotFlags : uint8_t {
    kFlagUnix = 1u << 0,
    kFlagPeerEof = 1u << 1,
    kFlagPaused = 1u << 2,  // listener paused after a persistent accept error
    kFlagBlocking = 1u << 3,  // read by a reader thread, not by the poller
    kFlagAbortive = 1u << 4,  // blocking: close with RST once the reader has exited
    kFlagReadPaused = 1u << 5,  // not read: the write queue is above write_high_water
    kFlagTlsPending = 1u << 6,  // TLS handshake in progress: JS has not seen the OPEN record
  };

  struct Chunk {
    Chunk* next;
    size_t cap;
    size_t start;  // first unsent byte
    size_t end;    // one past the last queued byte
    uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
  };

  // A connection's write queue. Only a connection under backpressure has
  // one: it is allocated with the first queued chunk and freed when the
  // last is sent (or dropped), so an idle slot holds a null pointer instead
  // of these 24 bytes. Invariant: a queue that exists holds a chunk.
  struct WriteQueue {
    Chunk* head;
    Chunk* tail;
    size_t bytes;  // queued and not yet sent
  };

  // One per connection (slots_), so every byte counts a million times.
  // Fields are grouped by size so that no padding is left between them.
  struct Slot {
    int fd = -1;
    uint32_t gen = 0;
    uint8_t kind = 0;  // SlotKind
    uint8_t state = 0;
    uint8_t flags = 0;
    uint8_t interest = 0;
    int32_t close_reason = 0;
    int32_t close_errno = 0;
    int32_t listener = -1;  // the OPEN record's listener id (held back until a TLS handshake completes)
    WriteQueue* queue = nullptr;  // nullptr: nothing queued
    Reader* reader = nullptr;     // blocking mode: the thread reading this connection
    TlsConn* tls = nullptr;       // TLS state, freed with the slot (FreeClosedSlots)
    PeerAddr peer;  // TCP peer (accepted, dialed or adopted); empty otherwise
  };
#if defined(__linux__) && defined(__LP64__)
  // The issue-13 budget: a million held connections should cost under 256
  // bytes of user-space memory each, and the slot is the part of that this
  // loop owns; 64 bytes is also one cache line. A field added here must
  // find room, not grow the slot.
  static_assert(sizeof(Slot) <= 64, "Slot grew past 64 bytes (one per connection)");
#endif

  static size_t QueuedBytes(const Slot& s) { return s.queue == nullptr ? 0 : s.queue->bytes; }

  static int64_t NowMs();  // CLOCK_MONOTONIC
  static uint32_t TimerId(uint32_t slot, int kind);

  uint32_t NewSlot();
  // Gives back a slot whose descriptor never opened as a connection or
  // listener (registering it failed, or blocking mode got no thread): out of
  // the poller, descriptor closed, slot free. No record: JS never saw it.
  void DropUnopened(uint32_t slot);
  uint64_t TokenOf(uint32_t slot) const;
  Slot* Live(uint32_t slot, uint32_t gen);
  const Slot* Live(uint32_t slot, uint32_t gen) const;
  void Record(int32_t type, uint32_t slot, int32_t a, int32_t b);
  int SetInterest(uint32_t slot, uint32_t interest);
  // Deadline at now_ms + delay_ms (NowMs()); int32 delays are what keep the
  // heap's 32-bit offsets exact (timer_heap.h).
  void SetTimer(uint32_t slot, int kind, int64_t now_ms, int32_t delay_ms);
  void CancelTimers(uint32_t slot);
  int AddListener(int fd, bool is_unix, const char* path);
  int StartDial(int r, int fd, bool is_unix, const InetAddr* addr, int timeout_ms, uint32_t* slot,
                uint32_t* gen, TlsConn* tls);

  void OnListenerReady(uint32_t slot);
  // A connected descriptor enters the slot table (OPEN record with
  // `listener`): accepted, or adopted. Closes fd and returns -errno when it
  // cannot be registered (or, in blocking mode, gets no thread).
  int OpenAccepted(int fd, bool is_unix, const InetAddr& peer, int32_t listener, uint32_t* slot);
  void PauseListener(uint32_t slot, int ms);
  void OnConnectReady(uint32_t slot);
  void OnReadable(uint32_t slot);
  void OnWritable(uint32_t slot);
  void OnTimer(uint32_t slot, int kind);

  // Blocking mode.
  bool WantBlocking() const;
  // Hands an open connection to a reader thread; false if none could start.
  bool StartBlocking(uint32_t slot);
  // The closing of a connection that has a reader: stop the reader, wake it
  // (shutdown of the read side), and finish in OnReaderDone once it exited.
  void StopReader(uint32_t slot, int32_t reason, int32_t err, bool abortive);
  // A graceful local close: the reader discards what it reads from now on
  // and reports its end as that close, unless the peer's FIN beat us to it.
  void StopReaderGracefully(uint32_t slot);
  void OnReaderDone(const ReaderEvent& e);

  // Sends iov now if nothing is queued before it, queues the rest.
  void Write(uint32_t slot, iovec* iov, size_t count);
  // Copies iov into the queue; false when the connection was closed instead.
  bool Enqueue(uint32_t slot, const iovec* iov, size_t count);
  void DrainQueue(uint32_t slot);
  void FreeQueue(Slot& s);
  // Backpressure (write_high_water): stop and resume reading a connection.
  void PauseReading(uint32_t slot);
  void ResumeReading(uint32_t slot);
  // Publishes stats_.queued to the meter after the queues changed.
  void UpdateMeter() {
    if (meter_ != nullptr) meter_[kMeterQueued] = static_cast<double>(stats_.queued);
  }
  // timeout_ms bounds a graceful close (<= 0: the configured close_timeout).
  void LocalClose(uint32_t slot, bool abortive, int32_t timeout_ms);
  void FlushDone(uint32_t slot);
  void StartLinger(uint32_t slot);
  // Closes the descriptor, drops the queue and records CLOSE (or DIAL_FAIL
  // for a connection that never opened).
  void CloseNow(uint32_t slot, int32_t reason, int32_t err, bool abortive);
  void CloseListener(uint32_t slot);
  // The peer's end of the stream (FIN, or TLS close_notify) with the reason
  // onClose reports unless a close of ours came first.
  void OnPeerFin(uint32_t slot, int32_t reason);
  // kReasonEof, or kReasonTlsTruncated for a TLS connection whose peer sent
  // FIN without close_notify.
  int32_t EofReason(const Slot& s) const;
  // Sends iov now if nothing is queued before it, queues the rest: the
  // bytes on the wire (ciphertext for a TLS connection).
  void WriteWire(uint32_t slot, iovec* iov, size_t count);

  // TLS (loop_tls.cc).
  void TlsBegin(uint32_t slot);
  void TlsInput(uint32_t slot, const uint8_t* data, size_t len);
  // Handshake, then decrypt into the slab until it is full (backlog) or
  // the input is used up; sends whatever OpenSSL has to say.
  void TlsPump(uint32_t slot);
  void TlsFlushOutput(uint32_t slot);
  // Notes that a connection's TLS is in use this period (cheap: once per
  // period); TlsSweep releases the buffers of those that went idle since.
  void TlsTouch(uint32_t slot);
  void TlsSweep(int64_t now);
  void TlsWrite(uint32_t slot, const iovec* iov, size_t count);
  void TlsEstablished(uint32_t slot);
  void TlsFail(uint32_t slot, int32_t code, const char* text);
  void TlsCloseNotify(uint32_t slot);
  void ProcessTlsBacklog();
  void EnsureTlsBuffers();
  // The record that ends a connection JS has not seen open (TLS handshake).
  void RecordTlsFail(uint32_t slot, int32_t reason, int32_t err);

  LoopConfig config_;
  Poller poller_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  std::vector<uint32_t> closed_slots_;  // closed, waiting for FreeClosedSlots
  std::vector<uint32_t> listeners_;
  std::vector<std::string> unix_paths_;  // per listener slot, unlinked at close
  TimerHeap timers_;
  std::vector<int32_t> records_;
  std::vector<PollEvent> events_;
  // Apply() scratch: per-connection write groups, reused between calls.
  std::vector<iovec> iov_scratch_;
  std::vector<int32_t> group_of_slot_;
  struct Group {
    uint32_t slot;
    uint32_t gen;
    int32_t first;  // first op index in ops_, linked through Op::next
    int32_t last;
  };
  struct Op {
    int32_t next;
    int32_t close_mode;  // -1 for a write
    int32_t close_timeout_ms;
    iovec iov;
  };
  std::vector<Group> groups_;
  std::vector<Op> ops_;

  uint8_t* slab_ = nullptr;
  size_t slab_len_ = 0;
  double* meter_ = nullptr;
  size_t slab_used_ = 0;
  size_t read_share_ = 0;  // bytes one socket may read in this iteration
  uint32_t rotation_ = 0;  // where the next Poll() starts in its event list
  uint8_t discard_[16 * 1024];  // input read after a local close
  int spare_fd_ = -1;  // released to accept-and-drop when out of descriptors
  LoopStats stats_;
  Readers readers_;
  std::vector<ReaderEvent> reader_events_;
  // TLS: the context of each listener slot (nullptr: plain), ciphertext read
  // before it is decrypted into the slab (sized like the slab, allocated
  // when the first TLS connection opens), small plaintext writes gathered
  // into one record, the ciphertext waiting to be sent (one connection's at a
  // time: TlsOutput), and the connections whose decrypted input did not fit.
  std::vector<SSL_CTX*> listener_tls_;
  std::vector<uint8_t> tls_in_;
  std::vector<uint8_t> tls_plain_;
  TlsOutput tls_output_;
  std::vector<uint32_t> tls_backlog_;
  // The idle sweep of OpenSSL's buffers (TlsSweep): the connections that
  // did TLS work in the current and in the previous period, as tokens.
  uint32_t tls_period_ = 1;
  int64_t tls_sweep_due_ = 0;
  std::vector<uint64_t> tls_used_;
  std::vector<uint64_t> tls_used_before_;
};

}  // namespace netloop

#endif  // NETLOOP_LOOP_H_
