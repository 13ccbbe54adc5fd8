// TLS for the load generator (--tls): OpenSSL (Debian's libssl, not Node's internal copy, which a
// standalone program cannot link) between the socket and the protocol.
//
// The socket stays the worker's: it reads ciphertext into its own receive buffer and writes a
// ciphertext queue, exactly as it reads and writes plain bytes. OpenSSL sees neither the socket
// nor the epoll: its BIO reads from the chunk the worker just received and appends what it writes
// to the connection's ciphertext queue (a custom BIO method; no memory BIO in between, so every
// byte is copied once each way, as a socket BIO would). One recv() can then carry many records,
// and every record a readiness event produces leaves in one send().
//
// Session resumption (--tls-resume): each connection keeps the last session ticket its server
// sent and offers it on every later connect (churn) until a newer one arrives, so a run measures
// resumed handshakes; without it every handshake is full (no ticket is asked for). A ticket is
// offered again even where RFC 8446 advises single use: whether the server takes it again is its
// policy (the JSON line reports tls_resumed out of tls_handshakes).
#ifndef NETLOOP_LOADGEN_TLS_H_
#define NETLOOP_LOADGEN_TLS_H_

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "byte_queue.h"

namespace loadgen {

// A session ticket kept for the next connect; frees what it holds.
class SavedSession {
 public:
  SavedSession() = default;
  SavedSession(const SavedSession&) = delete;
  SavedSession& operator=(const SavedSession&) = delete;
  SavedSession(SavedSession&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  ~SavedSession() { reset(nullptr); }
  // Takes over one reference.
  void reset(SSL_SESSION* s) {
    if (s_ != nullptr) SSL_SESSION_free(s_);
    s_ = s;
  }
  SSL_SESSION* get() const { return s_; }

 private:
  SSL_SESSION* s_ = nullptr;
};

// One per run, shared by every thread (SSL_CTX is thread-safe once set up).
class TlsClientContext {
 public:
  TlsClientContext() = default;
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;
  ~TlsClientContext();
  // "" on success, else why not. max_version: "" (the highest both sides have), "1.2" or "1.3".
  // idle: connections mostly wait (hold mode), so their buffers are released between records.
  std::string init(bool resume, const std::string& max_version, bool idle);
  SSL_CTX* ctx() const { return ctx_; }

 private:
  SSL_CTX* ctx_ = nullptr;
};

// One connection's TLS state: one SSL object, from the ClientHello to the close.
class TlsConn {
 public:
  enum class Read {
    kData,      // n plaintext bytes in the buffer
    kNeedMore,  // the input chunk is used up (and so is every whole record in it)
    kClosed,    // the server sent close_notify, or closed the TCP connection under TLS
    kError,     // error() says what
  };

  TlsConn() = default;
  TlsConn(const TlsConn&) = delete;
  TlsConn& operator=(const TlsConn&) = delete;
  ~TlsConn();

  // Starts the handshake: the ClientHello goes to wire. The server name goes into SNI. A saved
  // session (may hold null) is offered for resumption; the server's new tickets replace it.
  bool start(const TlsClientContext& ctx, const std::string& server_name, SavedSession* saved, ByteQueue& wire);
  // The next ciphertext chunk from the socket; read() consumes it. Only valid until read()
  // returns kNeedMore (the worker's receive buffer is reused after that).
  void set_input(const uint8_t* p, size_t n) {
    in_ = p;
    in_len_ = n;
  }
  // Advances the handshake and decrypts. Records that the handshake or the server's tickets
  // call for (Finished, a key update) go to wire. Call until it returns kNeedMore.
  Read read(uint8_t* buf, size_t cap, size_t* n, ByteQueue& wire);
  // Encrypts all of plain into wire (plain is then empty). Only once established().
  bool encrypt(ByteQueue& plain, ByteQueue& wire);
  // Queues our close_notify.
  void close_notify(ByteQueue& wire);
  // The connection ended cleanly (churn: the server closed after our close): its session stays
  // resumable. Without this, freeing a connection that never sent close_notify makes OpenSSL
  // drop its session, as after an error.
  void ended_cleanly();
  // The handshake is over: messages may go out.
  bool established() const { return ssl_ != nullptr && SSL_is_init_finished(ssl_) == 1; }
  bool resumed() const { return ssl_ != nullptr && SSL_session_reused(ssl_) == 1; }
  const char* version() const { return ssl_ != nullptr ? SSL_get_version(ssl_) : ""; }
  const char* cipher() const { return ssl_ != nullptr ? SSL_get_cipher_name(ssl_) : ""; }
  const std::string& error() const { return err_; }

  // For the BIO and the new-session callback (tls.cc).
  size_t take_input(uint8_t* out, size_t cap);
  ByteQueue* wire_out() const { return wire_; }
  SavedSession* saved() const { return saved_; }

 private:
  bool fail(const char* what, int ret);

  SSL* ssl_ = nullptr;
  const uint8_t* in_ = nullptr;
  size_t in_len_ = 0;
  ByteQueue* wire_ = nullptr;  // where the BIO writes during the current call
  SavedSession* saved_ = nullptr;
  std::string err_;
};

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_TLS_H_
