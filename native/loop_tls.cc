// The loop's TLS glue: where ciphertext meets the slot table. tls.cc knows
// OpenSSL and nothing of sockets; this file knows slots, records and queues
// and calls TlsConn. A TLS connection is a plain one underneath (same
// descriptor, queue, deadlines, reader thread), with three differences:
// - its OPEN record waits for the handshake (kFlagTlsPending meanwhile; the
//   handshake timeout is the read timer, which JS cannot set on a connection
//   it has not seen), and a failed handshake ends with kRecTlsFail instead;
// - what it reads goes through TlsInput/TlsPump into the slab, in the same
//   batch as plain connections' bytes;
// - what JS writes goes through TlsWrite, once per batch, into WriteWire.
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "loop.h"

namespace netloop {

namespace {

// Small writes of one batch are gathered up to one full TLS record (16 KiB
// of plaintext) and encrypted with one SSL_write: one record header, one MAC
// and one cipher call for many WebSocket frames.
constexpr size_t kTlsRecord = 16 * 1024;
// A connection that did no TLS work for a whole sweep period (one to two of
// them in all) gives OpenSSL's record buffers back.
constexpr int64_t kTlsIdleSweepMs = 1000;
// Ciphertext is handed to the socket at least every this many bytes, so a
// large write never holds its whole encrypted copy in OpenSSL's buffer
// besides the write queue.
constexpr size_t kTlsOutputFlush = 64 * 1024;

}  // namespace

void Loop::EnsureTlsBuffers() {
  if (tls_in_.empty()) tls_in_.resize(slab_len_);
  if (tls_plain_.capacity() < kTlsRecord) tls_plain_.reserve(kTlsRecord);
  // A full record with its header, tag and padding fits without growing.
  if (tls_output_.bytes.capacity() < 2 * kTlsRecord) tls_output_.bytes.reserve(2 * kTlsRecord);
}

int Loop::SetListenerTls(int id, SSL_CTX* ctx) {
  if (id < 0 || static_cast<size_t>(id) >= slots_.size() || slots_[id].kind != kListener) return -EBADF;
  if (listener_tls_.size() <= static_cast<size_t>(id)) listener_tls_.resize(static_cast<size_t>(id) + 1, nullptr);
  if (ctx != nullptr) RefTlsContext(ctx);
  if (listener_tls_[id] != nullptr) FreeTlsContext(listener_tls_[id]);  // live handshakes hold their own reference
  listener_tls_[id] = ctx;
  return 0;
}

const TlsConn* Loop::TlsOf(uint32_t slot, uint32_t gen) const {
  if (slot >= slots_.size()) return nullptr;
  const Slot& s = slots_[slot];
  if (s.kind != kConn || s.gen != gen) return nullptr;
  return s.tls;
}

void Loop::TlsBegin(uint32_t slot) {
  Slot& s = slots_[slot];
  s.flags |= kFlagTlsPending;
  SetTimer(slot, kTimerRead, NowMs(), config_.tls_handshake_timeout_ms);
  // A client speaks first (its ClientHello); a server waits for it.
  TlsPump(slot);
}

void Loop::TlsInput(uint32_t slot, const uint8_t* data, size_t len) {
  TlsConn* t = slots_[slot].tls;  // freed at the end of the iteration at the earliest, even if the pump closes
  t->Lend(data, len);  // read in place: data is this iteration's read buffer
  TlsPump(slot);
  t->KeepInput();
}

void Loop::TlsTouch(uint32_t slot) {
  TlsConn* t = slots_[slot].tls;
  if (t->used_period == tls_period_) return;
  t->used_period = tls_period_;
  if (tls_used_.empty() && tls_used_before_.empty()) tls_sweep_due_ = NowMs() + kTlsIdleSweepMs;
  tls_used_.push_back(TokenOf(slot));
}

void Loop::TlsSweep(int64_t now) {
  if (now < tls_sweep_due_ || (tls_used_.empty() && tls_used_before_.empty())) return;
  for (uint64_t token : tls_used_before_) {
    uint32_t slot = static_cast<uint32_t>(token & 0xffffffffu);
    const Slot* s = Live(slot, static_cast<uint32_t>(token >> 32));
    if (s == nullptr || s->tls == nullptr || s->tls->used_period == tls_period_) continue;  // gone, or busy still
    s->tls->ReleaseBuffers();
  }
  tls_used_before_.swap(tls_used_);
  tls_used_.clear();
  tls_period_++;
  tls_sweep_due_ = now + kTlsIdleSweepMs;
}

void Loop::TlsPump(uint32_t slot) {
  Slot& s = slots_[slot];
  TlsConn* t = s.tls;
  TlsTouch(slot);
  if (!t->established()) {
    int h = t->Handshake();
    TlsFlushOutput(slot);  // our flight, or the alert that explains a failure
    if (s.state == kClosed || s.state == kStopping) return;
    if (h < 0) {
      CloseNow(slot, kReasonTls, t->error(), false);
      return;
    }
    if (h == 0) {
      // Still not done after all this input: counted only now, so that
      // application data sent right behind a client's Finished (in the
      // same read) is not mistaken for a long handshake.
      if (t->fed() > config_.tls_max_handshake_bytes) TlsFail(slot, kTlsErrTooLarge, "TLS handshake larger than allowed");
      return;
    }
    TlsEstablished(slot);
    if (s.state == kClosed || s.state == kStopping) return;
  }
  bool merged_tail = false;  // the last record is this connection's DATA, ending at slab_used_
  for (;;) {
    if (s.flags & kFlagReadPaused) {
      TlsFlushOutput(slot);  // a reading may have produced an answer (a key update)
      return;  // ResumeReading puts it back in the backlog
    }
    bool deliver = s.state == kOpen;
    uint8_t* dst = discard_;
    size_t cap = sizeof discard_;
    if (deliver) {
      cap = slab_len_ - slab_used_;
      if (cap == 0) {
        // The slab is full: the rest waits for the next iteration, which the
        // host runs soon (has_tls_backlog), since no socket event may come.
        tls_backlog_.push_back(slot);
        TlsFlushOutput(slot);
        return;
      }
      dst = slab_ + slab_used_;
    }
    long n = t->Read(dst, cap);
    if (n > 0) {
      if (!deliver) continue;  // closing: input after our close is discarded
      if (merged_tail) {
        records_[records_.size() - 1] += static_cast<int32_t>(n);  // one DATA record per connection and pump
      } else {
        Record(kRecData, slot, static_cast<int32_t>(slab_used_), static_cast<int32_t>(n));
        merged_tail = true;
      }
      slab_used_ += static_cast<size_t>(n);
      continue;
    }
    // Post-handshake messages (TLS 1.3 key updates) may need an answer.
    TlsFlushOutput(slot);
    if (s.state == kClosed || s.state == kStopping) return;
    if (n == TlsConn::kNeedInput) return;
    if (n == TlsConn::kClosed) {
      OnPeerFin(slot, kReasonEof);  // close_notify: TLS's clean end of stream
      return;
    }
    CloseNow(slot, kReasonTls, t->error(), false);
    return;
  }
}

void Loop::TlsEstablished(uint32_t slot) {
  Slot& s = slots_[slot];
  s.flags &= static_cast<uint8_t>(~kFlagTlsPending);
  timers_.Cancel(TimerId(slot, kTimerRead));
  stats_.tls_handshakes++;
  Record(kRecOpen, slot, s.listener, s.reader != nullptr ? 1 : 0);
}

void Loop::TlsFlushOutput(uint32_t slot) {
  TlsConn* t = slots_[slot].tls;
  const uint8_t* p = nullptr;
  size_t n = t->Output(&p);
  if (n == 0) return;
  iovec v{const_cast<uint8_t*>(p), n};
  WriteWire(slot, &v, 1);  // sends it, or copies the rest into the queue
  t->ConsumeOutput();
}

void Loop::TlsWrite(uint32_t slot, const iovec* iov, size_t count) {
  Slot& s = slots_[slot];
  TlsConn* t = s.tls;
  if ((s.state != kOpen && s.state != kFlushing) || !t->established() || t->shutdown_sent()) return;
  TlsTouch(slot);
  tls_plain_.clear();
  const uint8_t* unused = nullptr;
  for (size_t i = 0; i <= count; i++) {
    const uint8_t* p = i < count ? static_cast<const uint8_t*>(iov[i].iov_base) : nullptr;
    size_t len = i < count ? iov[i].iov_len : 0;
    // Gathered small writes go out when the next one would not fit in the
    // record, before a large one, and at the end.
    if (!tls_plain_.empty() && (i == count || tls_plain_.size() + len > kTlsRecord)) {
      if (!t->Write(tls_plain_.data(), tls_plain_.size())) {
        CloseNow(slot, kReasonTls, t->error(), false);
        return;
      }
      tls_plain_.clear();
    }
    if (i == count) break;
    if (len < kTlsRecord) {
      // Alone in its record (nothing gathered, the next one does not fit):
      // encrypted from where it is, without the gathering copy.
      bool alone = tls_plain_.empty() && (i + 1 == count || len + iov[i + 1].iov_len > kTlsRecord);
      if (!alone) {
        tls_plain_.insert(tls_plain_.end(), p, p + len);
        continue;
      }
    }
    while (len > 0) {
      size_t n = std::min(len, kTlsOutputFlush);
      if (!t->Write(p, n)) {
        CloseNow(slot, kReasonTls, t->error(), false);
        return;
      }
      p += n;
      len -= n;
      if (t->Output(&unused) >= kTlsOutputFlush) {
        TlsFlushOutput(slot);
        if (s.state != kOpen && s.state != kFlushing) return;
      }
    }
  }
  TlsFlushOutput(slot);
}

void Loop::TlsFail(uint32_t slot, int32_t code, const char* text) {
  slots_[slot].tls->SetError(code, text);
  CloseNow(slot, kReasonTls, code, false);
}

void Loop::TlsCloseNotify(uint32_t slot) {
  TlsConn* t = slots_[slot].tls;
  if (!t->established() || t->shutdown_sent()) return;
  TlsTouch(slot);
  t->Shutdown();
  TlsFlushOutput(slot);
}

void Loop::RecordTlsFail(uint32_t slot, int32_t reason, int32_t err) {
  const Slot& s = slots_[slot];
  stats_.tls_failed++;
  int32_t code = kTlsErrEof;
  if (reason == kReasonTls) {
    code = err;
    err = 0;
  } else if (reason == kReasonStop || reason == kReasonLocal) {
    code = kTlsOk;  // the engine stopped: a dial is cancelled, an accepted connection was never seen
    err = 0;
    if (s.listener != -1) return;
  } else if (reason != kReasonErrno) {
    err = 0;  // FIN (EOF or truncation) before the handshake finished
  }
  Record(kRecTlsFail, slot, code, err);
}

void Loop::ProcessTlsBacklog() {
  std::vector<uint32_t> pending;
  pending.swap(tls_backlog_);
  for (uint32_t slot : pending) {
    Slot& s = slots_[slot];
    if (s.kind != kConn || s.tls == nullptr || s.state != kOpen) continue;
    TlsPump(slot);
  }
}

}  // namespace netloop
