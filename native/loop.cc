#include "loop.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace netloop {

namespace {

// sendmsg() takes at most IOV_MAX buffers; 64 keeps the stack array small and
// is far more than one connection produces per batch in practice.
constexpr int kIovBatch = 64;
// Queued bytes are copied into chunks of at least this size, so that many
// small writes to a slow reader do not become many small allocations.
constexpr size_t kChunkMin = 16 * 1024;
// The smallest slab share a ready socket gets per iteration: below this, the
// cost of a read (and of the iteration around it) per byte dominates. 64 KiB
// WebSocket messages echoed on 100 connections cost 54 us of server CPU per
// message with 10 KiB shares (a 1 MiB slab over 100 ready sockets), 36 us
// with 32 KiB, 24.5 us with 64 KiB (`ws`: 26 us). With more ready sockets than
// the slab has shares, the rotating start in Poll() spreads the reads over
// iterations.
constexpr size_t kMinReadShare = 64 * 1024;
// A listener that fails with a persistent error (not EAGAIN) is paused for
// this long instead of spinning the level-triggered loop at 100% CPU.
constexpr int kListenerPauseMs = 100;

}  // namespace

int64_t Loop::NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

uint32_t Loop::TimerId(uint32_t slot, int kind) { return slot * kTimerKinds + static_cast<uint32_t>(kind); }

namespace {
bool WouldBlock(int err) { return err == EAGAIN || err == EWOULDBLOCK; }
}  // namespace

Loop::~Loop() { Close(); }

int Loop::Open(const LoopConfig& config, uint8_t* slab, size_t slab_len, double* meter, Readers::WakeFn wake,
               void* wake_arg) {
  config_ = config;
  meter_ = meter;
  if (config_.write_low_water > config_.write_high_water) config_.write_low_water = config_.write_high_water;
  readers_.Init(config_.reader_stack_size, config_.reader_buffer_size, wake, wake_arg);
  if (config_.max_events <= 0 || config_.max_events > Poller::kMaxEvents) config_.max_events = Poller::kMaxEvents;
  slab_ = slab;
  slab_len_ = slab_len;
  events_.resize(static_cast<size_t>(config_.max_events));
  // Per-slot tables are reserved for max_load (plus listeners) up front:
  // address space only, since the kernel backs pages as slots are first used.
  // Growing them by doubling instead would copy them and leave the old
  // copies in the allocator's free lists, resident, each time.
  // Capped: past a million the tables grow as needed (a larger max_load
  // must not reserve gigabytes of address space).
  size_t slots = std::min<size_t>(config_.max_load, 1u << 20) + 64;
  slots_.reserve(slots);
  group_of_slot_.reserve(slots);
  timers_.Reserve(slots * kTimerKinds);
  int r = poller_.Open();
  if (r < 0) return r;
  spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return 0;
}

void Loop::JoinReaders() {
  // Each reader is stopped and woken, then joined, before any descriptor is
  // closed under it. No records: this is teardown.
  bool any = false;
  for (Slot& s : slots_) {
    if (s.kind == kConn && s.reader != nullptr) {
      readers_.Stop(s.reader, kReasonStop);
      shutdown(s.fd, SHUT_RDWR);
      any = true;
    }
  }
  if (!any) return;
  readers_.WaitAll();
  reader_events_.clear();
  readers_.Take(nullptr, 0, &reader_events_);
  for (const ReaderEvent& e : reader_events_) {
    if (e.done && e.slot < slots_.size()) slots_[e.slot].reader = nullptr;
  }
  reader_events_.clear();
}

void Loop::Close() {
  JoinReaders();
  for (uint32_t i = 0; i < slots_.size(); i++) {
    Slot& s = slots_[i];
    if (s.kind == kListener) {
      CloseListener(i);
    } else if (s.kind == kConn && s.fd >= 0) {
      ::close(s.fd);
      s.fd = -1;
      FreeQueue(s);
    }
    delete s.tls;
    s.tls = nullptr;
  }
  tls_backlog_.clear();
  poller_.Close();
  if (spare_fd_ >= 0) ::close(spare_fd_);
  spare_fd_ = -1;
}

// ---------------------------------------------------------------------------
// Slots and records

uint32_t Loop::NewSlot() {
  uint32_t i;
  if (!free_slots_.empty()) {
    i = free_slots_.back();
    free_slots_.pop_back();
  } else {
    i = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& s = slots_[i];
  s.fd = -1;
  s.state = 0;
  s.flags = 0;
  s.interest = 0;
  s.close_reason = 0;
  s.close_errno = 0;
  s.queue = nullptr;  // FreeQueue left none
  s.peer.Clear();
  s.reader = nullptr;
  s.tls = nullptr;  // freed when the slot was
  s.listener = -1;
  return i;
}

void Loop::DropUnopened(uint32_t slot) {
  Slot& s = slots_[slot];
  if (s.interest != 0) poller_.Remove(s.fd, s.interest);
  s.interest = 0;
  if (s.fd >= 0) ::close(s.fd);
  s.fd = -1;
  delete s.tls;
  s.tls = nullptr;
  s.peer.Clear();
  s.kind = kFree;
  free_slots_.push_back(slot);
}

uint64_t Loop::TokenOf(uint32_t slot) const {
  return (static_cast<uint64_t>(slots_[slot].gen) << 32) | slot;
}

Loop::Slot* Loop::Live(uint32_t slot, uint32_t gen) {
  if (slot >= slots_.size()) return nullptr;
  Slot& s = slots_[slot];
  if (s.kind != kConn || s.gen != gen || s.state == kClosed) return nullptr;
  return &s;
}

const Loop::Slot* Loop::Live(uint32_t slot, uint32_t gen) const {
  return const_cast<Loop*>(this)->Live(slot, gen);
}

void Loop::Record(int32_t type, uint32_t slot, int32_t a, int32_t b) {
  records_.push_back(type);
  records_.push_back(static_cast<int32_t>(slot));
  records_.push_back(static_cast<int32_t>(slots_[slot].gen));
  records_.push_back(a);
  records_.push_back(b);
}

void Loop::ConsumeRecords(size_t count) {
  size_t ints = std::min(count * kRecordInts, records_.size());
  records_.erase(records_.begin(), records_.begin() + static_cast<std::ptrdiff_t>(ints));
}

void Loop::FreeClosedSlots() {
  for (uint32_t i : closed_slots_) {
    Slot& s = slots_[i];
    s.kind = kFree;
    s.state = 0;
    delete s.tls;  // kept until now so that the close could be explained (TlsOf)
    s.tls = nullptr;
    s.peer.Clear();  // likewise, for onClose's remoteAddr
    s.gen++;  // every token of the old connection is stale from here on
    free_slots_.push_back(i);
  }
  closed_slots_.clear();
}

int Loop::SetInterest(uint32_t slot, uint32_t interest) {
  Slot& s = slots_[slot];
  if (s.interest == interest) return 0;
  int r;
  if (s.flags & kFlagBlocking) {
    // A connection with a reader thread is in the poller only while its write
    // queue waits for room: registered with no interest, epoll would still
    // report hangups and errors, forever, to a loop that does not read.
    if (s.interest == 0) {
      r = poller_.Add(s.fd, TokenOf(slot), interest);
    } else if (interest == 0) {
      r = poller_.Remove(s.fd, s.interest);
    } else {
      r = poller_.Modify(s.fd, TokenOf(slot), s.interest, interest);
    }
    if (r == 0) s.interest = static_cast<uint8_t>(interest);
    return r;
  }
  r = poller_.Modify(s.fd, TokenOf(slot), s.interest, interest);
  if (r == 0) s.interest = static_cast<uint8_t>(interest);
  return r;
}

void Loop::SetTimer(uint32_t slot, int kind, int64_t now_ms, int32_t delay_ms) {
  timers_.Set(TimerId(slot, kind), now_ms, delay_ms);
}

void Loop::CancelTimers(uint32_t slot) {
  for (int k = 0; k < kTimerKinds; k++) timers_.Cancel(TimerId(slot, k));
}

int64_t Loop::MsUntilNextDeadline() const {
  int64_t when = timers_.Earliest();
  // The TLS idle sweep is due too while connections used TLS lately.
  if (!tls_used_.empty() || !tls_used_before_.empty()) when = std::min(when, tls_sweep_due_);  // kNone is the largest
  if (when == TimerHeap::kNone) return -1;
  int64_t left = when - NowMs();
  return left < 0 ? 0 : left;
}

// ---------------------------------------------------------------------------
// Listening and dialing

int Loop::AddListener(int fd, bool is_unix, const char* path) {
  uint32_t slot = NewSlot();
  Slot& s = slots_[slot];
  s.kind = kListener;
  s.fd = fd;
  s.flags = is_unix ? kFlagUnix : 0;
  int r = poller_.Add(fd, TokenOf(slot), kInterestRead);
  if (r < 0) {
    if (path != nullptr) unlink(path);
    DropUnopened(slot);
    return r;
  }
  s.interest = kInterestRead;
  listeners_.push_back(slot);
  if (unix_paths_.size() <= slot) unix_paths_.resize(slot + 1);
  unix_paths_[slot] = path != nullptr ? path : "";
  return static_cast<int>(slot);
}

int Loop::ListenInet(const char* host, int port, int backlog, bool reuse_port) {
  InetAddr addr;
  socklen_t len;
  int r = ParseInetAddr(host, port, &addr, &len);
  if (r < 0) return r;
  int fd = netloop::ListenInet(addr, len, backlog, reuse_port);
  if (fd < 0) return fd;
  return AddListener(fd, false, nullptr);
}

int Loop::ListenUnix(const char* path, int backlog) {
  int fd = netloop::ListenUnix(path, backlog);
  if (fd < 0) return fd;
  return AddListener(fd, true, path);
}

int Loop::ListenerAddress(int id, AddressInfo* out) const {
  if (id < 0 || static_cast<size_t>(id) >= slots_.size() || slots_[id].kind != kListener) return -EBADF;
  int r = SocketAddress(slots_[id].fd, false, out->host, sizeof out->host, &out->port);
  if (r < 0) return r;
  out->family = r;
  return 0;
}

int Loop::StartDial(int r, int fd, bool is_unix, const InetAddr* addr, int timeout_ms, uint32_t* out_slot,
                    uint32_t* out_gen, TlsConn* tls) {
  if (r < 0) {
    delete tls;
    return r;
  }
  uint32_t slot = NewSlot();
  Slot& s = slots_[slot];
  s.tls = tls;
  if (tls != nullptr) EnsureTlsBuffers();
  s.kind = kConn;
  s.fd = fd;
  s.flags = is_unix ? kFlagUnix : 0;
  if (addr != nullptr) s.peer.Set(*addr);
  bool connected = r == 0;
  s.state = connected ? kOpen : kConnecting;
  uint32_t interest = connected ? kInterestRead : kInterestWrite;
  int ar = poller_.Add(fd, TokenOf(slot), interest);
  if (ar < 0) {
    DropUnopened(slot);
    return ar;
  }
  s.interest = static_cast<uint8_t>(interest);
  if (!is_unix && config_.no_delay) SetNoDelay(fd);
  stats_.dialed++;
  if (connected) {
    stats_.online++;
    bool blocking = WantBlocking() && StartBlocking(slot);
    if (s.tls != nullptr) {
      TlsBegin(slot);
    } else {
      Record(kRecOpen, slot, -1, blocking ? 1 : 0);
    }
  } else if (timeout_ms > 0) {
    SetTimer(slot, kTimerClose, NowMs(), timeout_ms);
  }
  *out_slot = slot;
  *out_gen = s.gen;
  return 0;
}

int Loop::DialInet(const char* host, int port, int timeout_ms, uint32_t* slot, uint32_t* gen, TlsConn* tls) {
  InetAddr addr;
  socklen_t len;
  int r = ParseInetAddr(host, port, &addr, &len);
  int fd = -1;
  if (r == 0) r = ConnectInet(addr, len, &fd);
  return StartDial(r, fd, false, &addr, timeout_ms, slot, gen, tls);
}

int Loop::DialUnix(const char* path, int timeout_ms, uint32_t* slot, uint32_t* gen, TlsConn* tls) {
  int fd = -1;
  int r = ConnectUnix(path, &fd);
  return StartDial(r, fd, true, nullptr, timeout_ms, slot, gen, tls);
}

// ---------------------------------------------------------------------------
// One iteration

void Loop::Poll() {
  slab_used_ = 0;
  if (!tls_backlog_.empty()) ProcessTlsBacklog();
  int n = poller_.Wait(events_.data(), config_.max_events, 0);
  if (n <= 0) return;
  // Fairness between busy connections. Each ready socket may read its share
  // of the slab (at least kMinReadShare, at most read_budget), and the batch
  // starts at a rotating index: level-triggered epoll reports ready sockets
  // in much the same order every time, so without the rotation the first
  // sockets would fill the slab on every pass and the last never be read.
  size_t share = slab_len_ / static_cast<size_t>(n);
  read_share_ = std::min(config_.read_budget, std::max(share, kMinReadShare));
  int start = static_cast<int>(rotation_++ % static_cast<uint32_t>(n));
  for (int k = 0; k < n; k++) {
    int i = start + k < n ? start + k : start + k - n;
    uint32_t slot = static_cast<uint32_t>(events_[i].token & 0xffffffffu);
    uint32_t gen = static_cast<uint32_t>(events_[i].token >> 32);
    uint32_t ev = events_[i].events;
    // A stale token: the slot was closed and freed after the kernel queued
    // this event.
    if (slot >= slots_.size() || slots_[slot].gen != gen) continue;
    Slot& s = slots_[slot];
    if (s.kind == kListener) {
      OnListenerReady(slot);
      continue;
    }
    if (s.kind != kConn || s.state == kClosed) continue;  // closed earlier in this batch
    if (s.state == kConnecting) {
      OnConnectReady(slot);
      continue;
    }
    if (ev & (kEventWritable | kEventError)) {
      if (s.queue != nullptr) OnWritable(slot);
      if (slots_[slot].state == kClosed) continue;
    }
    if (ev & (kEventReadable | kEventHangup | kEventError)) OnReadable(slot);
  }
}

void Loop::OnListenerReady(uint32_t lslot) {
  for (int i = 0; i < config_.accept_budget; i++) {
    InetAddr peer;
    int fd = AcceptNonBlocking(slots_[lslot].fd, &peer);
    if (fd < 0) {
      int err = -fd;
      if (WouldBlock(err)) return;
      // The connection died in the backlog: not the listener's problem.
      if (err == ECONNABORTED || err == EPROTO || err == EPERM || err == EINTR) continue;
      if ((err == EMFILE || err == ENFILE) && spare_fd_ >= 0) {
        // Out of descriptors: a level-triggered listener would report the
        // pending connection forever. Free the spare descriptor, accept the
        // connection and close it at once, then take the spare back.
        ::close(spare_fd_);
        spare_fd_ = -1;
        int dropped = AcceptNonBlocking(slots_[lslot].fd, nullptr);
        if (dropped >= 0) {
          ::close(dropped);
          stats_.rejected++;
        }
        spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (dropped >= 0) continue;
      }
      PauseListener(lslot, kListenerPauseMs);
      return;
    }
    if (stats_.online >= config_.max_load) {
      ::close(fd);
      stats_.rejected++;
      continue;
    }
    bool is_unix = (slots_[lslot].flags & kFlagUnix) != 0;
    uint32_t slot;
    if (OpenAccepted(fd, is_unix, peer, static_cast<int32_t>(lslot), &slot) < 0) stats_.rejected++;
  }
}

int Loop::OpenAccepted(int fd, bool is_unix, const InetAddr& peer, int32_t listener, uint32_t* out_slot) {
  uint32_t slot = NewSlot();  // may reallocate slots_: no Slot& held across it
  Slot& s = slots_[slot];
  s.kind = kConn;
  s.state = kOpen;
  s.fd = fd;
  s.flags = is_unix ? kFlagUnix : 0;
  s.peer.Set(peer);
  if (!is_unix && config_.no_delay) SetNoDelay(fd);
  int r = poller_.Add(fd, TokenOf(slot), kInterestRead);
  if (r < 0) {
    DropUnopened(slot);
    return r;
  }
  s.interest = kInterestRead;
  s.listener = listener;
  SSL_CTX* tls_ctx = listener >= 0 && static_cast<size_t>(listener) < listener_tls_.size() ? listener_tls_[listener] : nullptr;
  if (tls_ctx != nullptr) {
    std::string error;
    s.tls = TlsConn::New(tls_ctx, true, std::string(), &tls_output_, &error);
    if (s.tls == nullptr) {
      DropUnopened(slot);
      return -ENOMEM;
    }
    EnsureTlsBuffers();
  }
  bool blocking = false;
  if (WantBlocking()) {
    blocking = StartBlocking(slot);
    if (!blocking && config_.io_mode == kIoBlocking) {
      // Blocking mode promised a thread per connection: without one (out
      // of threads or memory), the connection is refused, not degraded.
      DropUnopened(slot);
      return -EAGAIN;
    }
  }
  stats_.online++;
  stats_.accepted++;
  if (slots_[slot].tls != nullptr) {
    TlsBegin(slot);  // OPEN once the handshake is done
  } else {
    Record(kRecOpen, slot, listener, blocking ? 1 : 0);
  }
  *out_slot = slot;
  return 0;
}

int Loop::Adopt(int fd, uint32_t* out_slot, uint32_t* out_gen) {
  if (stats_.online >= config_.max_load) return -EMFILE;
  InetAddr peer;
  bool is_unix = false;
  int nfd = AdoptStreamSocket(fd, &peer, &is_unix);
  if (nfd < 0) return nfd;
  uint32_t slot;
  int r = OpenAccepted(nfd, is_unix, peer, kAdoptedListener, &slot);
  if (r < 0) return r;
  *out_slot = slot;
  *out_gen = slots_[slot].gen;
  return 0;
}

void Loop::PauseListener(uint32_t lslot, int ms) {
  Slot& s = slots_[lslot];
  if (s.flags & kFlagPaused) return;
  if (SetInterest(lslot, 0) == 0) {
    s.flags |= kFlagPaused;
    SetTimer(lslot, kTimerClose, NowMs(), ms);
  }
}

void Loop::OnConnectReady(uint32_t slot) {
  Slot& s = slots_[slot];
  int err = SocketError(s.fd);
  if (err < 0) {
    CloseNow(slot, kReasonErrno, -err, false);
    return;
  }
  timers_.Cancel(TimerId(slot, kTimerClose));
  s.state = kOpen;
  int r = SetInterest(slot, kInterestRead);
  if (r < 0) {
    CloseNow(slot, kReasonErrno, -r, false);
    return;
  }
  stats_.online++;
  bool blocking = WantBlocking() && StartBlocking(slot);
  if (slots_[slot].tls != nullptr) {
    TlsBegin(slot);
  } else {
    Record(kRecOpen, slot, -1, blocking ? 1 : 0);
  }
}

void Loop::OnReadable(uint32_t slot) {
  Slot& s = slots_[slot];
  if (!(s.interest & kInterestRead)) {
    // Hangup or error reported while we no longer read (flushing after the
    // peer's FIN): the next write will surface the error, nothing to do.
    return;
  }
  // Input that arrives after a local close (while flushing or lingering) is
  // read only to be discarded, into a scratch buffer: the slab still holds
  // this batch's undelivered data.
  bool deliver = s.state == kOpen;
  // TLS: ciphertext is read aside and decrypted into the slab (TlsInput);
  // after a local close too, so that the peer's close_notify is seen.
  bool decrypt = s.tls != nullptr;
  uint8_t* dst = discard_;
  size_t want = sizeof discard_;
  if (deliver) {
    size_t room = slab_len_ - slab_used_;
    if (room == 0) return;  // the slab is full: level-triggered, read next time
    dst = decrypt ? tls_in_.data() : slab_ + slab_used_;
    want = std::min(room, read_share_);
  } else if (decrypt) {
    dst = tls_in_.data();
    want = std::min(tls_in_.size(), read_share_);
  }
  ssize_t r;
  // recv(), not read(): every connection is a socket, and read() goes through
  // the VFS layer first (about 50 ns more a call for 96 bytes over loopback,
  // measured on this machine's kernel). MSG_DONTWAIT: never block the loop.
  do {
    r = recv(s.fd, dst, want, MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  if (r > 0) {
    stats_.bytes_in += static_cast<uint64_t>(r);
    if (decrypt) {
      TlsInput(slot, dst, static_cast<size_t>(r));
    } else if (deliver) {
      Record(kRecData, slot, static_cast<int32_t>(slab_used_), static_cast<int32_t>(r));
      slab_used_ += static_cast<size_t>(r);
    }
    return;
  }
  if (r < 0) {
    if (WouldBlock(errno)) return;
    CloseNow(slot, kReasonErrno, errno, false);
    return;
  }
  OnPeerFin(slot, EofReason(s));
}

int32_t Loop::EofReason(const Slot& s) const {
  return s.tls != nullptr && !s.tls->peer_closed() ? kReasonTlsTruncated : kReasonEof;
}

void Loop::OnPeerFin(uint32_t slot, int32_t reason) {
  Slot& s = slots_[slot];
  s.flags |= kFlagPeerEof;
  if (s.state == kLinger) {
    CloseNow(slot, s.close_reason, s.close_errno, false);
    return;
  }
  if (s.state == kOpen) {
    s.close_reason = reason;
    s.close_errno = 0;
  }
  if (s.queue == nullptr) {
    CloseNow(slot, s.close_reason, s.close_errno, false);
    return;
  }
  // Data is still queued: the peer only closed its side, so deliver what we
  // accepted before closing ours.
  s.state = kFlushing;
  int r2 = SetInterest(slot, kInterestWrite);
  if (r2 < 0) CloseNow(slot, kReasonErrno, -r2, false);
}

void Loop::OnWritable(uint32_t slot) { DrainQueue(slot); }

void Loop::ExpireTimers() {
  int64_t now = NowMs();
  TlsSweep(now);
  uint32_t id;
  while (timers_.PopDue(now, &id)) {
    uint32_t slot = id / kTimerKinds;
    int kind = static_cast<int>(id % kTimerKinds);
    if (slot < slots_.size()) OnTimer(slot, kind);
  }
}

void Loop::OnTimer(uint32_t slot, int kind) {
  Slot& s = slots_[slot];
  if (s.kind == kListener) {
    if (s.flags & kFlagPaused) {
      s.flags &= static_cast<uint8_t>(~kFlagPaused);
      SetInterest(slot, kInterestRead);
    }
    return;
  }
  if (s.kind != kConn || s.state == kClosed) return;
  switch (kind) {
    case kTimerRead:
      if (s.flags & kFlagTlsPending) {
        TlsFail(slot, kTlsErrTimeout, "TLS handshake timeout");
      } else if (s.state == kOpen) {
        CloseNow(slot, kReasonReadTimeout, 0, false);
      }
      break;
    case kTimerWrite:
      // A write deadline only matters while something is waiting to go out.
      if (s.queue != nullptr) CloseNow(slot, kReasonWriteTimeout, 0, true);
      break;
    case kTimerClose:
      if (s.state == kConnecting) {
        CloseNow(slot, kReasonErrno, ETIMEDOUT, false);
      } else if (s.state == kFlushing) {
        // The peer did not take our last bytes in time: they are lost, and
        // onClose must say so rather than report a clean close.
        CloseNow(slot, kReasonWriteTimeout, 0, true);
      } else if (s.state == kLinger) {
        // Our data and FIN went out; the peer just never closed its side.
        CloseNow(slot, s.close_reason, s.close_errno, false);
      }
      break;
  }
}

// ---------------------------------------------------------------------------
// Writing

void Loop::Write(uint32_t slot, iovec* iov, size_t count) {
  if (slots_[slot].tls != nullptr) {
    TlsWrite(slot, iov, count);  // encrypted, then WriteWire
    return;
  }
  WriteWire(slot, iov, count);
}

void Loop::WriteWire(uint32_t slot, iovec* iov, size_t count) {
  Slot& s = slots_[slot];
  if (s.state != kOpen && s.state != kFlushing) return;
  size_t i = 0;
  // Order: anything already queued goes first, and the queue drains on
  // writable; only an empty queue lets us write directly.
  while (s.queue == nullptr && i < count) {
    int n = static_cast<int>(std::min<size_t>(count - i, kIovBatch));
    size_t want = 0;
    for (int k = 0; k < n; k++) want += iov[i + static_cast<size_t>(k)].iov_len;
    ssize_t r = SendVector(s.fd, iov + i, n);
    if (r < 0) {
      if (WouldBlock(static_cast<int>(-r))) break;
      CloseNow(slot, kReasonErrno, static_cast<int32_t>(-r), false);
      return;
    }
    stats_.bytes_out += static_cast<uint64_t>(r);
    // Step past what was sent; iov is our scratch copy, so trim it in place.
    size_t sent = static_cast<size_t>(r);
    while (sent > 0 && sent >= iov[i].iov_len) {
      sent -= iov[i].iov_len;
      i++;
    }
    if (sent > 0) {
      iov[i].iov_base = static_cast<uint8_t*>(iov[i].iov_base) + sent;
      iov[i].iov_len -= sent;
    }
    if (static_cast<size_t>(r) < want) break;  // the kernel buffer is full
  }
  if (i == count) return;
  bool was_empty = s.queue == nullptr;
  if (!Enqueue(slot, iov + i, count - i)) return;
  if (was_empty) {
    int r = SetInterest(slot, slots_[slot].interest | kInterestWrite);
    if (r < 0) {
      CloseNow(slot, kReasonErrno, -r, false);
      return;
    }
  }
  Slot& q = slots_[slot];
  if (config_.write_high_water > 0 && QueuedBytes(q) > config_.write_high_water && q.state == kOpen &&
      !(q.flags & kFlagReadPaused)) {
    PauseReading(slot);
  }
}

void Loop::PauseReading(uint32_t slot) {
  Slot& s = slots_[slot];
  if (s.reader != nullptr) {
    // The reader keeps the bytes it has read and waits for them to be taken
    // (Readers::Take leaves a paused reader's bytes alone): the kernel's
    // receive buffer fills and TCP flow control slows the peer down.
    readers_.SetPaused(s.reader, true);
  } else if (!(s.flags & kFlagBlocking)) {
    int r = SetInterest(slot, s.interest & ~kInterestRead);
    if (r < 0) {
      CloseNow(slot, kReasonErrno, -r, false);
      return;
    }
  }
  s.flags |= kFlagReadPaused;
  stats_.read_paused++;
}

void Loop::ResumeReading(uint32_t slot) {
  Slot& s = slots_[slot];
  s.flags &= static_cast<uint8_t>(~kFlagReadPaused);
  stats_.read_paused--;
  if (s.reader != nullptr) {
    readers_.SetPaused(s.reader, false);
  } else if (!(s.flags & kFlagBlocking) && (s.state == kOpen || s.state == kFlushing)) {
    // While flushing, reads are discarded but still watched, so that a reset
    // is seen (LocalClose); lingering set its own interest already.
    int r = SetInterest(slot, s.interest | kInterestRead);
    if (r < 0) {
      CloseNow(slot, kReasonErrno, -r, false);
      return;
    }
  }
  // Decrypted input held back while paused: no socket event will bring it.
  if (s.tls != nullptr && s.state == kOpen && s.tls->HasInput()) tls_backlog_.push_back(slot);
}

bool Loop::Enqueue(uint32_t slot, const iovec* iov, size_t count) {
  Slot& s = slots_[slot];
  size_t total = 0;
  for (size_t k = 0; k < count; k++) total += iov[k].iov_len;
  if (QueuedBytes(s) + total > config_.max_write_buffer) {
    // Stated policy: a connection whose peer cannot keep up past the limit is
    // closed (OverflowError); its queue cannot be delivered and is dropped.
    CloseNow(slot, kReasonOverflow, 0, true);
    return false;
  }
  if (config_.memory_budget > 0) {
    double held = meter_ != nullptr ? meter_[kMeterHeld] : 0;
    if (static_cast<double>(stats_.queued + total) + held > static_cast<double>(config_.memory_budget)) {
      // The server as a whole is out of room: the connection that asks for
      // more fails (BudgetError), the others keep what they have.
      CloseNow(slot, kReasonBudget, 0, true);
      return false;
    }
  }
  if (total == 0) return true;  // nothing to keep: no queue is made for it
  if (s.queue == nullptr) {
    // The first queued bytes of this connection (or the first since its
    // queue last emptied): the queue exists from here until it drains.
    s.queue = static_cast<WriteQueue*>(std::malloc(sizeof(WriteQueue)));
    if (s.queue == nullptr) {
      CloseNow(slot, kReasonErrno, ENOMEM, true);
      return false;
    }
    s.queue->head = s.queue->tail = nullptr;
    s.queue->bytes = 0;
  }
  WriteQueue& q = *s.queue;
  for (size_t k = 0; k < count; k++) {
    const uint8_t* src = static_cast<const uint8_t*>(iov[k].iov_base);
    size_t len = iov[k].iov_len;
    while (len > 0) {
      Chunk* t = q.tail;
      if (t == nullptr || t->end == t->cap) {
        size_t cap = std::max(kChunkMin, len);
        auto* c = static_cast<Chunk*>(std::malloc(sizeof(Chunk) + cap));
        if (c == nullptr) {
          if (q.head == nullptr) {  // made for these bytes: a queue that exists holds a chunk
            std::free(s.queue);
            s.queue = nullptr;
          }
          CloseNow(slot, kReasonErrno, ENOMEM, true);
          return false;
        }
        c->next = nullptr;
        c->cap = cap;
        c->start = c->end = 0;
        if (t == nullptr) {
          q.head = c;
        } else {
          t->next = c;
        }
        q.tail = t = c;
      }
      size_t n = std::min(len, t->cap - t->end);
      std::memcpy(t->data() + t->end, src, n);
      t->end += n;
      src += n;
      len -= n;
    }
  }
  q.bytes += total;
  stats_.queued += total;
  UpdateMeter();
  return true;
}

void Loop::DrainQueue(uint32_t slot) {
  Slot& s = slots_[slot];
  // s.queue is read afresh on each turn: ResumeReading may close the
  // connection, and the queue goes away with its last chunk.
  while (s.queue != nullptr) {
    WriteQueue& q = *s.queue;
    iovec iov[kIovBatch];
    int n = 0;
    size_t want = 0;
    for (Chunk* c = q.head; c != nullptr && n < kIovBatch; c = c->next) {
      iov[n].iov_base = c->data() + c->start;
      iov[n].iov_len = c->end - c->start;
      want += iov[n].iov_len;
      n++;
    }
    ssize_t r = SendVector(s.fd, iov, n);
    if (r < 0) {
      if (WouldBlock(static_cast<int>(-r))) return;
      CloseNow(slot, kReasonErrno, static_cast<int32_t>(-r), false);
      return;
    }
    size_t sent = static_cast<size_t>(r);
    stats_.bytes_out += sent;
    q.bytes -= sent;
    stats_.queued -= sent;
    UpdateMeter();
    while (sent > 0) {
      Chunk* c = q.head;
      size_t avail = c->end - c->start;
      if (sent < avail) {
        c->start += sent;
        break;
      }
      sent -= avail;
      q.head = c->next;
      std::free(c);
    }
    if (q.head == nullptr) {
      std::free(s.queue);  // idle again: the slot holds no queue
      s.queue = nullptr;
    }
    if ((s.flags & kFlagReadPaused) && QueuedBytes(s) <= config_.write_low_water) {
      ResumeReading(slot);
      if (s.state == kClosed || s.state == kStopping) return;
    }
    if (static_cast<size_t>(r) < want) return;  // the kernel buffer is full
  }
  // The queue is empty.
  if (s.state == kFlushing) {
    FlushDone(slot);
    return;
  }
  int r = SetInterest(slot, s.interest & ~kInterestWrite);
  if (r < 0) {
    CloseNow(slot, kReasonErrno, -r, false);
    return;
  }
  Record(kRecDrain, slot, 0, 0);
}

void Loop::FreeQueue(Slot& s) {
  if (s.queue != nullptr) {
    Chunk* c = s.queue->head;
    while (c != nullptr) {
      Chunk* next = c->next;
      std::free(c);
      c = next;
    }
    stats_.queued -= s.queue->bytes;
    std::free(s.queue);
    s.queue = nullptr;
    UpdateMeter();
  }
  if (s.flags & kFlagReadPaused) {
    // The connection is closing: it is no longer paused, it is going away.
    s.flags &= static_cast<uint8_t>(~kFlagReadPaused);
    stats_.read_paused--;
  }
}

void Loop::Apply(const int32_t* cmds, size_t count, const uint8_t* out_slab, size_t out_len, const iovec* refs,
                 size_t ref_count) {
  // Pass 1: deadlines take effect at once; writes and closes are grouped per
  // connection, in order, so that each connection gets one corked sendmsg.
  if (group_of_slot_.size() < slots_.size()) group_of_slot_.resize(slots_.size(), -1);
  int64_t now = NowMs();
  for (size_t i = 0; i < count; i++) {
    const int32_t* c = cmds + i * kRecordInts;
    int32_t op = c[0];
    uint32_t slot = static_cast<uint32_t>(c[1]);
    uint32_t gen = static_cast<uint32_t>(c[2]);
    if (Live(slot, gen) == nullptr) continue;  // closed meanwhile: its CLOSE record tells JS
    if (op == kCmdDeadline) {
      int kind = c[3] == 0 ? kTimerRead : kTimerWrite;
      if (c[4] < 0) {
        timers_.Cancel(TimerId(slot, kind));
      } else {
        SetTimer(slot, kind, now, c[4]);
      }
      continue;
    }
    Op o;
    o.next = -1;
    o.close_mode = -1;
    o.close_timeout_ms = 0;
    o.iov.iov_base = nullptr;
    o.iov.iov_len = 0;
    if (op == kCmdWrite) {
      size_t off = static_cast<uint32_t>(c[3]);
      size_t len = static_cast<uint32_t>(c[4]);
      if (off > out_len || len > out_len - off || len == 0) continue;  // JS validated; never trust it blindly
      o.iov.iov_base = const_cast<uint8_t*>(out_slab + off);
      o.iov.iov_len = len;
    } else if (op == kCmdWriteRef) {
      size_t idx = static_cast<uint32_t>(c[3]);
      if (idx >= ref_count || refs[idx].iov_len == 0) continue;
      // A skip mark (topics' 'skip' policy for slow subscribers): a whole
      // published frame is dropped, not queued, for a connection already
      // holding more than that many bytes. Judged on the queue as it was
      // before this flush, so every write of one flush sees the same state.
      if (c[4] > 0 && QueuedBytes(slots_[slot]) > static_cast<uint32_t>(c[4])) {
        stats_.writes_skipped++;
        continue;
      }
      o.iov = refs[idx];
    } else if (op == kCmdClose) {
      o.close_mode = c[3] == 1 ? 1 : 0;
      o.close_timeout_ms = c[4];
    } else {
      continue;
    }
    int32_t oi = static_cast<int32_t>(ops_.size());
    ops_.push_back(o);
    int32_t g = group_of_slot_[slot];
    if (g < 0) {
      group_of_slot_[slot] = static_cast<int32_t>(groups_.size());
      groups_.push_back(Group{slot, gen, oi, oi});
    } else {
      ops_[static_cast<size_t>(groups_[g].last)].next = oi;
      groups_[g].last = oi;
    }
  }
  // Pass 2: per connection, the writes in one sendmsg, then the close.
  for (const Group& g : groups_) {
    group_of_slot_[g.slot] = -1;
    iov_scratch_.clear();
    int32_t close_mode = -1;
    int32_t close_timeout_ms = 0;
    for (int32_t oi = g.first; oi >= 0; oi = ops_[static_cast<size_t>(oi)].next) {
      const Op& o = ops_[static_cast<size_t>(oi)];
      if (o.close_mode >= 0) {
        // close() then closeAndClean() in one tick: the abortive one wins.
        close_mode = std::max(close_mode, o.close_mode);
        if (o.close_timeout_ms > 0) close_timeout_ms = o.close_timeout_ms;
      } else if (close_mode < 0) {
        iov_scratch_.push_back(o.iov);  // JS refuses writes after a close anyway
      }
    }
    if (close_mode >= 0 && Live(g.slot, g.gen) != nullptr && slots_[g.slot].reader != nullptr &&
        slots_[g.slot].state == kOpen) {
      // Before the last bytes go out: a peer that answers them with its FIN
      // must find the close already known to the reader (NetClosedError, not
      // EOF), exactly as if the close had been applied first.
      StopReaderGracefully(g.slot);
    }
    if (!iov_scratch_.empty() && Live(g.slot, g.gen) != nullptr) {
      Write(g.slot, iov_scratch_.data(), iov_scratch_.size());
    }
    if (close_mode >= 0 && Live(g.slot, g.gen) != nullptr) LocalClose(g.slot, close_mode == 1, close_timeout_ms);
  }
  groups_.clear();
  ops_.clear();
}

// ---------------------------------------------------------------------------
// Closing

void Loop::LocalClose(uint32_t slot, bool abortive, int32_t timeout_ms) {
  Slot& s = slots_[slot];
  if (timeout_ms <= 0) timeout_ms = config_.close_timeout_ms;
  if (abortive || s.state == kConnecting) {
    CloseNow(slot, kReasonLocal, 0, abortive);
    return;
  }
  if (s.state == kFlushing && !timers_.Has(TimerId(slot, kTimerClose))) {
    // Flushing after the peer's FIN (which set no timer): a close() now must
    // still be bounded by close_timeout, like any graceful close.
    SetTimer(slot, kTimerClose, NowMs(), timeout_ms);
    return;
  }
  if (s.state != kOpen) return;  // already closing gracefully
  if (s.tls != nullptr) {
    TlsCloseNotify(slot);  // queued behind the data: the peer can tell our close from a truncation
    if (s.state != kOpen) return;
  }
  s.close_reason = kReasonLocal;
  s.close_errno = 0;
  // The reader learns of the close now, as a blocking reader in Go learns it
  // from its failed read: whatever it reads from here on is discarded, and
  // its end is reported as this close.
  if (s.reader != nullptr) StopReaderGracefully(slot);
  SetTimer(slot, kTimerClose, NowMs(), timeout_ms);
  if (s.queue == nullptr) {
    FlushDone(slot);
    return;
  }
  // Reads during the flush are discarded; keep reading so a reset is seen.
  s.state = kFlushing;
}

void Loop::FlushDone(uint32_t slot) {
  // A paused reader must read again to find the peer's FIN.
  if (slots_[slot].flags & kFlagReadPaused) {
    ResumeReading(slot);
    if (slots_[slot].state == kClosed) return;
  }
  Slot& s = slots_[slot];
  if (s.flags & kFlagPeerEof) {
    // The peer has closed its side already: nothing to wait for.
    CloseNow(slot, s.close_reason, s.close_errno, false);
    return;
  }
  StartLinger(slot);
}

void Loop::StartLinger(uint32_t slot) {
  // Send our FIN but keep reading until the peer's: closing with unread input
  // would make the kernel send RST, and the peer could lose the last bytes we
  // wrote before it read them.
  Slot& s = slots_[slot];
  if (shutdown(s.fd, SHUT_WR) < 0) {
    CloseNow(slot, s.close_reason, s.close_errno, false);
    return;
  }
  s.state = kLinger;
  // A reader thread reads (and discards) until the peer's FIN itself.
  uint32_t interest = s.reader != nullptr ? 0u : static_cast<uint32_t>(kInterestRead);
  if (SetInterest(slot, interest) < 0) CloseNow(slot, s.close_reason, s.close_errno, false);
}

void Loop::CloseNow(uint32_t slot, int32_t reason, int32_t err, bool abortive) {
  Slot& s = slots_[slot];
  if (s.reader != nullptr) {
    StopReader(slot, reason, err, abortive);
    return;
  }
  bool was_open = s.state != kConnecting;
  bool tls_pending = was_open && (s.flags & kFlagTlsPending) != 0;
  if (s.fd >= 0) {
    if (s.interest != 0 || !(s.flags & kFlagBlocking)) poller_.Remove(s.fd, s.interest);
    if (abortive) SetAbortiveClose(s.fd);
    ::close(s.fd);
    s.fd = -1;
  }
  s.interest = 0;
  FreeQueue(s);
  CancelTimers(slot);
  s.state = kClosed;
  if (tls_pending) {
    stats_.online--;
    RecordTlsFail(slot, reason, err);
  } else if (was_open) {
    stats_.online--;
    stats_.closed++;
    Record(kRecClose, slot, reason, err);
  } else {
    Record(kRecDialFail, slot, reason == kReasonErrno ? err : ECANCELED, 0);
  }
  closed_slots_.push_back(slot);
}

void Loop::CloseListener(uint32_t slot) {
  Slot& s = slots_[slot];
  if (s.fd >= 0) {
    poller_.Remove(s.fd, s.interest);
    ::close(s.fd);
    s.fd = -1;
  }
  timers_.Cancel(TimerId(slot, kTimerClose));
  if (slot < listener_tls_.size() && listener_tls_[slot] != nullptr) {
    FreeTlsContext(listener_tls_[slot]);
    listener_tls_[slot] = nullptr;
  }
  if (slot < unix_paths_.size() && !unix_paths_[slot].empty()) {
    unlink(unix_paths_[slot].c_str());
    unix_paths_[slot].clear();
  }
  s.kind = kFree;
  s.gen++;
  free_slots_.push_back(slot);
}

void Loop::CloseListeners() {
  for (uint32_t l : listeners_) {
    if (slots_[l].kind == kListener) CloseListener(l);
  }
  listeners_.clear();
}

void Loop::Stop() {
  CloseListeners();
  for (uint32_t i = 0; i < slots_.size(); i++) {
    Slot& s = slots_[i];
    if (s.kind != kConn || s.state == kClosed) continue;
    if (s.tls != nullptr && s.state == kOpen) {
      TlsCloseNotify(i);  // a clean TLS end, if the kernel takes it now
      if (slots_[i].state == kClosed || slots_[i].state == kStopping) continue;
    }
    if (slots_[i].queue != nullptr && slots_[i].state != kConnecting) DrainQueue(i);  // a last try, never blocking
    if (slots_[i].state == kClosed || slots_[i].state == kStopping) continue;
    CloseNow(i, kReasonStop, 0, false);
  }
  // Connections with reader threads are closing now: wait for every thread
  // to exit (each was woken by a shutdown), then close them for good.
  if (readers_.alive() > 0) {
    readers_.WaitAll();
    CollectReaders();
  }
}

// ---------------------------------------------------------------------------
// Blocking mode: reader threads

bool Loop::WantBlocking() const {
  if (config_.io_mode == kIoBlocking) return true;
  return config_.io_mode == kIoMixed && stats_.blocking_online < config_.max_blocking_online;
}

void Loop::StopReaderGracefully(uint32_t slot) {
  // A FIN that is already here, unread, was sent before the peer could know
  // of our close: the reader is left to find it and report EOF. That is what
  // "the peer sent its close frame and FIN at once" looks like from here;
  // the reader's own peek covers a FIN that came with the same read.
  Slot& s = slots_[slot];
  if (PeerFinPending(s.fd)) return;
  readers_.Stop(s.reader, kReasonLocal);
}

bool Loop::StartBlocking(uint32_t slot) {
  Slot& s = slots_[slot];
  // The poller stops reading it; it comes back only to wait for write room.
  if (s.interest != 0) poller_.Remove(s.fd, s.interest);
  s.interest = 0;
  s.flags |= kFlagBlocking;
  int err = 0;
  Reader* r = readers_.Start(s.fd, slot, s.gen, &err);
  if (r == nullptr) {
    // No thread: the poller keeps the connection (mixed mode), or the caller
    // refuses it (blocking mode).
    s.flags &= static_cast<uint8_t>(~kFlagBlocking);
    if (poller_.Add(s.fd, TokenOf(slot), kInterestRead) == 0) s.interest = kInterestRead;
    return false;
  }
  s.reader = r;
  stats_.blocking_online++;
  stats_.readers_started++;
  return true;
}

void Loop::StopReader(uint32_t slot, int32_t reason, int32_t err, bool abortive) {
  Slot& s = slots_[slot];
  if (s.state == kStopping) {
    if (abortive) {
      s.flags |= kFlagAbortive;
      SetAbortiveClose(s.fd);
    }
    return;
  }
  if (s.interest != 0) poller_.Remove(s.fd, s.interest);
  s.interest = 0;
  FreeQueue(s);
  CancelTimers(slot);
  s.close_reason = reason;
  s.close_errno = err;
  if (abortive) {
    s.flags |= kFlagAbortive;
    SetAbortiveClose(s.fd);
  }
  s.state = kStopping;
  readers_.Stop(s.reader, reason);
  // The blocked recv() returns 0 once the read side is shut down; the write
  // side is left alone so that an abortive close still sends RST, not FIN.
  shutdown(s.fd, SHUT_RD);
}

void Loop::OnReaderDone(const ReaderEvent& e) {
  if (e.slot >= slots_.size()) return;
  Slot& s = slots_[e.slot];
  if (s.gen != e.gen || s.reader == nullptr) return;
  s.reader = nullptr;  // joined: from here on the loop alone owns the descriptor
  stats_.blocking_online--;
  uint32_t slot = e.slot;
  if (e.stopped_by == 0 && s.state != kStopping) {
    // The reader saw the transport end before any close of ours.
    if (e.err != 0) {
      CloseNow(slot, kReasonErrno, e.err, false);
      return;
    }
    s.flags |= kFlagPeerEof;
    // A close requested after the FIN was read still reports the FIN.
    s.close_reason = EofReason(s);
    s.close_errno = 0;
    if (s.state == kLinger || s.queue == nullptr) {
      CloseNow(slot, s.close_reason, 0, false);
      return;
    }
    // Data is still queued: deliver it, then close (like the poller does).
    if (s.state == kOpen) s.state = kFlushing;
    return;
  }
  if (s.state == kStopping) {
    // Closed by us (error, timeout, stop, abortive close): the reason is ours,
    // unless the reader had already seen the connection fail.
    if (e.stopped_by == 0 && e.err != 0) {
      CloseNow(slot, kReasonErrno, e.err, (s.flags & kFlagAbortive) != 0);
    } else if (e.stopped_by == 0 && s.close_reason != kReasonOverflow && s.close_reason != kReasonWriteTimeout &&
               s.close_reason != kReasonErrno && s.close_reason != kReasonBudget) {
      // The reader ended at EOF before it learned of our close. Not when the
      // writer failed with a socket error: the kernel reports a reset once,
      // and when the write consumed it the reader's recv() then returns 0;
      // the reset is what happened.
      CloseNow(slot, EofReason(s), 0, (s.flags & kFlagAbortive) != 0);
    } else {
      CloseNow(slot, s.close_reason, s.close_errno, (s.flags & kFlagAbortive) != 0);
    }
    return;
  }
  // A graceful local close the reader knew of; it ended at the peer's FIN
  // (or a failed read).
  if (e.err != 0 && s.queue != nullptr) {
    CloseNow(slot, kReasonErrno, e.err, false);  // our last bytes are lost: not silent
    return;
  }
  s.flags |= kFlagPeerEof;
  if (s.state == kLinger || s.queue == nullptr) CloseNow(slot, s.close_reason, s.close_errno, false);
  // else: flushing; FlushDone closes once the queue is out.
}

bool Loop::CollectReaders() {
  slab_used_ = 0;
  if (!tls_backlog_.empty()) ProcessTlsBacklog();
  reader_events_.clear();
  // With TLS in use, the readers' bytes land aside: plain ones are copied
  // into the slab, ciphertext is decrypted into it after them.
  bool aside = !tls_in_.empty();
  size_t base = slab_used_;
  uint8_t* dst = aside ? tls_in_.data() : slab_ + slab_used_;
  bool more = readers_.Take(dst, slab_len_ - slab_used_, &reader_events_);
  bool any_tls = false;
  for (const ReaderEvent& e : reader_events_) {
    if (e.done) {
      OnReaderDone(e);
      continue;
    }
    Slot* s = Live(e.slot, e.gen);
    if (s == nullptr) continue;
    stats_.bytes_in += e.len;
    if (s->tls != nullptr) {
      any_tls = true;
      continue;
    }
    size_t off = base + e.offset;  // where Take() put it
    if (aside) {
      off = slab_used_;
      std::memcpy(slab_ + off, dst + e.offset, e.len);
    }
    Record(kRecData, e.slot, static_cast<int32_t>(off), static_cast<int32_t>(e.len));
    slab_used_ = off + e.len;
  }
  if (any_tls) {
    for (const ReaderEvent& e : reader_events_) {
      if (e.done) continue;
      Slot* s = Live(e.slot, e.gen);
      if (s == nullptr || s->tls == nullptr || s->state == kStopping) continue;
      // Also while closing: the plaintext is discarded, but the peer's
      // close_notify must be seen, or its FIN would read as a truncation.
      TlsInput(e.slot, dst + e.offset, e.len);
    }
  }
  reader_events_.clear();
  return more;
}

// ---------------------------------------------------------------------------
// Queries

int64_t Loop::Queued(uint32_t slot, uint32_t gen) const {
  const Slot* s = Live(slot, gen);
  return s == nullptr ? -1 : static_cast<int64_t>(QueuedBytes(*s));
}

int Loop::Address(uint32_t slot, uint32_t gen, bool peer, AddressInfo* out) const {
  if (slot >= slots_.size()) return -EBADF;
  const Slot& s = slots_[slot];
  if (s.kind != kConn || s.gen != gen) return -EBADF;
  InetAddr kept;
  if (peer && s.peer.Get(&kept)) {
    int port = FormatInetAddr(&kept.sa, out->host, sizeof out->host);
    if (port < 0) return port;
    out->family = kept.sa.sa_family;
    out->port = port;
    return 0;
  }
  if (s.fd < 0) return -EBADF;
  int r = SocketAddress(s.fd, peer, out->host, sizeof out->host, &out->port);
  if (r < 0) return r;
  out->family = r;
  return 0;
}

}  // namespace netloop
