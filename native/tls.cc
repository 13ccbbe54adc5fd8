#include "tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <strings.h>
#include <time.h>

#include <climits>
#include <cstring>
#include <memory>
#include <mutex>

namespace netloop {

namespace {

// What a context carries beyond OpenSSL's own state, freed with it (its
// ex_data free function): SNI children, ALPN list, session ticket keys. Live
// connections hold the context (SSL_new takes a reference), so a context
// replaced by setSecureContext stays valid for the handshakes still using it.
struct ContextExtras {
  std::string alpn;  // wire format, server side
  std::vector<std::pair<std::string, SSL_CTX*>> sni;
  bool reject_unauthorized = true;
  // Session ticket keys: tickets are sealed with `current` and still
  // accepted (then renewed) with `previous`, so that rotating never breaks
  // the resumption of a ticket issued just before.
  struct TicketKey {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    time_t created;
  };
  std::mutex ticket_mu;  // handshakes of engines in several threads share a context only through SNI children: cheap
  TicketKey current{};
  TicketKey previous{};
  bool has_previous = false;
  long rotate_after = 300;  // seconds
};

int ExtrasIndex() {
  static int index = -1;
  static std::once_flag once;
  std::call_once(once, [] {
    index = CRYPTO_get_ex_new_index(
        CRYPTO_EX_INDEX_SSL_CTX, 0, nullptr, nullptr, nullptr,
        [](void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/, long /*argl*/, void* /*argp*/) {
          auto* extras = static_cast<ContextExtras*>(ptr);
          if (extras == nullptr) return;
          for (auto& e : extras->sni) SSL_CTX_free(e.second);
          OPENSSL_cleanse(&extras->current, sizeof extras->current);
          OPENSSL_cleanse(&extras->previous, sizeof extras->previous);
          delete extras;
        });
  });
  return index;
}

ContextExtras* ExtrasOf(SSL_CTX* ctx) { return static_cast<ContextExtras*>(SSL_CTX_get_ex_data(ctx, ExtrasIndex())); }

// The first error on OpenSSL's (thread-local) queue as text, and the queue
// emptied: it is shared with Node's own crypto code on this thread.
std::string TakeOpenSslError(const char* fallback) {
  unsigned long e = ERR_peek_error();
  std::string text = fallback;
  if (e != 0) {
    const char* reason = ERR_reason_error_string(e);
    if (reason != nullptr) text = reason;
  }
  ERR_clear_error();
  return text;
}

bool NewKey(ContextExtras::TicketKey* k) {
  k->created = time(nullptr);
  return RAND_bytes(k->name, sizeof k->name) == 1 && RAND_bytes(k->aes, sizeof k->aes) == 1 &&
         RAND_bytes(k->hmac, sizeof k->hmac) == 1;
}

// Session tickets (RFC 5077 / TLS 1.3 resumption) with keys that rotate:
// OpenSSL's built-in ticket key never changes for the life of a context.
int TicketKeyCallback(SSL* ssl, unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac,
                      int enc) {
  ContextExtras* x = ExtrasOf(SSL_get_SSL_CTX(ssl));
  if (x == nullptr) return -1;
  std::lock_guard<std::mutex> lock(x->ticket_mu);
  time_t now = time(nullptr);
  if (now - x->current.created >= x->rotate_after) {
    x->previous = x->current;
    x->has_previous = true;
    if (!NewKey(&x->current)) return -1;
  }
  const ContextExtras::TicketKey* key = nullptr;
  int result = 1;
  if (enc == 1) {
    key = &x->current;
    std::memcpy(name, key->name, 16);
    if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) return -1;
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes, iv) != 1) return -1;
  } else {
    if (std::memcmp(name, x->current.name, 16) == 0) {
      key = &x->current;
    } else if (x->has_previous && std::memcmp(name, x->previous.name, 16) == 0) {
      key = &x->previous;
      result = 2;  // valid, but issue a ticket under the current key
    } else {
      return 0;  // unknown (older) key: a full handshake
    }
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes, iv) != 1) return -1;
  }
  OSSL_PARAM params[2];
  params[0] = OSSL_PARAM_construct_utf8_string("digest", const_cast<char*>("SHA256"), 0);
  params[1] = OSSL_PARAM_construct_end();
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  if (EVP_MAC_init(mac, key->hmac, sizeof key->hmac, nullptr) != 1) return -1;
  return result;
}

// Exact name, or "*.example.com" matching exactly one leftmost label.
bool SniMatches(const std::string& pattern, const char* name) {
  if (strcasecmp(pattern.c_str(), name) == 0) return true;
  if (pattern.size() < 3 || pattern[0] != '*' || pattern[1] != '.') return false;
  const char* dot = std::strchr(name, '.');
  return dot != nullptr && dot != name && strcasecmp(pattern.c_str() + 1, dot) == 0;
}

int ServerNameCallback(SSL* ssl, int* /*alert*/, void* arg) {
  auto* x = static_cast<ContextExtras*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr || x == nullptr) return SSL_TLSEXT_ERR_OK;  // the default certificate
  for (const auto& e : x->sni) {
    if (SniMatches(e.first, name)) {
      SSL_set_SSL_CTX(ssl, e.second);
      // The verify settings are per connection and were copied from the
      // default context at SSL_new: take the chosen one's.
      SSL_set_verify(ssl, SSL_CTX_get_verify_mode(e.second), SSL_CTX_get_verify_callback(e.second));
      break;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}

int AlpnSelectCallback(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                       unsigned int inlen, void* arg) {
  auto* x = static_cast<ContextExtras*>(arg);
  if (x == nullptr || x->alpn.empty()) return SSL_TLSEXT_ERR_NOACK;
  unsigned char* selected = nullptr;
  int r = SSL_select_next_proto(&selected, outlen, reinterpret_cast<const unsigned char*>(x->alpn.data()),
                                static_cast<unsigned int>(x->alpn.size()), in, inlen);
  if (r != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_ALERT_FATAL;  // no protocol in common (RFC 7301 §3.2)
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// Verification that records the result but lets the handshake go on
// (rejectUnauthorized: false); the result stays readable.
int AcceptAnyCertificate(int /*ok*/, X509_STORE_CTX* /*ctx*/) { return 1; }

int PassphraseCallback(char* buf, int size, int /*rwflag*/, void* u) {
  const auto* pass = static_cast<const std::string*>(u);
  if (pass == nullptr || pass->empty()) return 0;  // no prompt on a terminal: an encrypted key needs `passphrase`
  int n = static_cast<int>(std::min<size_t>(pass->size(), static_cast<size_t>(size)));
  std::memcpy(buf, pass->data(), static_cast<size_t>(n));
  return n;
}

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

BioPtr MemBio(const std::string& pem) { return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free); }

bool LoadChain(SSL_CTX* ctx, const std::string& pem, std::string* error) {
  BioPtr bio = MemBio(pem);
  X509* leaf = bio ? PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (leaf == nullptr) {
    ERR_clear_error();
    *error = "tls.cert: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)";
    return false;
  }
  int ok = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  if (ok != 1) {
    *error = "tls.cert: " + TakeOpenSslError("certificate refused");
    return false;
  }
  for (;;) {
    X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (extra == nullptr) break;
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {  // takes ownership on success
      X509_free(extra);
      *error = "tls.cert: " + TakeOpenSslError("chain certificate refused");
      return false;
    }
  }
  ERR_clear_error();  // the end of the PEM input is reported as an error
  return true;
}

bool LoadKey(SSL_CTX* ctx, const std::string& pem, const std::string& passphrase, std::string* error) {
  BioPtr bio = MemBio(pem);
  EVP_PKEY* key = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, PassphraseCallback,
                                                const_cast<std::string*>(&passphrase))
                      : nullptr;
  if (key == nullptr) {
    unsigned long e = ERR_peek_last_error();
    int reason = ERR_GET_REASON(e);
    bool encrypted = pem.find("ENCRYPTED") != std::string::npos;
    ERR_clear_error();
    if (encrypted && passphrase.empty()) {
      *error = "tls.key is encrypted: tls.passphrase is required";
    } else if (encrypted || reason == EVP_R_BAD_DECRYPT || reason == PEM_R_BAD_DECRYPT) {
      *error = "tls.key: wrong passphrase (cannot decrypt the key)";
    } else {
      *error = "tls.key: no PEM private key found (expected -----BEGIN PRIVATE KEY-----)";
    }
    return false;
  }
  int ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (ok != 1) {
    ERR_clear_error();
    *error = "tls.key does not match tls.cert (the key is not the certificate's)";
    return false;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    *error = "tls.key does not match tls.cert (the key is not the certificate's)";
    return false;
  }
  return true;
}

bool LoadCa(SSL_CTX* ctx, const std::string& pem, std::string* error) {
  BioPtr bio = MemBio(pem);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int count = 0;
  for (;;) {
    X509* cert = bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr;
    if (cert == nullptr) break;
    X509_STORE_add_cert(store, cert);  // duplicates in a bundle are harmless
    X509_free(cert);
    count++;
  }
  ERR_clear_error();
  if (count == 0) {
    *error = "tls.ca: no PEM certificate found";
    return false;
  }
  return true;
}

}  // namespace

SSL_CTX* NewTlsContext(const TlsContextConfig& c, std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(c.server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) {
    *error = "tls: " + TakeOpenSslError("cannot create a context");
    return nullptr;
  }
  auto* extras = new ContextExtras();
  SSL_CTX_set_ex_data(ctx, ExtrasIndex(), extras);  // freed with ctx from here on
  extras->alpn = c.alpn;
  extras->reject_unauthorized = c.reject_unauthorized;
  // Renegotiation is refused (a CPU-exhaustion vector, and TLS 1.3 has none);
  // compression is off (CRIME).
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               (c.server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  // No SSL_MODE_RELEASE_BUFFERS: it frees the read buffer each time it
  // empties and the write buffer after each write (a malloc and free of
  // 17 KiB per call, several per connection and batch). The loop releases
  // them instead once a connection has been idle a second (ReleaseBuffers),
  // so idle connections, what a server mostly holds, still keep none.
  bool ok = true;
  if (c.min_version != 0 && SSL_CTX_set_min_proto_version(ctx, c.min_version) != 1) {
    *error = "tls.minVersion: not supported by this OpenSSL";
    ok = false;
  }
  if (ok && c.max_version != 0 && SSL_CTX_set_max_proto_version(ctx, c.max_version) != 1) {
    *error = "tls.maxVersion: not supported by this OpenSSL";
    ok = false;
  }
  if (ok && !c.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, c.ciphers.c_str()) != 1) {
    ERR_clear_error();
    *error = "tls.ciphers: no cipher in '" + c.ciphers + "' is known to OpenSSL";
    ok = false;
  }
  if (ok && !c.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, c.ciphersuites.c_str()) != 1) {
    ERR_clear_error();
    *error = "tls.ciphersuites: no TLS 1.3 suite in '" + c.ciphersuites + "' is known to OpenSSL";
    ok = false;
  }
  if (ok && !c.cert.empty()) ok = LoadChain(ctx, c.cert, error);
  if (ok && !c.key.empty()) ok = LoadKey(ctx, c.key, c.passphrase, error);
  if (ok && c.server && (c.cert.empty() || c.key.empty())) {
    *error = "tls: a server needs both tls.cert and tls.key";
    ok = false;
  }
  if (ok && !c.ca.empty()) ok = LoadCa(ctx, c.ca, error);
  if (!ok) {
    SSL_CTX_free(ctx);
    return nullptr;
  }
  if (c.server) {
    int mode = SSL_VERIFY_NONE;
    if (c.request_cert) mode = SSL_VERIFY_PEER | (c.reject_unauthorized ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    SSL_CTX_set_verify(ctx, mode, c.reject_unauthorized ? nullptr : AcceptAnyCertificate);
    // Resumption by tickets only: no server-side session cache to grow with
    // the number of clients.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static const unsigned char kSessionContext[] = "netloop";
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
    SSL_CTX_set_timeout(ctx, c.session_timeout);
    extras->rotate_after = c.session_timeout > 0 ? c.session_timeout : 300;
    if (!NewKey(&extras->current)) {
      *error = "tls: no randomness for session ticket keys";
      SSL_CTX_free(ctx);
      return nullptr;
    }
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, TicketKeyCallback);
    if (!c.alpn.empty()) SSL_CTX_set_alpn_select_cb(ctx, AlpnSelectCallback, extras);
    if (!c.sni.empty()) {
      for (const auto& e : c.sni) {
        RefTlsContext(e.second);
        extras->sni.push_back(e);
      }
      SSL_CTX_set_tlsext_servername_callback(ctx, ServerNameCallback);
      SSL_CTX_set_tlsext_servername_arg(ctx, extras);
    }
  } else {
    // The verify result is always computed; rejectUnauthorized decides
    // whether a bad one ends the handshake.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, c.reject_unauthorized ? nullptr : AcceptAnyCertificate);
    if (!c.alpn.empty()) {
      SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(c.alpn.data()),
                              static_cast<unsigned int>(c.alpn.size()));
    }
  }
  return ctx;
}

void FreeTlsContext(SSL_CTX* ctx) { SSL_CTX_free(ctx); }

void RefTlsContext(SSL_CTX* ctx) { SSL_CTX_up_ref(ctx); }

// ---------------------------------------------------------------------------
// One connection

namespace {

// OpenSSL's error queue is per thread and shared with Node's own crypto code
// on this thread; SSL_get_error() needs it empty before each call. Clearing
// walks the whole queue: peek first, since it is almost always empty (our
// failures are cleared where they are reported).
void ClearStaleErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// Input kept between pumps is released when it has all been read, unless it
// is small: an idle connection holds no input buffer.
constexpr size_t kKeptInputRetained = 2048;

}  // namespace

// The BIO's methods: created once, alive for the process (OpenSSL keeps a
// pointer to them in every BIO).
BIO* TlsConn::NewBio(TlsConn* t) {
  static BIO_METHOD* method = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "netloop connection");
    if (m == nullptr) return;
    BIO_meth_set_read_ex(m, BioRead);
    BIO_meth_set_write_ex(m, BioWrite);
    BIO_meth_set_ctrl(m, BioCtrl);
    BIO_meth_set_create(m, [](BIO* b) {
      BIO_set_init(b, 1);
      return 1;
    });
    method = m;
  });
  if (method == nullptr) return nullptr;
  BIO* bio = BIO_new(method);
  if (bio != nullptr) BIO_set_data(bio, t);
  return bio;
}

int TlsConn::BioRead(BIO* bio, char* dst, size_t want, size_t* got) {
  auto* t = static_cast<TlsConn*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  size_t n = 0;
  size_t kept = t->kept_.size() - t->kept_off_;
  if (kept > 0) {
    n = std::min(want, kept);
    std::memcpy(dst, t->kept_.data() + t->kept_off_, n);
    t->kept_off_ += n;
  } else if (t->lent_len_ > 0) {
    n = std::min(want, t->lent_len_);
    std::memcpy(dst, t->lent_, n);
    t->lent_ += n;
    t->lent_len_ -= n;
  }
  *got = n;
  if (n == 0) {
    BIO_set_retry_read(bio);  // no more for now: wait for the socket, not end of stream (the loop sees FIN)
    return 0;
  }
  return 1;
}

int TlsConn::BioWrite(BIO* bio, const char* src, size_t len, size_t* written) {
  auto* t = static_cast<TlsConn*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  TlsOutput* o = t->out_;
  if (o->owner != t) {
    o->bytes.clear();  // never another connection's bytes (see TlsOutput)
    o->owner = t;
  }
  size_t at = o->bytes.size();
  o->bytes.resize(at + len);  // capacity reserved by the loop: no zero-fill past what is copied in
  std::memcpy(o->bytes.data() + at, src, len);
  *written = len;
  return 1;
}

long TlsConn::BioCtrl(BIO* bio, int cmd, long /*num*/, void* /*ptr*/) {
  auto* t = static_cast<TlsConn*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // output is taken synchronously by the loop
    case BIO_CTRL_PENDING:
      return static_cast<long>(t->InputLeft());
    default:
      return 0;  // no kTLS, no datagrams, nothing else
  }
}

TlsConn* TlsConn::New(SSL_CTX* ctx, bool server, const std::string& servername, TlsOutput* output,
                      std::string* error) {
  ClearStaleErrors();
  auto* t = new TlsConn();
  t->server_ = server;
  t->out_ = output;
  t->ssl_ = SSL_new(ctx);
  BIO* bio = t->ssl_ != nullptr ? NewBio(t) : nullptr;
  if (bio == nullptr) {
    *error = TakeOpenSslError("out of memory");
    delete t;
    return nullptr;
  }
  SSL_set_bio(t->ssl_, bio, bio);  // one reference for both directions
  if (server) {
    SSL_set_accept_state(t->ssl_);
  } else {
    SSL_set_connect_state(t->ssl_);
    if (!servername.empty()) {
      unsigned char ip[16];
      bool is_ip = inet_pton(AF_INET, servername.c_str(), ip) == 1 || inet_pton(AF_INET6, servername.c_str(), ip) == 1;
      X509_VERIFY_PARAM* param = SSL_get0_param(t->ssl_);
      if (is_ip) {
        // An address is checked against the certificate's IP SANs, and is
        // never sent as SNI (RFC 6066 §3).
        X509_VERIFY_PARAM_set1_ip_asc(param, servername.c_str());
      } else {
        SSL_set_tlsext_host_name(t->ssl_, servername.c_str());
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set1_host(t->ssl_, servername.c_str());
      }
    }
  }
  return t;
}

TlsConn::~TlsConn() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees the BIO
  if (out_ != nullptr && out_->owner == this) {
    // Unsent bytes of a connection that is gone; and a new connection at
    // this address must not pass for their owner.
    out_->bytes.clear();
    out_->owner = nullptr;
  }
}

void TlsConn::Lend(const uint8_t* data, size_t len) {
  lent_ = data;
  lent_len_ = len;
  fed_ += len;
}

void TlsConn::KeepInput() {
  if (kept_off_ > 0) {
    kept_.erase(kept_.begin(), kept_.begin() + static_cast<std::ptrdiff_t>(kept_off_));
    kept_off_ = 0;
  }
  if (lent_len_ > 0) kept_.insert(kept_.end(), lent_, lent_ + lent_len_);
  lent_ = nullptr;
  lent_len_ = 0;
  if (kept_.empty() && kept_.capacity() > kKeptInputRetained) std::vector<uint8_t>().swap(kept_);
}

void TlsConn::Fail(int ssl_error, int32_t code) {
  long verify = SSL_get_verify_result(ssl_);
  if (!established_ && verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY) {
    // A lone leaf whose issuer nobody here knows: Node (on the same
    // OpenSSL) calls that UNABLE_TO_VERIFY_LEAF_SIGNATURE, and programs
    // written against Node's tls test for that code.
    STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl_);
    if (chain == nullptr || sk_X509_num(chain) <= 1) verify = X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
  }
  if (!established_ && verify != X509_V_OK) {
    // The peer's certificate was refused: say which check failed.
    error_ = kTlsErrVerify + static_cast<int32_t>(verify);
    error_text_ = X509_verify_cert_error_string(verify);
    ERR_clear_error();
    return;
  }
  error_ = code;
  if (ssl_error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
    error_text_ = "unexpected end of TLS input";
  } else {
    error_text_ = TakeOpenSslError("TLS failure");
  }
  ERR_clear_error();
}

void TlsConn::SetError(int32_t code, const char* text) {
  error_ = code;
  error_text_ = text;
}

int TlsConn::Handshake() {
  if (established_) return 1;
  ClearStaleErrors();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    established_ = true;
    return 1;
  }
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  Fail(e, kTlsErrHandshake);
  return -1;
}

long TlsConn::Read(uint8_t* dst, size_t cap) {
  if (peer_closed_) return kClosed;
  // Nothing lent, kept or buffered inside OpenSSL: SSL_read could only say
  // "want read". Skipping it saves a call per pump.
  if (InputLeft() == 0 && SSL_has_pending(ssl_) == 0) return kNeedInput;
  ClearStaleErrors();
  int r = SSL_read(ssl_, dst, static_cast<int>(std::min<size_t>(cap, INT_MAX)));
  if (r > 0) return r;
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return kNeedInput;
  if (e == SSL_ERROR_ZERO_RETURN) {
    peer_closed_ = true;
    return kClosed;
  }
  Fail(e, kTlsErrProtocol);
  return kFailed;
}

bool TlsConn::Write(const uint8_t* data, size_t len) {
  ClearStaleErrors();
  while (len > 0) {
    int r = SSL_write(ssl_, data, static_cast<int>(std::min<size_t>(len, INT_MAX)));
    if (r <= 0) {
      Fail(SSL_get_error(ssl_, r), kTlsErrProtocol);
      return false;
    }
    data += r;
    len -= static_cast<size_t>(r);
  }
  return true;
}

void TlsConn::Shutdown() {
  if (shutdown_sent_ || !established_) return;
  shutdown_sent_ = true;
  ClearStaleErrors();
  SSL_shutdown(ssl_);  // writes close_notify into the output; we never wait for the peer's here
  ERR_clear_error();
}

size_t TlsConn::Output(const uint8_t** data) {
  if (out_->owner != this) return 0;
  *data = out_->bytes.data();
  return out_->bytes.size();
}

void TlsConn::ConsumeOutput() {
  if (out_->owner == this) out_->bytes.clear();
}

void TlsConn::ReleaseBuffers() {
  // Refused (harmlessly) while a buffer holds a partial record or unsent bytes.
  SSL_free_buffers(ssl_);
}

bool TlsConn::HasInput() const { return InputLeft() > 0 || SSL_has_pending(ssl_) != 0; }

std::string TlsConn::Protocol() const { return established_ ? SSL_get_version(ssl_) : ""; }

std::string TlsConn::Cipher() const {
  const char* c = established_ ? SSL_get_cipher_name(ssl_) : nullptr;
  return c != nullptr ? c : "";
}

std::string TlsConn::Alpn() const {
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl_, &p, &n);
  return p != nullptr ? std::string(reinterpret_cast<const char*>(p), n) : "";
}

std::string TlsConn::ServerName() const {
  const char* n = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return n != nullptr ? n : "";
}

bool TlsConn::Resumed() const { return SSL_session_reused(ssl_) == 1; }

}  // namespace netloop
