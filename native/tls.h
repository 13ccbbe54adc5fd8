// TLS for one connection, with Node's own OpenSSL, on a BIO of our own.
//
// The loop owns the socket; this file owns nothing but OpenSSL state. The
// loop lends it ciphertext (Lend), asks it for plaintext (Read) into the
// receive slab, hands it plaintext to encrypt (Write), and sends what it
// produced (Output / ConsumeOutput) through its ordinary write path. So
// encryption and decryption ride the same batches, queues and deadlines as
// plain connections, in every I/O mode, and no OpenSSL call ever touches a
// descriptor (no SSL_set_fd: a blocking reader thread may be reading it).
//
// Every call is made on the loop thread (the JS thread that owns the engine):
// an SSL object is not safe to share between threads, and a blocking reader
// only reads ciphertext and hands it over like plain bytes.
//
// Errors are values: TlsError codes, with OpenSSL's reason kept as text for
// the one JS call that turns them into an Error.
#ifndef NETLOOP_TLS_H_
#define NETLOOP_TLS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct bio_st BIO;

namespace netloop {

// Why TLS failed (kRecTlsFail a, kReasonTls b). lib/native.ts mirrors them.
enum TlsError : int32_t {
  kTlsOk = 0,
  kTlsErrHandshake = 1,  // the handshake failed: an alert, no common protocol or cipher, a malformed message
  kTlsErrTimeout = 2,    // the handshake did not finish within its timeout
  kTlsErrTooLarge = 3,   // the peer sent more handshake bytes than allowed (a ClientHello flood)
  kTlsErrEof = 4,        // the transport ended (FIN, reset) before the handshake finished
  kTlsErrProtocol = 5,   // after the handshake: a bad record, a fatal alert, a refused renegotiation
  // kTlsErrVerify + the X509 verify result (X509_V_ERR_*): the peer's
  // certificate was refused (expired, wrong host, unknown issuer, ...).
  kTlsErrVerify = 100,
};

// Everything a context is made of, already validated by lib/tls.ts.
struct TlsContextConfig {
  bool server = true;
  std::string cert;        // PEM chain, leaf first (may be empty for a client)
  std::string key;         // PEM private key
  std::string passphrase;  // for an encrypted key
  std::string ca;          // PEM bundle of trusted issuers (client: servers'; server: clients' with request_cert)
  std::string ciphers;     // TLS 1.2 cipher list ("" = OpenSSL's default)
  std::string ciphersuites;  // TLS 1.3 suites ("" = default)
  int min_version = 0;     // TLS1_2_VERSION, ... (0 = OpenSSL's default floor)
  int max_version = 0;
  std::string alpn;        // wire format: length-prefixed protocol names
  bool request_cert = false;        // server: ask for a client certificate
  bool reject_unauthorized = true;  // verify the peer (client: always asked; server: with request_cert)
  long session_timeout = 300;       // seconds a ticket (resumption) stays valid
  // Server: other certificates chosen by the SNI name the client sends
  // (exact names, or "*.example.com" for one label); each holds a reference.
  std::vector<std::pair<std::string, SSL_CTX*>> sni;
};

// Builds an SSL_CTX (reference count 1, the caller's) or returns nullptr and
// says why in *error, in words a user can act on ("tls.key does not match
// tls.cert", "tls.key: bad passphrase", ...).
SSL_CTX* NewTlsContext(const TlsContextConfig& config, std::string* error);
void FreeTlsContext(SSL_CTX* ctx);
void RefTlsContext(SSL_CTX* ctx);

class TlsConn;

// Ciphertext produced by one loop's TLS connections, waiting to be sent. One
// buffer serves them all: the loop sends or queues a connection's output
// (TlsFlushOutput) before it calls into another connection's TLS, so at most
// one connection's bytes wait here at a time, and a server of many idle TLS
// connections keeps no output buffer per connection. `owner` makes a broken
// ordering harmless: bytes one connection left behind are dropped, never sent
// as another's.
struct TlsOutput {
  std::vector<uint8_t> bytes;
  const TlsConn* owner = nullptr;
};

// A connection's TLS state machine.
class TlsConn {
 public:
  // Result of Read() besides a byte count.
  static constexpr long kNeedInput = 0;
  static constexpr long kClosed = -1;  // the peer's close_notify
  static constexpr long kFailed = -2;  // error() says why

  // servername (client): the SNI name sent and the host the certificate
  // must match (a DNS name or an IP address); may be empty for a server.
  // output: the loop's (outlives the connection).
  static TlsConn* New(SSL_CTX* ctx, bool server, const std::string& servername, TlsOutput* output,
                      std::string* error);
  ~TlsConn();
  TlsConn(const TlsConn&) = delete;
  TlsConn& operator=(const TlsConn&) = delete;

  // Ciphertext from the peer, lent: OpenSSL reads the records straight from
  // the caller's buffer (no copy into a memory BIO), which must stay valid
  // until KeepInput(). KeepInput() copies what was not consumed (a partial
  // record, or input left while reading is paused) into the connection's own
  // buffer, to be read first next time.
  void Lend(const uint8_t* data, size_t len);
  void KeepInput();
  // Drives the handshake: 1 done, 0 needs more input, -1 failed (error()).
  int Handshake();
  // Decrypts into dst: bytes (> 0), kNeedInput, kClosed or kFailed.
  long Read(uint8_t* dst, size_t cap);
  // Encrypts len bytes (any length; records of at most 16 KiB) into the
  // output. False on failure (error()).
  bool Write(const uint8_t* data, size_t len);
  // Queues our close_notify (once).
  void Shutdown();

  // Ciphertext waiting to be sent (in the loop's TlsOutput); ConsumeOutput()
  // once it has been sent or copied into the write queue.
  size_t Output(const uint8_t** data);
  void ConsumeOutput();
  // Whether input is buffered that Read() may turn into plaintext now.
  bool HasInput() const;
  // Gives OpenSSL's record buffers (about 34 KiB) back while the connection
  // is idle; they are allocated again on its next record.
  void ReleaseBuffers();
  // The loop's idle sweep (Loop::TlsTouch): the sweep period of last use.
  uint32_t used_period = 0;

  bool established() const { return established_; }
  bool peer_closed() const { return peer_closed_; }
  bool shutdown_sent() const { return shutdown_sent_; }
  int32_t error() const { return error_; }
  const std::string& error_text() const { return error_text_; }
  // Forgets the OpenSSL error (it is about to be replaced by the caller's).
  void SetError(int32_t code, const char* text);

  // Negotiated facts, for JS (empty before the handshake).
  std::string Protocol() const;   // "TLSv1.3"
  std::string Cipher() const;
  std::string Alpn() const;
  std::string ServerName() const;  // server: the SNI name the client sent
  bool Resumed() const;
  // Bytes of ciphertext fed so far (handshake budget).
  uint64_t fed() const { return fed_; }

 private:
  TlsConn() = default;
  // Records OpenSSL's reason for a failed call into error_/error_text_.
  void Fail(int ssl_error, int32_t code);
  size_t InputLeft() const { return kept_.size() - kept_off_ + lent_len_; }

  // The BIO between OpenSSL and this connection (both directions): reads
  // take the kept bytes first, then the lent ones; writes append to out_.
  static int BioRead(BIO* bio, char* dst, size_t want, size_t* got);
  static int BioWrite(BIO* bio, const char* src, size_t len, size_t* written);
  static long BioCtrl(BIO* bio, int cmd, long num, void* ptr);
  static BIO* NewBio(TlsConn* t);

  SSL* ssl_ = nullptr;
  TlsOutput* out_ = nullptr;
  const uint8_t* lent_ = nullptr;
  size_t lent_len_ = 0;
  std::vector<uint8_t> kept_;  // input not consumed by the last pump, from kept_off_
  size_t kept_off_ = 0;
  bool server_ = true;
  bool established_ = false;
  bool peer_closed_ = false;
  bool shutdown_sent_ = false;
  int32_t error_ = kTlsOk;
  std::string error_text_;
  uint64_t fed_ = 0;
};

}  // namespace netloop

#endif  // NETLOOP_TLS_H_
