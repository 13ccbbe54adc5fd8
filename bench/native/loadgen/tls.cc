// TLS for the load generator (see tls.h): the context, the BIO between OpenSSL and the worker's
// buffers, the handshake, record encryption and decryption.
#include "tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>
#include <string>

namespace loadgen {

namespace {

// The BIO method: reads come from the chunk the worker received, writes are appended to the
// connection's ciphertext queue. Its data pointer is the TlsConn.
int bio_write(BIO* b, const char* data, int len) {
  auto* t = static_cast<TlsConn*>(BIO_get_data(b));
  if (len <= 0) return 0;
  t->wire_out()->append(reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(len));
  return len;
}

int bio_read(BIO* b, char* out, int len) {
  auto* t = static_cast<TlsConn*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  size_t n = len > 0 ? t->take_input(reinterpret_cast<uint8_t*>(out), static_cast<size_t>(len)) : 0;
  if (n == 0) {
    BIO_set_retry_read(b);  // not an EOF: the next recv() brings more
    return -1;
  }
  return static_cast<int>(n);
}

long bio_ctrl(BIO* b, int cmd, long num, void* ptr) {
  (void)b;
  (void)num;
  (void)ptr;
  // Flush: every write already reached the queue. Nothing else is asked of a plain pipe.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

BIO_METHOD* g_method = nullptr;
std::once_flag g_method_once;

BIO_METHOD* bio_method() {
  std::call_once(g_method_once, [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "netloop-loadgen");
    if (m == nullptr) return;
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    g_method = m;
  });
  return g_method;
}

// OpenSSL's error queue (this thread's) as one line, emptied.
std::string openssl_errors() {
  std::string s;
  char buf[256];
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!s.empty()) s += "; ";
    s += buf;
  }
  return s;
}

// A new session ticket from the server: it replaces the connection's saved one (returning 1
// keeps our reference).
int on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* t = static_cast<TlsConn*>(SSL_get_app_data(ssl));
  if (t == nullptr || t->saved() == nullptr) return 0;
  t->saved()->reset(session);
  return 1;
}

}  // namespace

TlsClientContext::~TlsClientContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

std::string TlsClientContext::init(bool resume, const std::string& max_version, bool idle) {
  if (bio_method() == nullptr) return "BIO_meth_new failed";
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (ctx_ == nullptr) return "SSL_CTX_new: " + openssl_errors();
  // The servers under test use certificates the bench made a moment ago: the generator measures
  // them, it does not trust them. (The engine's own client verifies; its tests check that.)
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  if (max_version == "1.2") {
    SSL_CTX_set_max_proto_version(ctx_, TLS1_2_VERSION);
  } else if (max_version == "1.3") {
    SSL_CTX_set_max_proto_version(ctx_, TLS1_3_VERSION);
  } else if (!max_version.empty()) {
    return "unknown TLS version " + max_version;
  }
  // Larger reads from our BIO: one call can take several records of the chunk received.
  SSL_CTX_set_read_ahead(ctx_, 1);
  // Held idle connections (--hold) give their record buffers back between messages; busy ones
  // keep them (releasing costs a malloc and a free per record, a tenth of the generator's CPU).
  if (idle) SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS);
  if (resume) {
    // Tickets only reach on_new_session (no internal cache): each connection keeps its own.
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx_, on_new_session);
  } else {
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx_, SSL_OP_NO_TICKET);
  }
  return "";
}

TlsConn::~TlsConn() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees the BIO too
}

bool TlsConn::start(const TlsClientContext& ctx, const std::string& server_name, SavedSession* saved, ByteQueue& wire) {
  ssl_ = SSL_new(ctx.ctx());
  if (ssl_ == nullptr) return fail("SSL_new", 0);
  BIO* bio = BIO_new(bio_method());
  if (bio == nullptr) return fail("BIO_new", 0);
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);  // one BIO both ways; SSL_free frees it
  SSL_set_app_data(ssl_, this);
  if (!server_name.empty() && SSL_set_tlsext_host_name(ssl_, server_name.c_str()) != 1) return fail("SNI", 0);
  saved_ = saved;
  if (saved != nullptr && saved->get() != nullptr) {
    // A copy: OpenSSL marks a TLS 1.3 session it resumed as used up, and the next connect of
    // this slot is to offer the same ticket again unless the server sends a newer one.
    SSL_SESSION* copy = SSL_SESSION_dup(saved->get());
    if (copy == nullptr) return fail("SSL_SESSION_dup", 0);
    const int ok = SSL_set_session(ssl_, copy);
    SSL_SESSION_free(copy);  // the SSL holds its own reference
    if (ok != 1) return fail("SSL_set_session", 0);
  }
  SSL_set_connect_state(ssl_);
  wire_ = &wire;
  int r = SSL_do_handshake(ssl_);
  wire_ = nullptr;
  if (r == 1) return true;  // not with a real server, but harmless
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ) return true;
  return fail("handshake", r);
}

size_t TlsConn::take_input(uint8_t* out, size_t cap) {
  size_t n = std::min(cap, in_len_);
  if (n > 0) {
    memcpy(out, in_, n);
    in_ += n;
    in_len_ -= n;
  }
  return n;
}

TlsConn::Read TlsConn::read(uint8_t* buf, size_t cap, size_t* n, ByteQueue& wire) {
  *n = 0;
  wire_ = &wire;
  int r = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(cap, INT_MAX)));
  wire_ = nullptr;
  if (r > 0) {
    *n = static_cast<size_t>(r);
    return Read::kData;
  }
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ:
      return Read::kNeedMore;
    case SSL_ERROR_ZERO_RETURN:
      return Read::kClosed;  // close_notify
    default:
      fail(established() ? "read" : "handshake", r);
      return Read::kError;
  }
}

bool TlsConn::encrypt(ByteQueue& plain, ByteQueue& wire) {
  wire_ = &wire;
  while (!plain.empty()) {
    // The BIO takes every byte, so SSL_write never stops half-way for want of room.
    int len = static_cast<int>(std::min<size_t>(plain.size(), 1u << 30));
    int r = SSL_write(ssl_, plain.data(), len);
    if (r <= 0) {
      wire_ = nullptr;
      return fail("write", r);
    }
    plain.consume(static_cast<size_t>(r));
  }
  wire_ = nullptr;
  return true;
}

void TlsConn::close_notify(ByteQueue& wire) {
  if (ssl_ == nullptr) return;
  wire_ = &wire;
  SSL_shutdown(ssl_);  // queues close_notify; the answer comes through read()
  wire_ = nullptr;
}

void TlsConn::ended_cleanly() {
  if (ssl_ != nullptr) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
}

bool TlsConn::fail(const char* what, int ret) {
  err_ = std::string("tls ") + what;
  if (ssl_ != nullptr && ret <= 0) {
    int e = SSL_get_error(ssl_, ret);
    if (e == SSL_ERROR_SSL) err_ += " failed";
    else if (e == SSL_ERROR_SYSCALL) err_ += ": unexpected end of the stream";
    else err_ += ": SSL error " + std::to_string(e);
  }
  std::string detail = openssl_errors();
  if (!detail.empty()) err_ += ": " + detail;
  return false;
}

}  // namespace loadgen
