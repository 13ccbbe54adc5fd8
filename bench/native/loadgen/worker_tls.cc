// The worker's TLS steps (--tls): the handshake once TCP is up, ciphertext from the socket into
// the protocol, and the step from "handshake done" to "protocol open". Reads, writes and the
// encryption of queued messages stay in worker.cc's on_readable/flush (tls.h says why).
#include <cstdio>

#include "clock.h"
#include "worker.h"

namespace loadgen {

void Worker::start_tls(Conn& c) {
  c.tls.reset(new TlsConn());
  c.wire.consume(c.wire.size());
  SavedSession* saved = plan_.opt.tls_resume ? &c.session : nullptr;
  if (!c.tls->start(*plan_.tls, plan_.opt.tls_servername, saved, c.wire)) {
    fail(c, false, c.tls->error().c_str(), 0);
    return;
  }
  flush(c);  // the ClientHello
}

// One chunk of ciphertext: every record in it is decrypted and handed to the protocol. False when
// the connection is no longer open.
bool Worker::on_tls_bytes(Conn& c, const uint8_t* p, size_t n) {
  TlsConn& tls = *c.tls;
  tls.set_input(p, n);
  for (;;) {
    const bool was_established = tls.established();
    size_t got = 0;
    const TlsConn::Read r = tls.read(plain_.data(), plain_.size(), &got, c.wire);
    if (!was_established && tls.established()) {
      on_tls_established(c);
      if (c.state != ConnState::kOpen) return false;
    }
    if (r == TlsConn::Read::kData) {
      if (!deliver(c, plain_.data(), got)) return false;
      continue;
    }
    if (r == TlsConn::Read::kNeedMore) break;
    if (r == TlsConn::Read::kClosed) {
      // The server's close_notify. Churn: the end of the cycle we asked for; the FIN follows.
      if (c.closing && c.close_seen) break;
      fail(c, false, c.closing ? "server sent close_notify without answering the close frame" : "server sent close_notify", 0);
      return false;
    }
    fail(c, false, tls.error().c_str(), 0);
    return false;
  }
  tls.set_input(nullptr, 0);
  return true;
}

void Worker::on_tls_established(Conn& c) {
  stats_.tls_handshakes++;
  if (c.tls->resumed()) stats_.tls_resumed++;
  if (stats_.tls_version.empty()) {
    stats_.tls_version = c.tls->version();
    stats_.tls_cipher = c.tls->cipher();
  }
  now_ = now_ns();
  open_protocol(c);
}

}  // namespace loadgen
