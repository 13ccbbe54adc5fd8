// netloop-loadgen: a closed-loop echo load generator and connection holder (Linux, epoll, C++17).
//
// Echo mode (the default): N connections are spread over T threads, each thread with its own
// level-triggered epoll. Every connection keeps W messages of SIZE bytes in flight: when the full
// echo of the oldest message has come back, the next one is sent. Every echoed byte is checked
// against the bytes that were sent: a message's payload is a pseudo-random pattern seeded by
// (connection id, sequence number), so a lost, duplicated, corrupted or reordered byte is caught.
// Latency is the time from the write that carried a message to the read that completed its echo.
//
// Hold mode (--hold): opens N connections (at most --connect-concurrency connecting or
// upgrading at a time), keeps them idle, optionally pings each one every --ping-interval seconds
// and requires the pong, and reports the server's resident memory per idle connection.
//
// Output: exactly one JSON line on stdout at the end (see README.md for the fields).
// Exit code: 0 ok, 1 if any verify failure, error or fewer healthy connections than asked,
// 2 bad usage, 3 watchdog.
//
// Layers, inside out:
//   Histogram      log-linear latency buckets, ~0.4% relative error
//   pattern_*      pure payload generation and checking (binary, or printable ASCII for text)
//   ByteQueue      a growable byte queue with a read offset (outgoing bytes)
//   Protocol       per-connection framing: frame_begin()/frame_end() around each outgoing payload
//                  (generated in place, masked in place), parse() incoming bytes into payload
//                  bytes. TcpProtocol is the identity; WsProtocol is an RFC 6455 client (upgrade
//                  handshake, masked frames out, unmasked frames in, ping/pong, close).
//   Conn           the closed loop over one socket: in-flight window, verification, timestamps
//   Worker         one thread: one epoll, its connections, paced connects, its own stats
//
// Built with -fno-exceptions by bench/native/build.js: nothing here throws or catches.

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ws_accept.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24  // Linux 4.2+; older headers lack the name
#endif

namespace {

// ---------------------------------------------------------------------------------------------
// Time

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: ~20 ns, cheap enough to call once per event
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void sleep_until_ns(uint64_t deadline) {
  for (;;) {
    uint64_t now = now_ns();
    if (now >= deadline) return;
    uint64_t left = deadline - now;
    timespec ts{static_cast<time_t>(left / 1000000000ull), static_cast<long>(left % 1000000000ull)};
    nanosleep(&ts, nullptr);
  }
}

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int conns = 100;
  int inflight = 4;
  size_t size = 64;
  double duration_s = 5;
  double warmup_s = 1;
  int threads = 1;
  long server_pid = -1;  // -1: not given
  std::string proto = "tcp";
  // WebSocket
  std::string msg_type = "binary";  // binary | text
  std::string path = "/";
  std::string host_header;  // "" -> host:port
  // Connecting (both modes)
  int connect_concurrency = 500;  // connections connecting or upgrading at once (all threads)
  std::vector<std::string> source_ips;
  // Hold mode
  bool hold = false;
  double connect_timeout_s = 60;
  // Echo mode, open loop: each connection sends --rate messages a second on a fixed schedule,
  // whatever the echoes do (0: closed loop, --inflight messages in flight). --inflight then caps
  // the messages outstanding per connection; a due message beyond the cap waits, and its
  // latency still counts from when it was due.
  double rate = 0;
  // Churn mode: each of --conns slots loops connect, (upgrade,) one message, close.
  bool churn = false;
  // Broadcast mode: connection 0 publishes, the server sends every message to every connection
  // (the publisher included), every connection checks every message.
  bool broadcast = false;
  double settle_s = 2;
  double ping_interval_s = 0;  // 0: no pings
  bool self_test = false;
};

const char kUsage[] =
    "usage: netloop-loadgen --port P [--host 127.0.0.1] [--conns 100] [--inflight 4]\n"
    "                       [--size 64] [--duration 5] [--warmup 1] [--threads 1]\n"
    "                       [--server-pid PID] [--proto tcp|ws] [--msg-type binary|text]\n"
    "                       [--path /] [--host-header H] [--connect-concurrency 500]\n"
    "                       [--source-ips 127.0.0.1,127.0.0.2,...]\n"
    "       netloop-loadgen --hold --port P [--proto ws] [--conns N] [--duration 5] [--settle 2]\n"
    "                       [--ping-interval 0] [--connect-timeout 60] [--server-pid PID] ...\n"
    "       netloop-loadgen --rate R ...             (echo, open loop: R messages/s per connection)\n"
    "       netloop-loadgen --churn --port P [--proto tcp|ws] [--conns 50] [--duration 5] ...\n"
    "       netloop-loadgen --broadcast --port P --proto ws [--conns N] [--inflight 4] ...\n"
    "       netloop-loadgen --self-test\n"
    "Echo mode prints one JSON line with throughput, latency percentiles, errors and server CPU;\n"
    "--hold prints one JSON line with connect time, pings/pongs and the server's RSS per idle\n"
    "connection. --self-test checks SHA-1, base64, the handshake and the frame codec, then exits.\n";

bool parse_long(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool parse_double(const char* s, double lo, double hi, double* out) {
  char* end = nullptr;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// Returns "" on success, else an error message. Sets *help when --help was asked.
std::string parse_options(int argc, char** argv, Options* o, bool* help) {
  *help = false;
  bool have_port = false;
  for (int i = 1; i < argc; i++) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      *help = true;
      return "";
    }
    // Flags without a value.
    if (flag == "--hold") {
      o->hold = true;
      continue;
    }
    if (flag == "--self-test") {
      o->self_test = true;
      continue;
    }
    if (flag == "--churn") {
      o->churn = true;
      continue;
    }
    if (flag == "--broadcast") {
      o->broadcast = true;
      continue;
    }
    if (i + 1 >= argc) return "missing value for " + flag;
    const char* v = argv[++i];
    long n = 0;
    bool ok = true;
    if (flag == "--host") {
      o->host = v;
    } else if (flag == "--port") {
      ok = parse_long(v, 1, 65535, &n);
      o->port = static_cast<int>(n);
      have_port = ok;
    } else if (flag == "--conns") {
      ok = parse_long(v, 1, 1000000, &n);
      o->conns = static_cast<int>(n);
    } else if (flag == "--inflight") {
      ok = parse_long(v, 1, 1 << 20, &n);
      o->inflight = static_cast<int>(n);
    } else if (flag == "--size") {
      ok = parse_long(v, 1, 64L << 20, &n);
      o->size = static_cast<size_t>(n);
    } else if (flag == "--duration") {
      ok = parse_double(v, 0.001, 86400, &o->duration_s);
    } else if (flag == "--warmup") {
      ok = parse_double(v, 0, 86400, &o->warmup_s);
    } else if (flag == "--threads") {
      ok = parse_long(v, 1, 1024, &n);
      o->threads = static_cast<int>(n);
    } else if (flag == "--server-pid") {
      ok = parse_long(v, 1, 1L << 30, &n);
      o->server_pid = n;
    } else if (flag == "--proto") {
      o->proto = v;
    } else if (flag == "--msg-type") {
      o->msg_type = v;
      ok = o->msg_type == "binary" || o->msg_type == "text";
    } else if (flag == "--path") {
      o->path = v;
      ok = !o->path.empty() && o->path[0] == '/' && o->path.find_first_of(" \r\n") == std::string::npos;
    } else if (flag == "--host-header") {
      o->host_header = v;
      ok = !o->host_header.empty() && o->host_header.find_first_of(" \r\n") == std::string::npos;
    } else if (flag == "--connect-concurrency") {
      ok = parse_long(v, 1, 1000000, &n);
      o->connect_concurrency = static_cast<int>(n);
    } else if (flag == "--source-ips") {
      o->source_ips = split_commas(v);
      ok = !o->source_ips.empty();
    } else if (flag == "--connect-timeout") {
      ok = parse_double(v, 0.1, 86400, &o->connect_timeout_s);
    } else if (flag == "--rate") {
      ok = parse_double(v, 0, 1e7, &o->rate);
    } else if (flag == "--settle") {
      ok = parse_double(v, 0, 86400, &o->settle_s);
    } else if (flag == "--ping-interval") {
      ok = parse_double(v, 0, 86400, &o->ping_interval_s);
      ok = ok && (o->ping_interval_s == 0 || o->ping_interval_s >= 0.01);
    } else {
      return "unknown flag " + flag;
    }
    if (!ok) return "bad value for " + flag + ": " + v;
  }
  if (o->self_test) return "";
  if (!have_port) return "--port is required";
  if (o->ping_interval_s > 0 && !o->hold) return "--ping-interval needs --hold";
  if (o->ping_interval_s > 0 && o->proto != "ws") return "--ping-interval needs --proto ws";
  if ((o->hold ? 1 : 0) + (o->churn ? 1 : 0) + (o->broadcast ? 1 : 0) > 1) return "--hold, --churn and --broadcast exclude each other";
  if (o->rate > 0 && (o->hold || o->churn || o->broadcast)) return "--rate is for echo mode";
  if (o->broadcast && o->proto != "ws") return "--broadcast needs --proto ws (the server frames each message once for all)";
  if (o->churn) o->inflight = 1;  // one message per connection
  if (o->threads > o->conns) o->threads = o->conns;
  return "";
}

// ---------------------------------------------------------------------------------------------
// Histogram: log-linear buckets over nanoseconds (HdrHistogram's layout with 2^7 sub-buckets).
// Values below 256 ns are exact; above, each power of two is split into 128 linear buckets, so
// a bucket's midpoint is within 0.4% of any value in it. 7424 counters cover the whole uint64.

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kSub = 1ull << kSubBits;  // 128
  static constexpr size_t kBuckets = kSub * 58;       // index max = 128*56 + 255

  Histogram() : counts_(kBuckets, 0) {}

  static size_t index_of(uint64_t v) {
    if (v < 2 * kSub) return static_cast<size_t>(v);
    int top = 63 - __builtin_clzll(v);  // >= 8
    int shift = top - kSubBits;         // >= 1
    uint64_t mant = v >> shift;         // [128, 255]
    return static_cast<size_t>(kSub * static_cast<uint64_t>(shift) + mant);
  }

  // The value that represents a bucket: its midpoint (exact below 256).
  static uint64_t value_of(size_t idx) {
    if (idx < 2 * kSub) return idx;
    uint64_t shift = (idx >> kSubBits) - 1;
    uint64_t mant = idx - kSub * shift;
    uint64_t low = mant << shift;
    return low + ((1ull << shift) >> 1);
  }

  void record(uint64_t v) {
    counts_[index_of(v)]++;
    total_++;
    if (v > max_) max_ = v;
  }

  void merge(const Histogram& o) {
    for (size_t i = 0; i < kBuckets; i++) counts_[i] += o.counts_[i];
    total_ += o.total_;
    max_ = std::max(max_, o.max_);
  }

  // q in (0, 1]: smallest bucket value with at least ceil(q * total) samples at or below it.
  uint64_t percentile(double q) const {
    if (total_ == 0) return 0;
    uint64_t want = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_)));
    if (want < 1) want = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; i++) {
      seen += counts_[i];
      if (seen >= want) return std::min(value_of(i), max_);
    }
    return max_;
  }

  uint64_t total() const { return total_; }
  uint64_t max() const { return max_; }

 private:
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Payload pattern. A message (conn, seq) has a 64-bit seed. Its byte i is
//     table[(seed % kTableLen + i) % kTableLen] ^ byte (i % 8) of (seed & key_mask)
// where table is one fixed pseudo-random block shared by all threads. The offset and the key
// differ per message, so a lost, duplicated, altered or reordered byte (or message) shows; and
// generating or checking costs one 8-byte load, xor and store/compare per 8 bytes, with no
// per-byte arithmetic. The table is stored twice in a row so that any run of up to kTableLen
// bytes is contiguous. Pure functions: generation and checking agree by construction, and
// checking accepts any split of the byte stream.
//
// Two patterns: binary (any byte, the full 64-bit key) and text (printable ASCII, hence valid
// UTF-8, for WebSocket text messages). The text table holds bytes in 0x20..0x5F and its key has
// only the low 5 bits of each byte (key_mask 0x1F..1F): XOR then changes only the low 5 bits, so
// every byte stays inside its 32-byte block, 0x20..0x3F (space to '?') or 0x40..0x5F ('@' to
// '_'). The text key carries 40 bits instead of 64, still ample to tell messages apart.

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pattern words are little-endian");

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
constexpr size_t kTableLen = 65521;  // prime: offsets do not repeat with power-of-two sizes
uint8_t g_bin_table[2 * kTableLen + 8];
uint8_t g_text_table[2 * kTableLen + 8];

struct Pattern {
  const uint8_t* table;
  uint64_t key_mask;
};
const Pattern kBinaryPattern{g_bin_table, ~0ull};
const Pattern kTextPattern{g_text_table, 0x1F1F1F1F1F1F1F1Full};

inline uint64_t mix64(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

void pattern_init() {
  for (size_t i = 0; i < kTableLen; i++) {
    uint64_t r = mix64(i * kGolden + 0x6E65746C6F6F70ull);
    g_bin_table[i] = static_cast<uint8_t>(r >> 29);
    g_text_table[i] = static_cast<uint8_t>(0x20 + ((r >> 41) & 0x3F));
  }
  for (uint8_t* t : {g_bin_table, g_text_table}) {
    memcpy(t + kTableLen, t, kTableLen);
    memcpy(t + 2 * kTableLen, t, 8);
  }
}

inline uint64_t message_seed(uint32_t conn, uint64_t seq) {
  return mix64((static_cast<uint64_t>(conn) << 40) ^ (seq * kGolden));
}

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

inline void store64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }

// The key as it lines up with the message bytes from offset off on (little-endian words).
inline uint64_t key_at(uint64_t key, size_t off) {
  unsigned s = static_cast<unsigned>(off % 8) * 8;
  return s == 0 ? key : (key >> s) | (key << (64 - s));
}

// Calls fn(table_run, key, length) over the runs that make up bytes [off, off + n).
template <typename Fn>
inline bool pattern_runs(const Pattern& pat, uint64_t seed, size_t off, size_t n, Fn fn) {
  const size_t base = static_cast<size_t>(seed % kTableLen);
  const uint64_t key = seed & pat.key_mask;
  while (n > 0) {
    size_t pos = (base + off) % kTableLen;
    size_t run = std::min(n, kTableLen);  // pos < kTableLen, so pos + run <= 2 * kTableLen
    if (!fn(pat.table + pos, key_at(key, off), run)) return false;
    off += run;
    n -= run;
  }
  return true;
}

void pattern_fill(const Pattern& pat, uint64_t seed, uint8_t* out, size_t len) {
  pattern_runs(pat, seed, 0, len, [&out](const uint8_t* t, uint64_t key, size_t run) {
    size_t j = 0;
    for (; j + 8 <= run; j += 8) store64(out + j, load64(t + j) ^ key);
    for (; j < run; j++) out[j] = static_cast<uint8_t>(t[j] ^ (key >> (8 * (j % 8))));
    out += run;
    return true;
  });
}

// Checks n bytes that sit at offset off of the message; true if they all match.
bool pattern_check(const Pattern& pat, uint64_t seed, size_t off, const uint8_t* in, size_t n) {
  return pattern_runs(pat, seed, off, n, [&in](const uint8_t* t, uint64_t key, size_t run) {
    size_t j = 0;
    uint64_t diff = 0;
    for (; j + 8 <= run; j += 8) diff |= (load64(in + j) ^ key) ^ load64(t + j);
    for (; j < run; j++) diff |= static_cast<uint8_t>(in[j] ^ (key >> (8 * (j % 8))) ^ t[j]);
    in += run;
    return diff == 0;
  });
}

// xorshift64*: the per-connection generator for WebSocket masks and handshake keys. A client
// mask only has to be unpredictable to a hostile page's script, which there is none of here;
// what matters is that each frame gets a fresh one, at a few ns per frame.
class XorShift64s {
 public:
  explicit XorShift64s(uint64_t seed) : s_(seed != 0 ? seed : kGolden) {}
  uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }

 private:
  uint64_t s_;
};

// XORs n bytes with the 4-byte WebSocket mask (mask byte j = key >> 8j), 8 bytes at a time.
// The payload starts at mask position 0.
inline void ws_mask(uint8_t* p, size_t n, uint32_t key) {
  const uint64_t k = static_cast<uint64_t>(key) | (static_cast<uint64_t>(key) << 32);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) store64(p + i, load64(p + i) ^ k);
  for (; i < n; i++) p[i] = static_cast<uint8_t>(p[i] ^ (key >> (8 * (i % 4))));
}

// ---------------------------------------------------------------------------------------------
// ByteQueue: bytes waiting for the kernel, as [head, tail) of one buffer. Consuming only moves
// head; live bytes are moved to the front only when appending would otherwise have to grow the
// buffer, so a queue drained by many partial writes costs no more than one copy per byte. The
// memory is kept between uses: the steady state allocates nothing, and nothing is zero-filled.

class ByteQueue {
 public:
  size_t size() const { return tail_ - head_; }
  bool empty() const { return tail_ == head_; }
  const uint8_t* data() const { return buf_.get() + head_; }

  // Room for n more bytes at the end; the caller fills all of them.
  uint8_t* extend(size_t n) {
    if (head_ == tail_) head_ = tail_ = 0;
    if (cap_ - tail_ < n) {
      size_t live = tail_ - head_;
      if (cap_ - live >= n && head_ >= live) {  // enough room once compacted, and it is cheap
        memcpy(buf_.get(), buf_.get() + head_, live);
      } else {
        size_t cap = std::max<size_t>(cap_ * 2, 4096);
        while (cap - live < n) cap *= 2;
        std::unique_ptr<uint8_t[]> bigger(new uint8_t[cap]);
        if (live > 0) memcpy(bigger.get(), buf_.get() + head_, live);
        buf_ = std::move(bigger);
        cap_ = cap;
      }
      head_ = 0;
      tail_ = live;
    }
    uint8_t* at = buf_.get() + tail_;
    tail_ += n;
    return at;
  }

  void append(const uint8_t* p, size_t n) { memcpy(extend(n), p, n); }

  void consume(size_t n) {
    head_ += n;
    if (head_ == tail_) head_ = tail_ = 0;
  }

 private:
  std::unique_ptr<uint8_t[]> buf_;
  size_t cap_ = 0;
  size_t head_ = 0;
  size_t tail_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Protocol layer. One instance per connection (a real protocol keeps parser state).

class PayloadSink {
 public:
  // Echoed payload bytes, in order, in any split. Returns false when the connection failed
  // (the parser must stop delivering).
  virtual bool on_payload(const uint8_t* p, size_t n) = 0;
  // A pong's payload (WebSocket). Default: ignored.
  virtual void on_pong(const uint8_t* p, size_t n) {
    (void)p;
    (void)n;
  }

 protected:
  ~PayloadSink() = default;
};

// What went wrong in parse(); error() has the words.
enum class ParseError {
  kNone,
  kHandshake,   // the upgrade response was not a valid 101 for our key
  kProtocol,    // a frame the protocol does not allow (masked server frame, bad opcode, ...)
  kVerify,      // a well-formed echo that is not what was sent (opcode, length)
  kPeerClosed,  // the server sent a close frame
};

class Protocol {
 public:
  virtual ~Protocol() = default;
  virtual const char* name() const = 0;
  // Called once the TCP connection is up; may queue bytes (e.g. an HTTP upgrade request).
  virtual void on_open(ByteQueue& out) { (void)out; }
  // True once messages may be sent (after a handshake, for protocols that have one).
  virtual bool ready() const { return true; }
  // Framing one outgoing message is two calls, so the payload is generated in place, never
  // copied: frame_begin appends the frame's header (if any) and room for len payload bytes to
  // out and returns where the payload goes; the caller writes it; frame_end finishes the frame
  // (a WebSocket client masks the payload there). Nothing else may touch out in between.
  virtual uint8_t* frame_begin(size_t len, ByteQueue& out) = 0;
  virtual void frame_end(uint8_t* payload, size_t len) {
    (void)payload;
    (void)len;
  }
  // Queues a close frame with a status code (WebSocket). False if the protocol has none: the
  // caller then shuts down the TCP write side instead.
  virtual bool close_frame(uint16_t code, ByteQueue& out) {
    (void)code;
    (void)out;
    return false;
  }
  // Queues a ping carrying n <= 125 bytes. False if the protocol has no pings.
  virtual bool ping(const uint8_t* p, size_t n, ByteQueue& out) {
    (void)p;
    (void)n;
    (void)out;
    return false;
  }
  // Consumes wire bytes; may queue replies (a pong) on out. Returns kNone, or the error (then
  // error() says what). Delivery to the sink stops (and kNone is returned) when the sink returns
  // false.
  virtual ParseError parse(const uint8_t* in, size_t n, PayloadSink& sink, ByteQueue& out) = 0;
  virtual const char* error() const { return ""; }
  // Pings the server sent (and this side answered).
  virtual uint64_t server_pings() const { return 0; }
};

// Raw TCP: the wire is the payload. Message boundaries are the receiver's business (it knows the
// size of each message it sent).
class TcpProtocol final : public Protocol {
 public:
  const char* name() const override { return "tcp"; }
  uint8_t* frame_begin(size_t len, ByteQueue& out) override { return out.extend(len); }
  ParseError parse(const uint8_t* in, size_t n, PayloadSink& sink, ByteQueue& out) override {
    (void)out;
    sink.on_payload(in, n);
    return ParseError::kNone;
  }
};

// What every WebSocket connection of a run shares.
struct WsConfig {
  std::string path = "/";
  std::string host_header;  // the Host header's value
  uint8_t opcode = 2;       // of every message sent, and so of every echo: 1 text, 2 binary
  size_t msg_size = 0;      // of every message sent, and so of every echo
};

// An RFC 6455 client, as far as an echo benchmark needs one:
//   - on_open queues the upgrade request with a random 16-byte Sec-WebSocket-Key; parse()
//     takes the response head (at most 8 KiB), which must be "HTTP/1.1 101" with Upgrade:
//     websocket, Connection: upgrade and the right Sec-WebSocket-Accept, and no extension or
//     subprotocol (none is offered);
//   - every frame sent is one whole message (FIN set), masked with a fresh key;
//   - the server's frames must be unmasked, RSV bits clear; 7-, 16- and 64-bit lengths; data
//     messages may be fragmented (continuation frames), and each message must have the opcode
//     and the size of the messages sent; its payload goes to the sink, which checks every byte;
//   - a ping is answered with a masked pong carrying the same payload; a pong goes to the sink;
//     a close frame is an error (an echo server has no reason to close).
// Frame parsing is a state machine without I/O: each state stops when the bytes run out.
class WsProtocol final : public Protocol {
 public:
  static constexpr size_t kMaxHead = 8192;

  WsProtocol(const WsConfig& cfg, uint64_t seed) : cfg_(cfg), rng_(seed) {}

  const char* name() const override { return "ws"; }
  bool ready() const override { return st_ != St::kHead; }
  const char* error() const override { return err_.c_str(); }

  void on_open(ByteQueue& out) override {
    uint8_t key[16];
    store64(key, rng_.next());
    store64(key + 8, rng_.next());
    char key64[25];
    nl_base64(key, sizeof key, key64);
    nl_ws_accept(key64, 24, accept_);
    std::string req;
    req.reserve(160 + cfg_.path.size() + cfg_.host_header.size());
    req += "GET ";
    req += cfg_.path;
    req += " HTTP/1.1\r\nHost: ";
    req += cfg_.host_header;
    req += "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
    req += key64;
    req += "\r\nSec-WebSocket-Version: 13\r\n\r\n";
    out.append(reinterpret_cast<const uint8_t*>(req.data()), req.size());
  }

  uint8_t* frame_begin(size_t len, ByteQueue& out) override { return header(cfg_.opcode, len, out); }
  void frame_end(uint8_t* payload, size_t len) override { ws_mask(payload, len, mask_); }

  bool ping(const uint8_t* p, size_t n, ByteQueue& out) override {
    control(kPing, p, n, out);
    return true;
  }

  bool close_frame(uint16_t code, ByteQueue& out) override {
    const uint8_t p[2] = {static_cast<uint8_t>(code >> 8), static_cast<uint8_t>(code & 0xFF)};
    control(kClose, p, 2, out);
    return true;
  }

  ParseError parse(const uint8_t* in, size_t n, PayloadSink& sink, ByteQueue& out) override {
    const uint8_t* p = in;
    const uint8_t* const end = in + n;
    if (st_ == St::kHead) {
      p = parse_head(p, end);
      if (p == nullptr) return ParseError::kHandshake;
    }
    while (p < end) {
      switch (st_) {
        case St::kHead:
          return ParseError::kNone;  // not reached: parse_head consumed everything or finished
        case St::kHeader: {
          size_t take = std::min<size_t>(hdr_need_ - hdr_len_, static_cast<size_t>(end - p));
          memcpy(hdr_ + hdr_len_, p, take);
          hdr_len_ += take;
          p += take;
          if (hdr_len_ < hdr_need_) break;  // p == end: wait for more
          if (hdr_need_ == 2) {
            if (hdr_[1] & 0x80) return fail(ParseError::kProtocol, "server frame is masked");
            unsigned len7 = hdr_[1] & 0x7F;
            hdr_need_ = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
            if (hdr_need_ > 2) break;  // the extended length is next
          }
          ParseError e = on_header(sink, out);
          if (e != ParseError::kNone) return e;
          break;
        }
        case St::kPayload: {
          size_t take = static_cast<size_t>(std::min<uint64_t>(left_, static_cast<uint64_t>(end - p)));
          left_ -= take;
          const uint8_t* chunk = p;
          p += take;
          if (!sink.on_payload(chunk, take)) return ParseError::kNone;  // the connection failed
          if (left_ == 0) end_data_frame();
          break;
        }
        case St::kControl: {
          size_t take = std::min<size_t>(ctrl_need_ - ctrl_len_, static_cast<size_t>(end - p));
          memcpy(ctrl_ + ctrl_len_, p, take);
          ctrl_len_ += take;
          p += take;
          if (ctrl_len_ == ctrl_need_) {
            ParseError e = on_control(sink, out);
            if (e != ParseError::kNone) return e;
          }
          break;
        }
      }
    }
    return ParseError::kNone;
  }

  uint64_t server_pings() const override { return server_pings_; }

 private:
  enum class St { kHead, kHeader, kPayload, kControl };
  static constexpr uint8_t kCont = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9,
                           kPong = 0xA;

  ParseError fail(ParseError e, std::string what) {
    err_ = std::move(what);
    return e;
  }

  // Appends a masked frame's header and room for len payload bytes; returns the payload's place.
  // The mask is drawn here and applied by frame_end/control.
  uint8_t* header(uint8_t opcode, size_t len, ByteQueue& out) {
    const size_t ext = len < 126 ? 0 : len <= 0xFFFF ? 2 : 8;
    uint8_t* h = out.extend(2 + ext + 4 + len);
    h[0] = static_cast<uint8_t>(0x80 | opcode);
    if (ext == 0) {
      h[1] = static_cast<uint8_t>(0x80 | len);
    } else if (ext == 2) {
      h[1] = 0x80 | 126;
      h[2] = static_cast<uint8_t>(len >> 8);
      h[3] = static_cast<uint8_t>(len);
    } else {
      h[1] = 0x80 | 127;
      for (int i = 0; i < 8; i++) h[2 + i] = static_cast<uint8_t>(static_cast<uint64_t>(len) >> (56 - 8 * i));
    }
    mask_ = static_cast<uint32_t>(rng_.next() >> 32);
    memcpy(h + 2 + ext, &mask_, 4);  // wire byte j = mask_ >> 8j, as ws_mask expects
    return h + 2 + ext + 4;
  }

  void control(uint8_t opcode, const uint8_t* p, size_t n, ByteQueue& out) {
    uint8_t* payload = header(opcode, n, out);
    if (n > 0) memcpy(payload, p, n);
    ws_mask(payload, n, mask_);
  }

  // The upgrade response. Returns where the frames start (end when the head is not complete
  // yet), or nullptr on a bad response.
  const uint8_t* parse_head(const uint8_t* p, const uint8_t* end) {
    const size_t old = head_.size();
    const size_t take = std::min<size_t>(static_cast<size_t>(end - p), kMaxHead + 4 - old);
    head_.append(reinterpret_cast<const char*>(p), take);
    size_t term = head_.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
    if (term == std::string::npos) {
      if (head_.size() > kMaxHead) {
        fail(ParseError::kHandshake, "handshake: response head over 8 KiB");
        return nullptr;
      }
      return end;
    }
    const size_t head_len = term + 4;
    if (!check_head(head_.substr(0, head_len))) return nullptr;
    std::string().swap(head_);  // give the memory back: thousands of idle connections
    st_ = St::kHeader;
    return p + (head_len - old);
  }

  static bool iequals(const std::string& a, const char* b) {
    size_t n = strlen(b);
    if (a.size() != n) return false;
    for (size_t i = 0; i < n; i++) {
      if (tolower(static_cast<unsigned char>(a[i])) != tolower(static_cast<unsigned char>(b[i]))) return false;
    }
    return true;
  }

  static std::string trim(const std::string& s) {
    size_t a = s.find_first_not_of(" \t");
    if (a == std::string::npos) return "";
    size_t b = s.find_last_not_of(" \t");
    return s.substr(a, b - a + 1);
  }

  bool check_head(const std::string& head) {
    size_t eol = head.find("\r\n");
    const std::string status = head.substr(0, eol);
    if (status.compare(0, 12, "HTTP/1.1 101") != 0 || (status.size() > 12 && status[12] != ' ')) {
      fail(ParseError::kHandshake, "handshake: server answered \"" + status.substr(0, 80) + "\"");
      return false;
    }
    bool upgrade = false, connection = false, accept = false;
    size_t pos = eol + 2;
    while (pos < head.size()) {
      size_t next = head.find("\r\n", pos);
      if (next == pos) break;  // the blank line
      const std::string line = head.substr(pos, next - pos);
      pos = next + 2;
      size_t colon = line.find(':');
      if (colon == std::string::npos) {
        fail(ParseError::kHandshake, "handshake: malformed header line");
        return false;
      }
      const std::string name = trim(line.substr(0, colon));
      const std::string value = trim(line.substr(colon + 1));
      if (iequals(name, "upgrade")) {
        upgrade = iequals(value, "websocket");
      } else if (iequals(name, "connection")) {
        for (const std::string& tok : split_commas(value)) connection = connection || iequals(trim(tok), "upgrade");
      } else if (iequals(name, "sec-websocket-accept")) {
        accept = value == accept_;
        if (!accept) {
          fail(ParseError::kHandshake, "handshake: wrong Sec-WebSocket-Accept \"" + value.substr(0, 40) + "\"");
          return false;
        }
      } else if (iequals(name, "sec-websocket-extensions") || iequals(name, "sec-websocket-protocol")) {
        fail(ParseError::kHandshake, "handshake: server chose " + name + " the client did not offer");
        return false;
      }
    }
    if (!upgrade || !connection || !accept) {
      fail(ParseError::kHandshake, std::string("handshake: 101 without ") +
                                       (!upgrade ? "Upgrade: websocket" : !connection ? "Connection: upgrade" : "Sec-WebSocket-Accept"));
      return false;
    }
    return true;
  }

  ParseError on_header(PayloadSink& sink, ByteQueue& out) {
    const uint8_t b0 = hdr_[0];
    const unsigned len7 = hdr_[1] & 0x7F;
    uint64_t len = len7;
    if (len7 == 126) {
      len = (static_cast<uint64_t>(hdr_[2]) << 8) | hdr_[3];
    } else if (len7 == 127) {
      len = 0;
      for (int i = 0; i < 8; i++) len = (len << 8) | hdr_[2 + i];
      if (len >> 63) return fail(ParseError::kProtocol, "64-bit frame length with the top bit set");
    }
    hdr_len_ = 0;
    hdr_need_ = 2;
    if (b0 & 0x70) return fail(ParseError::kProtocol, "RSV bits set, but no extension was negotiated");
    const bool fin = (b0 & 0x80) != 0;
    const uint8_t op = b0 & 0x0F;
    if (op & 0x8) {
      if (op != kClose && op != kPing && op != kPong) return fail(ParseError::kProtocol, "reserved control opcode " + std::to_string(op));
      if (!fin || len > 125) return fail(ParseError::kProtocol, "fragmented or over-long control frame");
      ctrl_op_ = op;
      ctrl_len_ = 0;
      ctrl_need_ = static_cast<size_t>(len);
      st_ = St::kControl;
      return ctrl_need_ == 0 ? on_control(sink, out) : ParseError::kNone;
    }
    if (op == kCont) {
      if (!in_msg_) return fail(ParseError::kProtocol, "continuation frame outside a message");
    } else if (op == kText || op == kBinary) {
      if (in_msg_) return fail(ParseError::kProtocol, "new message inside a fragmented one");
      if (op != cfg_.opcode) {
        return fail(ParseError::kVerify, std::string("echoed a ") + (op == kText ? "text" : "binary") + " message for a " +
                                             (cfg_.opcode == kText ? "text" : "binary") + " one");
      }
      in_msg_ = true;
      msg_len_ = 0;
    } else {
      return fail(ParseError::kProtocol, "reserved data opcode " + std::to_string(op));
    }
    msg_len_ += len;
    // The length is known from the header: a wrong size fails before its payload arrives.
    if (msg_len_ > cfg_.msg_size || (fin && msg_len_ != cfg_.msg_size)) {
      return fail(ParseError::kVerify, "echoed message of " + std::to_string(msg_len_) + (fin ? "" : "+") +
                                           " bytes for one of " + std::to_string(cfg_.msg_size));
    }
    fin_ = fin;
    left_ = len;
    st_ = St::kPayload;
    if (len == 0) end_data_frame();
    return ParseError::kNone;
  }

  void end_data_frame() {
    if (fin_) in_msg_ = false;
    st_ = St::kHeader;
  }

  ParseError on_control(PayloadSink& sink, ByteQueue& out) {
    st_ = St::kHeader;
    if (ctrl_op_ == kPing) {
      server_pings_++;
      control(kPong, ctrl_, ctrl_len_, out);
    } else if (ctrl_op_ == kPong) {
      sink.on_pong(ctrl_, ctrl_len_);
    } else {
      unsigned code = ctrl_len_ >= 2 ? (static_cast<unsigned>(ctrl_[0]) << 8 | ctrl_[1]) : 1005;
      return fail(ParseError::kPeerClosed, "server sent a close frame (code " + std::to_string(code) + ")");
    }
    return ParseError::kNone;
  }

  const WsConfig& cfg_;
  XorShift64s rng_;
  St st_ = St::kHead;
  char accept_[NL_WS_ACCEPT_LEN + 1] = {0};
  std::string head_;  // the response head while it arrives
  std::string err_;
  uint32_t mask_ = 0;  // of the frame being built
  // Frame header being collected.
  uint8_t hdr_[14] = {0};
  size_t hdr_len_ = 0;
  size_t hdr_need_ = 2;
  // Data frame / message.
  bool in_msg_ = false;
  bool fin_ = false;
  uint64_t left_ = 0;     // payload bytes of this frame still to come
  uint64_t msg_len_ = 0;  // payload bytes of this message so far (frames announced)
  // Control frame being collected.
  uint8_t ctrl_op_ = 0;
  uint8_t ctrl_[125] = {0};
  size_t ctrl_len_ = 0;
  size_t ctrl_need_ = 0;
  uint64_t server_pings_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Shared run parameters and per-worker stats.

// Broadcast mode: what the publisher (connection 0) and every receiving connection share across
// threads. Message seq uses slot seq % W (W = --inflight broadcasts in flight). A receiver that
// completes a message bumps the slot's count; the one that makes it `expected` (every
// connection has it) marks the slot done and wakes the publisher through an eventfd. The
// publisher reuses a slot only once the message W before has reached everyone, so at most W
// broadcasts are in flight and a slow receiver slows the publisher (a closed loop, as in echo).
struct Broadcast {
  explicit Broadcast(size_t window)
      : slot_count(new std::atomic<uint64_t>[window]),
        slot_time(new std::atomic<uint64_t>[window]),
        slot_done(new std::atomic<uint64_t>[window]) {
    for (size_t i = 0; i < window; i++) {
      slot_count[i].store(0);
      slot_time[i].store(0);
      slot_done[i].store(0);
    }
  }
  std::atomic<uint64_t> published{0};  // messages sent so far (only the publisher writes it)
  std::atomic<bool> broken{false};     // a connection failed: no message can reach everyone
  uint64_t expected = 0;               // receivers per message: connections ready at the start
  std::unique_ptr<std::atomic<uint64_t>[]> slot_count;  // receivers that completed the slot's message
  std::unique_ptr<std::atomic<uint64_t>[]> slot_time;   // when its message was queued for sending
  std::unique_ptr<std::atomic<uint64_t>[]> slot_done;   // seq + 1 of the last message that reached all
  int efd = -1;                                         // the publisher's wake-up
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

struct Stats {
  uint64_t messages = 0;  // messages whose echo completed inside the measured window
  uint64_t errors = 0;    // failed connections, any reason (verify failures included)
  uint64_t verify_failures = 0;
  uint64_t handshake_failures = 0;  // connected, but failed before the protocol was ready
  uint64_t conns_ok = 0;  // echo: >= 1 echo completed; hold: upgraded; never failed, open at the end
  uint64_t connect_retries = 0;
  uint64_t upgraded = 0;       // connections that became ready
  uint64_t last_ready_ns = 0;  // when the last of them did
  uint64_t pings_sent = 0;
  uint64_t pongs_received = 0;     // pongs that matched the outstanding ping
  uint64_t pongs_unexpected = 0;   // other pongs (allowed by RFC 6455, ignored)
  uint64_t pings_unanswered = 0;   // no pong by the next ping, or by the end (+ grace)
  uint64_t server_pings = 0;       // pings the server sent (answered)
  Histogram hist;   // echo: message round trips (--rate: from when each was due); hold: ping
                    // round trips; churn: whole cycles; broadcast: publish to each delivery
  Histogram lag;    // --rate: how late each message was sent after it was due (the generator's lag)
  Histogram fanout; // broadcast: publish to the last connection having the message
  uint64_t broadcasts = 0;  // broadcast: messages that reached every connection in the window
  uint64_t backlog = 0;     // --rate: messages due but not echoed when the run ended
};

enum class ConnState { kIdle, kConnecting, kOpen, kClosed };

class Worker;

class Conn final : public PayloadSink {
 public:
  int fd = -1;
  uint32_t id = 0;  // global connection id, part of every payload seed
  ConnState state = ConnState::kIdle;
  bool want_out = false;     // EPOLLOUT armed
  bool ready_seen = false;   // protocol ready (upgraded); echo: initial window sent
  bool in_progress = false;  // counts against the connect concurrency
  uint8_t attempts = 0;      // connects tried
  bool ping_outstanding = false;
  uint64_t ping_payload = 0;
  uint64_t ping_sent_at = 0;
  std::unique_ptr<Protocol> proto;
  ByteQueue out;
  uint64_t send_seq = 0;   // next message to send
  uint64_t recv_seq = 0;   // message whose echo is arriving
  size_t recv_off = 0;     // bytes of it already checked
  uint64_t recv_seed = 0;  // message_seed(id, recv_seq)
  std::vector<uint64_t> sent_at;  // ring of W send times, indexed by seq % W
  Worker* worker = nullptr;
  // --rate: messages due so far, and this connection's offset in the schedule.
  uint64_t due_seq = 0;
  uint64_t phase_ns = 0;
  // Churn: when this cycle's first connect began; closing: our close is out, waiting for the end.
  uint64_t cycle_start = 0;
  uint64_t cycles = 0;
  bool closing = false;
  bool close_seen = false;  // ws: the server's close frame arrived

  bool on_payload(const uint8_t* p, size_t n) override;
  void on_pong(const uint8_t* p, size_t n) override;
};

std::unique_ptr<Protocol> make_protocol(const Plan& plan, uint32_t conn_id) {
  if (plan.opt.proto == "tcp") return std::unique_ptr<Protocol>(new TcpProtocol());
  if (plan.opt.proto == "ws") {
    return std::unique_ptr<Protocol>(new WsProtocol(plan.ws, mix64(plan.seed ^ (static_cast<uint64_t>(conn_id) * kGolden))));
  }
  return nullptr;
}

bool protocol_known(const std::string& name) { return name == "tcp" || name == "ws"; }

class Worker {
 public:
  Worker(const Plan& plan, PhaseSync& sync, uint32_t first_id, uint32_t count, int connect_limit)
      : plan_(plan), sync_(sync), conns_(count), rbuf_(kReadBuf), limit_(std::max(1, connect_limit)) {
    const double period = plan.opt.rate > 0 ? 1e9 / plan.opt.rate : 0;
    for (uint32_t i = 0; i < count; i++) {
      conns_[i].id = first_id + i;
      conns_[i].worker = this;
      if (!plan.opt.hold) conns_[i].sent_at.assign(static_cast<size_t>(plan.opt.inflight), 0);
      // --rate: connections are spread evenly over one period (all threads together), so the
      // server sees a steady stream rather than all connections at once.
      conns_[i].phase_ns = static_cast<uint64_t>(period * (static_cast<double>(first_id + i) + 0.5) / plan.opt.conns);
    }
    // Churn has no connect phase: slots connect, talk and close until the end.
    connecting_ = !plan.opt.churn;
    publisher_ = plan.opt.broadcast && first_id == 0 && count > 0;
  }

  void run();
  const Stats& stats() const { return stats_; }
  const Plan& plan() const { return plan_; }

  // Called from Conn::on_payload when a message's echo is complete.
  void message_done(Conn& c);
  // The seed of message seq as this connection receives it.
  uint64_t seed_of(const Conn& c, uint64_t seq) const {
    return message_seed(plan_.opt.broadcast ? kBroadcastId : c.id, seq);
  }
  // Called from Conn::on_pong for the pong of the outstanding ping.
  void pong_matched(Conn& c);
  void pong_unexpected() { stats_.pongs_unexpected++; }
  void fail(Conn& c, bool verify, const char* what, int err);

 private:
  // Read budget per readiness event: bounded so one busy connection cannot starve the others
  // (level-triggered epoll reports the rest on the next wait).
  static constexpr int kReadsPerEvent = 4;
  static constexpr size_t kReadBuf = 256 << 10;
  static constexpr int kMaxEvents = 1024;
  // ECONNREFUSED (a full listen backlog can refuse) and EAGAIN/EADDRNOTAVAIL (no local port
  // free yet) are retried after 50, 100, 150, 200 ms; then the connection fails.
  static constexpr int kMaxAttempts = 5;
  static constexpr uint64_t kRetryStepNs = 50'000'000;

  void open_more();
  void start_connect(Conn& c);
  bool retry_later(Conn& c, int err);
  void leave_progress(Conn& c);
  void connect_phase_check();
  void connect_deadline();
  void on_event(Conn& c, uint32_t events);
  void on_connected(Conn& c);
  void on_ready(Conn& c);
  void start_messages(Conn& c);
  void send_message(Conn& c);
  void on_readable(Conn& c);
  void flush(Conn& c);
  void set_want_out(Conn& c, bool on);
  void close_conn(Conn& c);
  bool phase_step();
  void send_due_pings(uint64_t start, uint64_t end);
  void send_ping(Conn& c, uint64_t round);
  void send_due_messages();
  uint64_t due_at(const Conn& c, uint64_t seq) const;
  void churn_close(Conn& c);
  void churn_done(Conn& c);
  void churn_restart(Conn& c, uint64_t at);
  void publish_more();
  void broadcast_delivered(Conn& c);
  uint64_t wait_timeout_ns();
  void finish();

  const Plan& plan_;
  PhaseSync& sync_;
  std::vector<Conn> conns_;
  std::vector<uint8_t> rbuf_;
  int ep_ = -1;
  uint64_t now_ = 0;  // time of the event being handled
  Stats stats_;
  // Connecting.
  const int limit_;            // connects + handshakes in progress at once
  int in_progress_ = 0;
  size_t next_open_ = 0;       // conns_[next_open_..] not tried yet
  using Retry = std::pair<uint64_t, uint32_t>;  // (due time, index)
  std::priority_queue<Retry, std::vector<Retry>, std::greater<Retry>> retries_;
  bool connecting_ = true;     // until every connection is ready or failed
  // Phases, from PhaseSync once published (0 before).
  uint64_t start_ = 0;
  uint64_t end_ = 0;           // echo: stats stop, nothing more is sent; hold: pings stop
  uint64_t t_measure_ = 0;     // echo: stats count from here (start + warmup)
  // Hold mode pings: round r of connection k is due at start + interval * (r + (k + 1) / m).
  uint64_t ping_round_ = 0;
  size_t ping_next_ = 0;
  uint64_t next_ping_due_ = 0;
  uint64_t outstanding_ = 0;  // pings without their pong yet
  // --rate: round r of connection k is due at start + phase(k) + r * period.
  uint64_t rate_round_ = 0;
  size_t rate_next_ = 0;
  uint64_t next_msg_due_ = 0;
  // Churn: source addresses taken in turn, one per connect.
  size_t src_next_ = 0;
  // Broadcast: this worker holds connection 0, the publisher.
  bool publisher_ = false;
};

// epoll_data of the publisher's eventfd (connection indexes are smaller).
constexpr uint64_t kWakeToken = ~0ull;

bool Conn::on_payload(const uint8_t* p, size_t n) {
  const Plan& plan = worker->plan();
  const size_t size = plan.opt.size;
  // What may arrive: the messages this connection sent (echo), or those published (broadcast).
  const uint64_t limit = plan.bc != nullptr ? plan.bc->published.load(std::memory_order_acquire) : send_seq;
  while (n > 0) {
    if (recv_seq >= limit) {  // the server sent more than it was sent
      worker->fail(*this, true, plan.bc != nullptr ? "bytes beyond what was published" : "bytes beyond what was sent", 0);
      return false;
    }
    size_t take = std::min(n, size - recv_off);
    if (!pattern_check(plan.pattern, recv_seed, recv_off, p, take)) {
      worker->fail(*this, true, "echoed bytes differ from the bytes sent", 0);
      return false;
    }
    p += take;
    n -= take;
    recv_off += take;
    if (recv_off == size) {
      worker->message_done(*this);
      if (state != ConnState::kOpen) return false;
    }
  }
  return true;
}

void Conn::on_pong(const uint8_t* p, size_t n) {
  if (ping_outstanding && n == 8 && load64(p) == ping_payload) {
    worker->pong_matched(*this);
  } else {
    worker->pong_unexpected();
  }
}

void Worker::fail(Conn& c, bool verify, const char* what, int err) {
  if (c.state == ConnState::kClosed) return;
  stats_.errors++;
  if (verify) stats_.verify_failures++;
  if (c.state == ConnState::kOpen && !c.ready_seen) stats_.handshake_failures++;
  if (c.ping_outstanding) {
    c.ping_outstanding = false;  // the connection's failure is the error, not the ping
    outstanding_--;
  }
  // Say why, but do not flood stderr when a server drops thousands of connections at once.
  if (stats_.errors <= 5) {
    if (err != 0) {
      fprintf(stderr, "loadgen: conn %u: %s: %s\n", c.id, what, strerror(err));
    } else if (!verify) {
      fprintf(stderr, "loadgen: conn %u: %s\n", c.id, what);
    } else {
      fprintf(stderr, "loadgen: conn %u: %s (message %" PRIu64 ", offset %zu)\n", c.id, what,
              c.recv_seq, c.recv_off);
    }
  }
  leave_progress(c);
  close_conn(c);
  // Broadcast: this connection will never complete a message, so no message can reach everyone
  // any more: the publisher stops (the error is reported, the run fails).
  if (plan_.bc != nullptr) plan_.bc->broken.store(true, std::memory_order_relaxed);
  // Churn: the slot goes on (after a pause, so a refusing server is not hammered); the error counts.
  if (plan_.opt.churn && start_ != 0 && now_ < end_) churn_restart(c, now_ + 10'000'000);
}

void Worker::close_conn(Conn& c) {
  if (c.fd >= 0) close(c.fd);  // close() also drops the fd from the epoll set
  c.fd = -1;
  c.state = ConnState::kClosed;
}

void Worker::set_want_out(Conn& c, bool on) {
  if (c.want_out == on) return;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u);
  ev.data.u64 = static_cast<uint64_t>(&c - conns_.data());
  if (epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev) != 0) {
    fail(c, false, "epoll_ctl", errno);
    return;
  }
  c.want_out = on;
}

// Opens connections while fewer than limit_ are connecting or upgrading: due retries first,
// then the ones not tried yet.
void Worker::open_more() {
  while (in_progress_ < limit_) {
    Conn* c = nullptr;
    if (!retries_.empty() && retries_.top().first <= now_) {
      c = &conns_[retries_.top().second];
      retries_.pop();
    } else if (next_open_ < conns_.size()) {
      c = &conns_[next_open_++];
    } else {
      break;
    }
    start_connect(*c);
  }
  connect_phase_check();
}

void Worker::start_connect(Conn& c) {
  if (!c.proto) {
    c.proto = make_protocol(plan_, c.id);
    c.recv_seed = seed_of(c, c.recv_seq);  // churn: recv_seq goes on over the cycles
  }
  c.attempts++;
  if (c.attempts == 1) c.cycle_start = now_;
  c.in_progress = true;
  in_progress_++;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail(c, false, "socket", errno);  // state kIdle: counted, nothing to close
    c.state = ConnState::kClosed;
    return;
  }
  c.fd = fd;
  c.state = ConnState::kConnecting;
  c.want_out = false;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!plan_.sources.empty()) {
    // Port chosen at connect() from the full 4-tuple, not reserved by bind(): with several
    // source addresses each gets its own ~28k ephemeral ports towards the server's address.
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    // Churn takes the addresses in turn, one per connect; the other modes one per connection.
    const size_t k = plan_.opt.churn ? src_next_++ : c.id;
    const sockaddr_in& src = plan_.sources[k % plan_.sources.size()];
    if (bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0) {
      fail(c, false, "bind to the source address", errno);
      return;
    }
  }
  int rc = connect(fd, reinterpret_cast<const sockaddr*>(&plan_.addr), sizeof plan_.addr);
  if (rc != 0 && errno != EINPROGRESS) {
    int err = errno;
    if (!retry_later(c, err)) fail(c, false, "connect", err);
    return;
  }
  // Connecting: wait for writability, then read SO_ERROR (a refused connect shows as
  // EPOLLERR|EPOLLOUT). A connect that completed at once gets the same path.
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = static_cast<uint64_t>(&c - conns_.data());
  if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    fail(c, false, "epoll_ctl add", errno);
    return;
  }
  c.want_out = true;
}

// A connect that may work a moment later: close, and try again after a pause. False when the
// error is not one of those or the attempts are used up.
bool Worker::retry_later(Conn& c, int err) {
  if (err != ECONNREFUSED && err != EAGAIN && err != EADDRNOTAVAIL) return false;
  if (c.attempts >= kMaxAttempts) return false;
  if (c.fd >= 0) close(c.fd);
  c.fd = -1;
  c.state = ConnState::kIdle;
  c.want_out = false;
  leave_progress(c);
  stats_.connect_retries++;
  retries_.push({now_ + kRetryStepNs * c.attempts, static_cast<uint32_t>(&c - conns_.data())});
  return true;
}

void Worker::leave_progress(Conn& c) {
  if (!c.in_progress) return;
  c.in_progress = false;
  in_progress_--;
}

// Once every connection is ready or failed, tell the main thread (once).
void Worker::connect_phase_check() {
  if (!connecting_) return;
  if (next_open_ < conns_.size() || !retries_.empty() || in_progress_ > 0) return;
  connecting_ = false;
  sync_.connecting.fetch_sub(1, std::memory_order_release);
}

// --connect-timeout passed: whatever is not ready now fails.
void Worker::connect_deadline() {
  for (Conn& c : conns_) {
    if (c.state == ConnState::kClosed || c.ready_seen) continue;
    fail(c, false, "not upgraded within --connect-timeout", 0);
  }
  next_open_ = conns_.size();
  while (!retries_.empty()) retries_.pop();
  connect_phase_check();
}

void Worker::on_connected(Conn& c) {
  c.state = ConnState::kOpen;
  now_ = now_ns();
  c.proto->on_open(c.out);
  if (c.proto->ready()) on_ready(c);
  if (c.state == ConnState::kOpen) flush(c);  // also disarms EPOLLOUT once the queue is empty
}

// The protocol is ready (TCP: connected; WebSocket: upgraded).
void Worker::on_ready(Conn& c) {
  c.ready_seen = true;
  leave_progress(c);
  stats_.upgraded++;
  stats_.last_ready_ns = now_;
  if (!plan_.opt.hold && start_ != 0) start_messages(c);  // (not reached: start_ waits for all)
}

void Worker::start_messages(Conn& c) {
  // --rate follows its schedule and broadcast has one publisher: neither starts a window here.
  if (now_ >= end_ || plan_.opt.rate > 0 || plan_.bc != nullptr) return;
  for (int i = 0; i < plan_.opt.inflight; i++) send_message(c);
}

void Worker::send_message(Conn& c) {
  const size_t size = plan_.opt.size;
  uint64_t seq = c.send_seq++;
  uint8_t* payload = c.proto->frame_begin(size, c.out);
  pattern_fill(plan_.pattern, message_seed(c.id, seq), payload, size);
  c.proto->frame_end(payload, size);
  if (plan_.opt.rate > 0) {
    // Open loop: latency counts from when the message was due, not from when it went out, so
    // a server that falls behind (and makes the generator wait for a free slot) shows it in the
    // latency rather than hiding it (no coordinated omission). The lag is reported apart.
    const uint64_t due = due_at(c, seq);
    c.sent_at[seq % c.sent_at.size()] = due;
    if (now_ >= t_measure_ && now_ < end_) stats_.lag.record(now_ > due ? now_ - due : 0);
  } else {
    c.sent_at[seq % c.sent_at.size()] = now_;
  }
}

uint64_t Worker::due_at(const Conn& c, uint64_t seq) const {
  return start_ + c.phase_ns + static_cast<uint64_t>(1e9 / plan_.opt.rate * static_cast<double>(seq));
}

void Worker::message_done(Conn& c) {
  if (plan_.bc != nullptr) {
    broadcast_delivered(c);
    return;
  }
  // Echoes arrive in order, so the oldest in-flight slot is this message's.
  uint64_t sent = c.sent_at[c.recv_seq % c.sent_at.size()];
  c.recv_seq++;
  c.recv_off = 0;
  c.recv_seed = seed_of(c, c.recv_seq);
  if (plan_.opt.churn) {  // the cycle's one message is back: close (the cycle counts once closed)
    churn_close(c);
    return;
  }
  if (now_ >= t_measure_ && now_ < end_) {
    stats_.messages++;
    stats_.hist.record(now_ > sent ? now_ - sent : 0);
  }
  if (now_ >= end_) return;
  if (plan_.opt.rate > 0) {
    // Messages that became due while the window was full go out now.
    const uint64_t cap = static_cast<uint64_t>(plan_.opt.inflight);
    while (c.send_seq < c.due_seq && c.send_seq - c.recv_seq < cap) send_message(c);
    return;
  }
  send_message(c);
}

// --rate: sends every message that is due by now (each connection's schedule is fixed at the
// start) and notes when the next one is.
void Worker::send_due_messages() {
  next_msg_due_ = 0;
  if (conns_.empty()) return;
  const double period = 1e9 / plan_.opt.rate;
  const uint64_t cap = static_cast<uint64_t>(plan_.opt.inflight);
  for (;;) {
    Conn& c = conns_[rate_next_];
    const uint64_t due = start_ + c.phase_ns + static_cast<uint64_t>(period * static_cast<double>(rate_round_));
    if (due >= end_) return;
    if (due > now_) {
      next_msg_due_ = due;
      return;
    }
    if (c.state == ConnState::kOpen && c.ready_seen) {
      c.due_seq = rate_round_ + 1;
      bool sent = false;
      while (c.send_seq < c.due_seq && c.send_seq - c.recv_seq < cap) {
        send_message(c);
        sent = true;
      }
      if (sent && !c.want_out) flush(c);
    }
    if (++rate_next_ == conns_.size()) {
      rate_next_ = 0;
      rate_round_++;
    }
  }
}

// Churn: the echo is back. WebSocket: send a close frame (1000) and wait for the server's close
// frame and its FIN; TCP: shut down our side and wait for the server's FIN.
void Worker::churn_close(Conn& c) {
  c.closing = true;
  if (c.proto->close_frame(1000, c.out)) {
    if (!c.want_out) flush(c);
    return;
  }
  c.close_seen = true;  // TCP: no close frame to wait for, only the FIN
  if (shutdown(c.fd, SHUT_WR) != 0) fail(c, false, "shutdown", errno);
}

// Churn: the server closed after our close: one cycle done. It counts if it ended inside the
// measured window; its time runs from the first connect attempt to the server's FIN.
void Worker::churn_done(Conn& c) {
  close_conn(c);
  c.cycles++;
  if (now_ >= t_measure_ && now_ < end_) {
    stats_.messages++;
    stats_.hist.record(now_ - c.cycle_start);
  }
  if (now_ < end_) churn_restart(c, now_);
}

void Worker::churn_restart(Conn& c, uint64_t at) {
  c.state = ConnState::kIdle;
  c.closing = false;
  c.close_seen = false;
  c.ready_seen = false;
  c.want_out = false;
  c.attempts = 0;
  c.recv_off = 0;
  c.send_seq = c.recv_seq;  // a message lost with a failed connection is not waited for
  c.recv_seed = seed_of(c, c.recv_seq);
  c.out.consume(c.out.size());
  c.proto.reset();
  retries_.push({at, static_cast<uint32_t>(&c - conns_.data())});
}

// Broadcast: the publisher sends while fewer than W messages are on their way to everyone.
void Worker::publish_more() {
  Broadcast& b = *plan_.bc;
  Conn& p = conns_[0];
  if (now_ >= end_ || b.broken.load(std::memory_order_relaxed) || p.state != ConnState::kOpen) return;
  const uint64_t w = static_cast<uint64_t>(plan_.opt.inflight);
  const size_t size = plan_.opt.size;
  bool sent = false;
  for (;;) {
    const uint64_t seq = b.published.load(std::memory_order_relaxed);  // only this thread writes it
    if (seq >= w && b.slot_done[seq % w].load(std::memory_order_acquire) != seq - w + 1) break;
    b.slot_time[seq % w].store(now_, std::memory_order_relaxed);
    b.published.store(seq + 1, std::memory_order_release);  // before its bytes can arrive anywhere
    uint8_t* payload = p.proto->frame_begin(size, p.out);
    pattern_fill(plan_.pattern, message_seed(kBroadcastId, seq), payload, size);
    p.proto->frame_end(payload, size);
    sent = true;
  }
  if (sent && !p.want_out) flush(p);
}

void Worker::broadcast_delivered(Conn& c) {
  Broadcast& b = *plan_.bc;
  const uint64_t seq = c.recv_seq;
  const size_t slot = seq % static_cast<uint64_t>(plan_.opt.inflight);
  // Ordered by the acquire load of `published` in on_payload, which the publisher stored after
  // this; the slot cannot be reused before this connection counts itself below.
  const uint64_t t = b.slot_time[slot].load(std::memory_order_relaxed);
  const bool counted = now_ >= t_measure_ && now_ < end_;
  if (counted) {
    stats_.messages++;
    stats_.hist.record(now_ > t ? now_ - t : 0);
  }
  c.recv_seq++;
  c.recv_off = 0;
  c.recv_seed = seed_of(c, c.recv_seq);
  if (b.slot_count[slot].fetch_add(1, std::memory_order_acq_rel) + 1 == b.expected) {
    b.slot_count[slot].store(0, std::memory_order_relaxed);
    if (counted) {
      stats_.broadcasts++;
      stats_.fanout.record(now_ > t ? now_ - t : 0);
    }
    b.slot_done[slot].store(seq + 1, std::memory_order_release);
    const uint64_t one = 1;
    ssize_t r = write(b.efd, &one, sizeof one);  // wakes the publisher's epoll (maybe this one)
    (void)r;
  }
}

void Worker::pong_matched(Conn& c) {
  c.ping_outstanding = false;
  outstanding_--;
  stats_.pongs_received++;
  stats_.hist.record(now_ - c.ping_sent_at);
}

void Worker::on_readable(Conn& c) {
  for (int i = 0; i < kReadsPerEvent; i++) {
    ssize_t n = recv(c.fd, rbuf_.data(), rbuf_.size(), 0);
    if (n > 0) {
      now_ = now_ns();
      ParseError e = c.proto->parse(rbuf_.data(), static_cast<size_t>(n), c, c.out);
      if (c.state != ConnState::kOpen) return;
      if (e != ParseError::kNone) {
        if (e == ParseError::kPeerClosed && c.closing) {  // churn: the answer to our close
          c.close_seen = true;
          continue;  // the server's FIN is next
        }
        fail(c, e == ParseError::kVerify, c.proto->error(), 0);
        return;
      }
      if (!c.ready_seen && c.proto->ready()) {
        on_ready(c);
        if (c.state != ConnState::kOpen) return;
      }
      if (static_cast<size_t>(n) < rbuf_.size()) break;  // drained: skip the EAGAIN read
      continue;
    }
    if (n == 0) {
      if (c.closing && c.close_seen) {
        churn_done(c);
        return;
      }
      fail(c, false, c.closing ? "server closed without answering the close frame" : "server closed the connection", 0);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    fail(c, false, "read", errno);
    return;
  }
  // New messages go out in one write per readiness event. If EPOLLOUT is armed the socket buffer
  // was full: wait for it rather than try a write that would fail.
  if (!c.out.empty() && !c.want_out) flush(c);
}

void Worker::flush(Conn& c) {
  while (!c.out.empty()) {
    size_t want = c.out.size();
    ssize_t n = send(c.fd, c.out.data(), want, MSG_NOSIGNAL);
    if (n >= 0) {
      c.out.consume(static_cast<size_t>(n));
      if (static_cast<size_t>(n) < want) break;  // socket buffer full: the next try would EAGAIN
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    fail(c, false, "write", errno);
    return;
  }
  set_want_out(c, !c.out.empty());
}

void Worker::on_event(Conn& c, uint32_t events) {
  if (c.state == ConnState::kClosed || c.state == ConnState::kIdle) return;  // idle: waiting to retry
  if (c.state == ConnState::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      if (!retry_later(c, err)) fail(c, false, "connect", err);
      return;
    }
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    on_connected(c);
    if (c.state != ConnState::kOpen) return;
    events &= ~static_cast<uint32_t>(EPOLLOUT);  // just flushed
  }
  if (events & EPOLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    fail(c, false, "socket error", err != 0 ? err : EIO);
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) {
    on_readable(c);
    if (c.state != ConnState::kOpen) return;
  }
  if ((events & EPOLLOUT) && c.want_out) flush(c);
}

// One pass of the loop: move through the phases. Returns false when the worker is done.
bool Worker::phase_step() {
  if (connecting_) {
    if (now_ >= plan_.t_connect_deadline) connect_deadline();
    return true;
  }
  if (start_ == 0) {
    const uint64_t start = sync_.start.load(std::memory_order_acquire);
    if (start == 0) return true;  // the others are still connecting, or the server settles
    start_ = start;
    end_ = sync_.end.load(std::memory_order_relaxed);
    if (!plan_.opt.hold) {
      t_measure_ = start_ + static_cast<uint64_t>(plan_.opt.warmup_s * 1e9);
      for (Conn& c : conns_) {
        if (c.state != ConnState::kOpen || !c.ready_seen) continue;
        start_messages(c);
        if (c.state == ConnState::kOpen && !c.want_out) flush(c);
      }
    }
    if (publisher_) publish_more();
  }
  if (!plan_.opt.hold) {
    if (plan_.opt.rate > 0 && now_ < end_) send_due_messages();
    return now_ < end_;
  }
  if (now_ < end_) {
    send_due_pings(start_, end_);
    return true;
  }
  // The hold is over: wait for the last pongs, at most the grace period.
  next_ping_due_ = 0;
  return outstanding_ > 0 && now_ < end_ + plan_.pong_grace_ns;
}

void Worker::send_due_pings(uint64_t start, uint64_t end) {
  next_ping_due_ = 0;
  if (plan_.opt.ping_interval_s <= 0 || conns_.empty()) return;
  const double interval = plan_.opt.ping_interval_s * 1e9;
  const double m = static_cast<double>(conns_.size());
  for (;;) {
    const double frac = static_cast<double>(ping_round_) + static_cast<double>(ping_next_ + 1) / m;
    const uint64_t due = start + static_cast<uint64_t>(interval * frac);
    if (due >= end) return;  // no ping the hold has no time left to answer
    if (due > now_) {
      next_ping_due_ = due;
      return;
    }
    Conn& c = conns_[ping_next_];
    if (c.state == ConnState::kOpen && c.ready_seen) send_ping(c, ping_round_);
    if (++ping_next_ == conns_.size()) {
      ping_next_ = 0;
      ping_round_++;
    }
  }
}

void Worker::send_ping(Conn& c, uint64_t round) {
  if (c.ping_outstanding) {  // the last one was not answered within an interval
    stats_.pings_unanswered++;
    outstanding_--;
  }
  c.ping_payload = (static_cast<uint64_t>(c.id) << 32) ^ round;
  uint8_t payload[8];
  store64(payload, c.ping_payload);
  c.proto->ping(payload, sizeof payload, c.out);
  c.ping_outstanding = true;
  c.ping_sent_at = now_;
  outstanding_++;
  stats_.pings_sent++;
  if (!c.want_out) flush(c);
}

uint64_t Worker::wait_timeout_ns() {
  // Wake at least every 100 ms so no deadline is missed by more than that; sooner while
  // retries are pending, the main thread's next phase is awaited, or pings or messages are due.
  uint64_t wake = now_ + 100'000'000;
  if (connecting_) {
    if (!retries_.empty()) wake = std::min(wake, retries_.top().first);
    wake = std::min(wake, plan_.t_connect_deadline);
  } else if (start_ == 0) {
    wake = std::min(wake, now_ + 2'000'000);
  } else if (!plan_.opt.hold || now_ < end_) {
    wake = std::min(wake, end_);
    if (next_ping_due_ != 0) wake = std::min(wake, next_ping_due_);
    if (next_msg_due_ != 0) wake = std::min(wake, next_msg_due_);
    if (plan_.opt.churn && !retries_.empty()) wake = std::min(wake, retries_.top().first);
  } else {
    wake = std::min(wake, now_ + 10'000'000);  // waiting for the last pongs
  }
  return wake <= now_ ? 0 : wake - now_;
}

// epoll_wait with a nanosecond timeout (epoll_pwait2, Linux 5.11+): --rate sends on a schedule
// and measures latency from it, so waking up to a millisecond late (epoll_wait's unit) would
// show up as latency. Falls back to epoll_wait where the kernel lacks it.
int epoll_wait_ns(int ep, epoll_event* events, int max, uint64_t ns) {
#ifdef SYS_epoll_pwait2
  static std::atomic<bool> unsupported{false};
  if (!unsupported.load(std::memory_order_relaxed)) {
    timespec ts{static_cast<time_t>(ns / 1000000000ull), static_cast<long>(ns % 1000000000ull)};
    long r = syscall(SYS_epoll_pwait2, ep, events, max, &ts, nullptr, 0);
    if (r >= 0 || errno != ENOSYS) return static_cast<int>(r);
    unsupported.store(true, std::memory_order_relaxed);
  }
#endif
  return epoll_wait(ep, events, max, static_cast<int>((ns + 999'999) / 1'000'000));
}

void Worker::run() {
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) {
    fprintf(stderr, "loadgen: epoll_create1: %s\n", strerror(errno));
    stats_.errors += conns_.size();
    sync_.connecting.fetch_sub(1, std::memory_order_release);
    return;
  }
  // Timers of this thread fire when due, not up to 50 us later (the default slack).
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  if (publisher_) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeToken;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, plan_.bc->efd, &ev) != 0) fprintf(stderr, "loadgen: epoll_ctl eventfd: %s\n", strerror(errno));
  }
  std::vector<epoll_event> events(kMaxEvents);
  for (;;) {
    now_ = now_ns();
    if (!phase_step()) break;
    if (connecting_ || (plan_.opt.churn && start_ != 0)) open_more();
    int n = epoll_wait_ns(ep_, events.data(), kMaxEvents, wait_timeout_ns());
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "loadgen: epoll_wait: %s\n", strerror(errno));
      break;
    }
    for (int i = 0; i < n; i++) {
      if (events[i].data.u64 == kWakeToken) {
        uint64_t count = 0;
        ssize_t r = read(plan_.bc->efd, &count, sizeof count);
        (void)r;
        now_ = now_ns();
        publish_more();
        continue;
      }
      on_event(conns_[static_cast<size_t>(events[i].data.u64)], events[i].events);
    }
  }
  finish();
}

void Worker::finish() {
  if (connecting_) {  // left the loop early (epoll_wait failed)
    connecting_ = false;
    sync_.connecting.fetch_sub(1, std::memory_order_release);
  }
  uint64_t stalled = 0;
  const bool churn = plan_.opt.churn;
  for (Conn& c : conns_) {
    if (plan_.opt.rate > 0 && c.state == ConnState::kOpen) stats_.backlog += c.due_seq - std::min(c.due_seq, c.recv_seq);
    if (churn) {
      // A slot is healthy if it completed cycles; one caught mid-cycle by the end is no error.
      if (c.cycles > 0) stats_.conns_ok++;
      if (c.fd >= 0) close(c.fd);
      c.fd = -1;
      c.state = ConnState::kClosed;
      continue;
    }
    if (c.ping_outstanding) {
      stats_.pings_unanswered++;
      c.ping_outstanding = false;
    }
    const bool healthy = c.state == ConnState::kOpen && (plan_.opt.hold ? c.ready_seen : c.recv_seq > 0);
    if (healthy) {
      stats_.conns_ok++;
    } else if (c.state == ConnState::kOpen && c.ready_seen) {
      // Healthy socket, but not one echo came back: a stalled or starving server.
      stalled++;
    } else if (c.state != ConnState::kClosed) {
      stats_.errors++;
      if (c.state == ConnState::kOpen) stats_.handshake_failures++;
      if (stats_.errors <= 5) {
        fprintf(stderr, "loadgen: conn %u: %s by the end of the run\n", c.id,
                c.state == ConnState::kOpen ? "not upgraded" : "not established");
      }
    }
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
    c.state = ConnState::kClosed;
    if (c.proto) stats_.server_pings += c.proto->server_pings();
  }
  outstanding_ = 0;
  if (stalled > 0) fprintf(stderr, "loadgen: %" PRIu64 " connection(s) open but without a single completed echo\n", stalled);
  close(ep_);
  ep_ = -1;
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

// utime + stime of a process in clock ticks (/proc/PID/stat sums all of its threads).
bool read_proc_cpu_ticks(long pid, uint64_t* ticks) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return false;
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  // Field 2 (comm) is in parentheses and may itself hold spaces or ')': skip to the last ')'.
  char* p = strrchr(buf, ')');
  if (p == nullptr) return false;
  p++;
  // Fields after comm start at field 3 (state); utime is field 14, stime field 15.
  unsigned long long utime = 0, stime = 0;
  int field = 2;
  char* save = nullptr;
  for (char* tok = strtok_r(p, " ", &save); tok != nullptr; tok = strtok_r(nullptr, " ", &save)) {
    field++;
    if (field == 14) utime = strtoull(tok, nullptr, 10);
    if (field == 15) {
      stime = strtoull(tok, nullptr, 10);
      *ticks = utime + stime;
      return true;
    }
  }
  return false;
}

// VmRSS of a process in bytes (/proc/PID/status reports kB).
bool read_proc_rss_bytes(long pid, uint64_t* bytes) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return false;
  char line[256];
  bool ok = false;
  while (fgets(line, sizeof line, f) != nullptr) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      *bytes = strtoull(line + 6, nullptr, 10) * 1024;
      ok = true;
      break;
    }
  }
  fclose(f);
  return ok;
}

double self_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// ---------------------------------------------------------------------------------------------
// Output

class JsonLine {
 public:
  void str(const char* k, const std::string& v) {
    key(k);
    out_ += '"';
    for (char ch : v) {
      if (ch == '"' || ch == '\\') out_ += '\\';
      if (static_cast<unsigned char>(ch) < 0x20) continue;
      out_ += ch;
    }
    out_ += '"';
  }
  void u64(const char* k, uint64_t v) {
    key(k);
    out_ += std::to_string(v);
  }
  void num(const char* k, double v, int decimals) {
    key(k);
    if (!std::isfinite(v)) {
      out_ += "null";
      return;
    }
    char b[64];
    snprintf(b, sizeof b, "%.*f", decimals, v);
    out_ += b;
  }
  void null(const char* k) {
    key(k);
    out_ += "null";
  }
  std::string done() { return out_ + "}"; }

 private:
  void key(const char* k) {
    out_ += out_.empty() ? "{" : ",";
    out_ += '"';
    out_ += k;
    out_ += "\":";
  }
  std::string out_;
};

extern "C" void on_watchdog(int) {
  static const char msg[] = "loadgen: watchdog: the run did not finish in time\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(3);
}

// ---------------------------------------------------------------------------------------------
// --self-test: the pieces that a wrong byte would quietly break, checked without a server.

class CollectSink final : public PayloadSink {
 public:
  std::vector<uint8_t> bytes;
  std::vector<std::vector<uint8_t>> pongs;
  bool on_payload(const uint8_t* p, size_t n) override {
    bytes.insert(bytes.end(), p, p + n);
    return true;
  }
  void on_pong(const uint8_t* p, size_t n) override { pongs.emplace_back(p, p + n); }
};

std::string to_hex(const uint8_t* p, size_t n) {
  std::string s;
  char b[3];
  for (size_t i = 0; i < n; i++) {
    snprintf(b, sizeof b, "%02x", p[i]);
    s += b;
  }
  return s;
}

// An unmasked server frame.
void server_frame(std::string& w, uint8_t b0, const uint8_t* p, size_t n) {
  w += static_cast<char>(b0);
  if (n < 126) {
    w += static_cast<char>(n);
  } else if (n <= 0xFFFF) {
    w += static_cast<char>(126);
    w += static_cast<char>(n >> 8);
    w += static_cast<char>(n & 0xFF);
  } else {
    w += static_cast<char>(127);
    for (int i = 7; i >= 0; i--) w += static_cast<char>((static_cast<uint64_t>(n) >> (8 * i)) & 0xFF);
  }
  w.append(reinterpret_cast<const char*>(p), n);
}

// Decodes one masked client frame at q (len bytes available): opcode, unmasked payload, size.
bool client_frame(const uint8_t* q, size_t len, uint8_t* op, std::vector<uint8_t>* payload, size_t* used) {
  if (len < 2 || !(q[1] & 0x80) || !(q[0] & 0x80)) return false;
  size_t n = q[1] & 0x7F, h = 2;
  if (n == 126) {
    n = (static_cast<size_t>(q[2]) << 8) | q[3];
    h = 4;
    if (n < 126) return false;  // not the minimal encoding
  } else if (n == 127) {
    n = 0;
    for (int i = 0; i < 8; i++) n = (n << 8) | q[2 + i];
    h = 10;
    if (n <= 0xFFFF) return false;
  }
  if (len < h + 4 + n) return false;
  const uint8_t* mask = q + h;
  payload->resize(n);
  for (size_t i = 0; i < n; i++) (*payload)[i] = static_cast<uint8_t>(q[h + 4 + i] ^ mask[i % 4]);
  *op = q[0] & 0x0F;
  *used = h + 4 + n;
  return true;
}

std::vector<uint8_t> queue_bytes(ByteQueue& q) {
  std::vector<uint8_t> v(q.data(), q.data() + q.size());
  q.consume(q.size());
  return v;
}

int self_test() {
  int bad = 0;
  auto check = [&bad](bool ok, const std::string& what) {
    if (!ok) {
      bad++;
      fprintf(stderr, "self-test FAILED: %s\n", what.c_str());
    }
  };
  // SHA-1: FIPS 180 examples (one block, two blocks, a million bytes) and the empty string.
  struct {
    std::string in;
    const char* hex;
  } sha[] = {
      {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
      {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
      {std::string(1000000, 'a'), "34aa973cd4c4daa4f61eeb2bdbad27316534016f"},
  };
  for (const auto& t : sha) {
    uint8_t d[20];
    nl_sha1(reinterpret_cast<const uint8_t*>(t.in.data()), t.in.size(), d);
    check(to_hex(d, 20) == t.hex, "sha1 of " + std::to_string(t.in.size()) + " bytes");
  }
  // base64: RFC 4648 section 10.
  const char* b64[][2] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
                          {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (const auto& t : b64) {
    char out[16];
    nl_base64(reinterpret_cast<const uint8_t*>(t[0]), strlen(t[0]), out);
    check(strcmp(out, t[1]) == 0, std::string("base64 of \"") + t[0] + "\"");
  }
  // RFC 6455 section 1.3.
  char accept[NL_WS_ACCEPT_LEN + 1];
  nl_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, accept);
  check(strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0, std::string("RFC 6455 accept sample: got ") + accept);

  // Text pattern: printable ASCII only; binary and text checks accept their own bytes only.
  {
    std::vector<uint8_t> buf(200000);
    bool printable = true;
    for (uint32_t conn = 0; conn < 4; conn++) {
      for (uint64_t seq = 0; seq < 4; seq++) {
        pattern_fill(kTextPattern, message_seed(conn, seq), buf.data(), buf.size());
        for (uint8_t b : buf) printable = printable && b >= 0x20 && b <= 0x7E;
        check(pattern_check(kTextPattern, message_seed(conn, seq), 0, buf.data(), buf.size()), "text pattern check");
        check(!pattern_check(kTextPattern, message_seed(conn, seq + 1), 0, buf.data(), 64), "text pattern differs by seq");
      }
    }
    check(printable, "text pattern is printable ASCII");
  }

  // WebSocket client: handshake, framing and parsing at every length encoding, fed in
  // chunks of many sizes; then each error path.
  const size_t sizes[] = {1, 125, 126, 65535, 65536, 200003};
  for (uint8_t opcode : {uint8_t{1}, uint8_t{2}}) {
    for (size_t size : sizes) {
      const std::string what = std::string(opcode == 1 ? "text " : "binary ") + std::to_string(size) + " B: ";
      WsConfig cfg;
      cfg.host_header = "127.0.0.1:9";
      cfg.opcode = opcode;
      cfg.msg_size = size;
      const Pattern& pat = opcode == 1 ? kTextPattern : kBinaryPattern;
      // The request, and the accept for its key.
      ByteQueue out;
      WsProtocol probe(cfg, 42);
      probe.on_open(out);
      std::vector<uint8_t> req = queue_bytes(out);
      std::string reqs(req.begin(), req.end());
      size_t kp = reqs.find("Sec-WebSocket-Key: ");
      check(kp != std::string::npos && reqs.compare(0, 16, "GET / HTTP/1.1\r\n") == 0 &&
                reqs.find("\r\nSec-WebSocket-Version: 13\r\n") != std::string::npos &&
                reqs.size() >= 4 && reqs.compare(reqs.size() - 4, 4, "\r\n\r\n") == 0,
            what + "upgrade request");
      if (kp == std::string::npos) continue;
      const std::string key = reqs.substr(kp + 19, 24);
      nl_ws_accept(key.data(), key.size(), accept);
      // A client frame: header encoding, mask, payload.
      uint8_t* payload = probe.frame_begin(size, out);
      pattern_fill(pat, message_seed(7, 0), payload, size);
      probe.frame_end(payload, size);
      std::vector<uint8_t> f1 = queue_bytes(out);
      uint8_t op = 0;
      size_t used = 0;
      std::vector<uint8_t> pl;
      check(client_frame(f1.data(), f1.size(), &op, &pl, &used) && used == f1.size() && op == opcode &&
                pattern_check(pat, message_seed(7, 0), 0, pl.data(), pl.size()),
            what + "client frame");
      // Two frames in a row get different masks.
      payload = probe.frame_begin(8, out);
      memset(payload, 0, 8);
      probe.frame_end(payload, 8);
      payload = probe.frame_begin(8, out);
      memset(payload, 0, 8);
      probe.frame_end(payload, 8);
      std::vector<uint8_t> f2 = queue_bytes(out);
      check(memcmp(f2.data() + 2, f2.data() + 16, 4) != 0, what + "fresh mask per frame");

      // The server's side: 101, a ping, message 0 whole, message 1 in three fragments with a
      // pong between them.
      std::string wire = std::string("HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n") +
                         "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n";
      const uint8_t hi[] = {'h', 'i'};
      server_frame(wire, 0x89, hi, 2);
      std::vector<uint8_t> m0(size), m1(size);
      pattern_fill(pat, message_seed(3, 0), m0.data(), size);
      pattern_fill(pat, message_seed(3, 1), m1.data(), size);
      server_frame(wire, static_cast<uint8_t>(0x80 | opcode), m0.data(), size);
      const size_t a = size / 3, b = size / 3;
      server_frame(wire, opcode, m1.data(), a);
      const uint8_t pp[] = {1, 2, 3, 4, 5, 6, 7, 8};
      server_frame(wire, 0x8A, pp, 8);
      server_frame(wire, 0x00, m1.data() + a, b);
      server_frame(wire, 0x80, m1.data() + a + b, size - a - b);
      std::vector<uint8_t> want(m0);
      want.insert(want.end(), m1.begin(), m1.end());
      for (size_t chunk : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{100}, size_t{4096}, wire.size()}) {
        if (chunk == 1 && size > 70000) continue;  // byte by byte: slow and no more telling
        WsProtocol p(cfg, 42);
        ByteQueue o;
        p.on_open(o);
        queue_bytes(o);
        CollectSink sink;
        ParseError e = ParseError::kNone;
        bool ready_early = false;
        for (size_t off = 0; off < wire.size() && e == ParseError::kNone; off += chunk) {
          size_t n = std::min(chunk, wire.size() - off);
          ready_early = ready_early || (p.ready() && off < wire.find("\r\n\r\n"));
          e = p.parse(reinterpret_cast<const uint8_t*>(wire.data()) + off, n, sink, o);
        }
        const std::string w = what + "chunks of " + std::to_string(chunk) + ": ";
        check(e == ParseError::kNone, w + "parse error: " + p.error());
        check(!ready_early && p.ready(), w + "ready after the 101");
        check(sink.bytes == want, w + "payload bytes");
        check(sink.pongs.size() == 1 && sink.pongs[0] == std::vector<uint8_t>(pp, pp + 8), w + "pong delivered");
        std::vector<uint8_t> reply = queue_bytes(o);
        check(client_frame(reply.data(), reply.size(), &op, &pl, &used) && op == 0xA &&
                  pl == std::vector<uint8_t>(hi, hi + 2) && used == reply.size(),
              w + "ping answered with a masked pong");
        check(p.server_pings() == 1, w + "server ping counted");
      }
    }
  }
  // Errors.
  {
    WsConfig cfg;
    cfg.host_header = "h";
    cfg.opcode = 2;
    cfg.msg_size = 4;
    auto run = [&cfg](const std::string& response, bool good_accept, const std::string& frames) {
      WsProtocol p(cfg, 9);
      ByteQueue o;
      p.on_open(o);
      std::vector<uint8_t> req = queue_bytes(o);
      std::string reqs(req.begin(), req.end());
      char acc[NL_WS_ACCEPT_LEN + 1];
      nl_ws_accept(reqs.data() + reqs.find("Sec-WebSocket-Key: ") + 19, 24, acc);
      std::string wire = response + "Sec-WebSocket-Accept: " + (good_accept ? acc : "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") +
                         "\r\n\r\n" + frames;
      CollectSink sink;
      return p.parse(reinterpret_cast<const uint8_t*>(wire.data()), wire.size(), sink, o);
    };
    const std::string ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    const uint8_t four[] = {1, 2, 3, 4};
    std::string f;
    check(run(ok, true, "") == ParseError::kNone, "good handshake");
    check(run(ok, false, "") == ParseError::kHandshake, "wrong accept");
    check(run("HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", true, "") == ParseError::kHandshake, "200");
    check(run("HTTP/1.1 101 x\r\nConnection: Upgrade\r\n", true, "") == ParseError::kHandshake, "no Upgrade");
    check(run(ok + "Sec-WebSocket-Extensions: permessage-deflate\r\n", true, "") == ParseError::kHandshake, "extension");
    f.clear();
    server_frame(f, 0x81, four, 4);
    check(run(ok, true, f) == ParseError::kVerify, "text for binary");
    f.clear();
    server_frame(f, 0x82, four, 3);
    check(run(ok, true, f) == ParseError::kVerify, "short message");
    f.clear();
    server_frame(f, 0x02, four, 4);
    server_frame(f, 0x80, four, 1);
    check(run(ok, true, f) == ParseError::kVerify, "long fragmented message");
    f = std::string("\x82\x84") + "abcd" + "wxyz";
    check(run(ok, true, f) == ParseError::kProtocol, "masked server frame");
    f.clear();
    server_frame(f, 0xC2, four, 4);
    check(run(ok, true, f) == ParseError::kProtocol, "RSV1");
    f.clear();
    server_frame(f, 0x80, four, 4);
    check(run(ok, true, f) == ParseError::kProtocol, "continuation first");
    f.clear();
    const uint8_t bye[] = {0x03, 0xE8};
    server_frame(f, 0x88, bye, 2);
    check(run(ok, true, f) == ParseError::kPeerClosed, "close");
  }
  // Churn's close frame: one masked frame, opcode 8, status 1000.
  {
    WsConfig cfg;
    cfg.host_header = "h";
    WsProtocol p(cfg, 5);
    ByteQueue o;
    check(p.close_frame(1000, o), "ws has a close frame");
    std::vector<uint8_t> f = queue_bytes(o);
    uint8_t op = 0;
    size_t used = 0;
    std::vector<uint8_t> pl;
    check(client_frame(f.data(), f.size(), &op, &pl, &used) && used == f.size() && op == 0x8 &&
              pl == std::vector<uint8_t>({0x03, 0xE8}),
          "close frame 1000");
    TcpProtocol tcp;
    check(!tcp.close_frame(1000, o) && o.empty(), "tcp has no close frame");
  }
  // Percentiles: 1..1000 us, one sample each.
  {
    Histogram h;
    for (uint64_t v = 1; v <= 1000; v++) h.record(v * 1000);
    auto near = [](uint64_t got, uint64_t want) { return got >= want - want / 200 && got <= want + want / 200; };
    check(near(h.percentile(0.5), 500000) && near(h.percentile(0.9), 900000) && near(h.percentile(0.99), 990000) &&
              near(h.percentile(0.999), 999000) && h.max() == 1000000,
          "histogram percentiles within 0.5%");
  }
  if (bad == 0) printf("self-test ok\n");
  return bad == 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// The two modes.

std::vector<std::unique_ptr<Worker>> make_workers(const Plan& plan, PhaseSync& sync) {
  const Options& o = plan.opt;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < o.threads; t++) {
    uint32_t lo = static_cast<uint32_t>(static_cast<uint64_t>(o.conns) * t / o.threads);
    uint32_t hi = static_cast<uint32_t>(static_cast<uint64_t>(o.conns) * (t + 1) / o.threads);
    // Each thread gets its share of the connect concurrency (at least 1).
    workers.emplace_back(new Worker(plan, sync, lo, hi - lo, o.connect_concurrency / o.threads));
  }
  return workers;
}

Stats total_of(const std::vector<std::unique_ptr<Worker>>& workers) {
  Stats total;
  for (auto& w : workers) {
    const Stats& s = w->stats();
    total.messages += s.messages;
    total.errors += s.errors;
    total.verify_failures += s.verify_failures;
    total.handshake_failures += s.handshake_failures;
    total.conns_ok += s.conns_ok;
    total.connect_retries += s.connect_retries;
    total.upgraded += s.upgraded;
    total.last_ready_ns = std::max(total.last_ready_ns, s.last_ready_ns);
    total.pings_sent += s.pings_sent;
    total.pongs_received += s.pongs_received;
    total.pongs_unexpected += s.pongs_unexpected;
    total.pings_unanswered += s.pings_unanswered;
    total.server_pings += s.server_pings;
    total.hist.merge(s.hist);
    total.lag.merge(s.lag);
    total.fanout.merge(s.fanout);
    total.broadcasts += s.broadcasts;
    total.backlog += s.backlog;
  }
  return total;
}

void percentiles(JsonLine& j, const Histogram& h, const char* p50, const char* p99, const char* max) {
  if (h.total() > 0) {
    j.num(p50, static_cast<double>(h.percentile(0.50)) / 1e3, 2);
    j.num(p99, static_cast<double>(h.percentile(0.99)) / 1e3, 2);
    if (max != nullptr) j.num(max, static_cast<double>(h.max()) / 1e3, 2);
  } else {
    j.null(p50);
    j.null(p99);
    if (max != nullptr) j.null(max);
  }
}

// p90, p99.9 (named with a prefix, e.g. "p90_us" or "fanout_p90_us").
void tail_percentiles(JsonLine& j, const Histogram& h, const std::string& prefix) {
  const std::string p90 = prefix + "p90_us", p999 = prefix + "p999_us";
  if (h.total() > 0) {
    j.num(p90.c_str(), static_cast<double>(h.percentile(0.90)) / 1e3, 2);
    j.num(p999.c_str(), static_cast<double>(h.percentile(0.999)) / 1e3, 2);
  } else {
    j.null(p90.c_str());
    j.null(p999.c_str());
  }
}

double ticks_to_s(uint64_t ticks) { return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK)); }

// The server's CPU time over the measured period, and per unit of work as `per_key` (in us),
// or nulls when it could not be read or no work was done.
void server_cpu_fields(JsonLine& j, bool srv_ok, uint64_t srv0, uint64_t srv1, const char* per_key, double units,
                       int digits) {
  if (srv_ok && units > 0) {
    double cpu = ticks_to_s(srv1 - srv0);
    j.num("server_cpu_s", cpu, 3);
    j.num(per_key, cpu * 1e6 / units, digits);
  } else {
    j.null("server_cpu_s");
    j.null(per_key);
  }
}

// Every mode starts alike: the clock, the connect deadline (none when connect_s < 0), and a
// watchdog at the mode's whole length plus 30 s. Workers stop on their own at the end
// (epoll_wait wakes at least every 100 ms); the watchdog is for a machine so overloaded that
// they do not.
void start_clock(Plan& plan, double connect_s, double rest_s) {
  plan.t_start = now_ns();
  plan.t_connect_deadline = connect_s < 0 ? ~0ull : plan.t_start + static_cast<uint64_t>(connect_s * 1e9);
  signal(SIGALRM, on_watchdog);
  alarm(static_cast<unsigned>(std::ceil(std::max(connect_s, 0.0) + rest_s)) + 30);
}

// One thread per worker, running it.
std::vector<std::thread> start_threads(std::vector<std::unique_ptr<Worker>>& workers) {
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    Worker* wp = w.get();
    threads.emplace_back([wp] { wp->run(); });
  }
  return threads;
}

// The phases every worker follows: messages from t_go on, counted from the end of the warm-up
// (*t_measure) to *t_end.
void set_phases(const Options& o, PhaseSync& sync, uint64_t t_go, uint64_t* t_measure, uint64_t* t_end) {
  *t_measure = t_go + static_cast<uint64_t>(o.warmup_s * 1e9);
  *t_end = *t_measure + static_cast<uint64_t>(o.duration_s * 1e9);
  sync.end.store(*t_end, std::memory_order_relaxed);
  sync.start.store(t_go, std::memory_order_release);
}

// The server's CPU ticks (from /proc, when --server-pid was given and readable) and ours, at
// both ends of the measured period; returns once it is over.
struct CpuWindow {
  bool srv_ok;
  uint64_t srv0, srv1;
  double self0, self1;
};
CpuWindow measure_cpu(const Options& o, uint64_t t_measure, uint64_t t_end) {
  CpuWindow w{o.server_pid > 0, 0, 0, 0, 0};
  sleep_until_ns(t_measure);
  if (w.srv_ok && !read_proc_cpu_ticks(o.server_pid, &w.srv0)) w.srv_ok = false;
  w.self0 = self_cpu_s();
  sleep_until_ns(t_end);
  if (w.srv_ok && !read_proc_cpu_ticks(o.server_pid, &w.srv1)) w.srv_ok = false;
  w.self1 = self_cpu_s();
  return w;
}

// Waits until every worker has its connections ready or failed (they enforce the deadline).
void wait_connected(PhaseSync& sync) {
  while (sync.connecting.load(std::memory_order_acquire) > 0) sleep_until_ns(now_ns() + 1'000'000);
}

// Echo: open everything, then start the messages, warm up, and measure.
int run_echo(Plan& plan) {
  const Options& o = plan.opt;
  start_clock(plan, o.connect_timeout_s, o.warmup_s + o.duration_s);

  PhaseSync sync;
  sync.connecting.store(o.threads);
  std::vector<std::unique_ptr<Worker>> workers = make_workers(plan, sync);
  std::vector<std::thread> threads = start_threads(workers);
  wait_connected(sync);
  uint64_t t_measure = 0, t_end = 0;
  set_phases(o, sync, now_ns(), &t_measure, &t_end);

  const bool have_pid = o.server_pid > 0;
  const auto [srv_ok, srv0, srv1, self0, self1] = measure_cpu(o, t_measure, t_end);
  if (have_pid && !srv_ok) fprintf(stderr, "loadgen: cannot read /proc/%ld/stat: server CPU unknown\n", o.server_pid);

  for (auto& t : threads) t.join();
  alarm(0);
  const Stats total = total_of(workers);

  const double dur = o.duration_s;
  const double msgs = static_cast<double>(total.messages);
  JsonLine j;
  j.str("proto", o.proto);
  j.u64("conns", static_cast<uint64_t>(o.conns));
  j.u64("inflight", static_cast<uint64_t>(o.inflight));
  j.u64("size", o.size);
  j.num("duration_s", dur, 3);
  j.u64("messages", total.messages);
  j.num("rtt_per_sec", msgs / dur, 1);
  j.num("bytes_per_sec", msgs * static_cast<double>(o.size) / dur, 1);
  percentiles(j, total.hist, "p50_us", "p99_us", "max_us");
  j.u64("errors", total.errors);
  j.u64("verify_failures", total.verify_failures);
  j.u64("conns_ok", total.conns_ok);
  if (srv_ok) {
    double cpu = ticks_to_s(srv1 - srv0);
    j.num("server_cpu_s", cpu, 3);
    if (total.messages > 0) {
      j.num("server_cpu_us_per_msg", cpu * 1e6 / msgs, 4);
    } else {
      j.null("server_cpu_us_per_msg");
    }
  } else {
    j.null("server_cpu_s");
    j.null("server_cpu_us_per_msg");
  }
  // Extra fields: how the generator itself was loaded (to see which side saturated).
  j.u64("threads", static_cast<uint64_t>(o.threads));
  j.num("warmup_s", o.warmup_s, 3);
  j.num("loadgen_cpu_s", self1 - self0, 3);
  if (total.messages > 0) {
    j.num("loadgen_cpu_us_per_msg", (self1 - self0) * 1e6 / msgs, 4);
  } else {
    j.null("loadgen_cpu_us_per_msg");
  }
  if (o.proto == "ws") j.str("msg_type", o.msg_type);
  j.u64("handshake_failures", total.handshake_failures);
  j.u64("connect_retries", total.connect_retries);
  if (total.upgraded > 0) {
    j.num("connect_time_s", static_cast<double>(total.last_ready_ns - plan.t_start) / 1e9, 3);
  } else {
    j.null("connect_time_s");
  }
  j.u64("server_pings", total.server_pings);
  j.u64("source_ips", plan.sources.size());
  tail_percentiles(j, total.hist, "");
  if (o.rate > 0) {
    // Open loop: the schedule asked for target_per_sec; rtt_per_sec is what came back in time.
    j.num("rate_per_conn", o.rate, 3);
    j.num("target_per_sec", o.rate * o.conns, 1);
    j.u64("backlog_at_end", total.backlog);
    percentiles(j, total.lag, "send_lag_p50_us", "send_lag_p99_us", nullptr);
  }
  std::string line = j.done();
  printf("%s\n", line.c_str());
  fflush(stdout);

  return (total.verify_failures > 0 || total.conns_ok < static_cast<uint64_t>(o.conns)) ? 1 : 0;
}

// Churn: slots start connecting at once and cycle (connect, upgrade, one message, close) until
// the end; cycles completed after the warmup and before the end count.
int run_churn(Plan& plan) {
  const Options& o = plan.opt;
  start_clock(plan, -1, o.warmup_s + o.duration_s);  // no connect phase
  PhaseSync sync;
  sync.connecting.store(0);
  uint64_t t_measure = 0, t_end = 0;
  set_phases(o, sync, plan.t_start, &t_measure, &t_end);
  std::vector<std::unique_ptr<Worker>> workers = make_workers(plan, sync);
  std::vector<std::thread> threads = start_threads(workers);
  const auto [srv_ok, srv0, srv1, self0, self1] = measure_cpu(o, t_measure, t_end);
  for (auto& t : threads) t.join();
  alarm(0);
  const Stats total = total_of(workers);
  const double dur = o.duration_s;
  const double cycles = static_cast<double>(total.messages);
  JsonLine j;
  j.str("mode", "churn");
  j.str("proto", o.proto);
  j.u64("conns", static_cast<uint64_t>(o.conns));
  j.u64("size", o.size);
  j.num("duration_s", dur, 3);
  j.num("warmup_s", o.warmup_s, 3);
  j.u64("cycles", total.messages);
  j.num("cycles_per_sec", cycles / dur, 1);
  percentiles(j, total.hist, "p50_us", "p99_us", "max_us");
  tail_percentiles(j, total.hist, "");
  j.u64("errors", total.errors);
  j.u64("verify_failures", total.verify_failures);
  j.u64("handshake_failures", total.handshake_failures);
  j.u64("connect_retries", total.connect_retries);
  j.u64("connects", total.upgraded);
  j.u64("conns_ok", total.conns_ok);
  server_cpu_fields(j, srv_ok, srv0, srv1, "server_cpu_us_per_cycle", total.messages > 0 ? cycles : 0, 3);
  j.num("loadgen_cpu_s", self1 - self0, 3);
  j.u64("threads", static_cast<uint64_t>(o.threads));
  if (o.proto == "ws") j.str("msg_type", o.msg_type);
  j.u64("source_ips", plan.sources.size());
  std::string line = j.done();
  printf("%s\n", line.c_str());
  fflush(stdout);
  return (total.errors > 0 || total.conns_ok < static_cast<uint64_t>(o.conns)) ? 1 : 0;
}

// Broadcast: open everything; once all are upgraded, connection 0 publishes (at most --inflight
// messages on their way to everyone at once), every connection receives and checks every message.
int run_broadcast(Plan& plan) {
  const Options& o = plan.opt;
  Broadcast bc(static_cast<size_t>(o.inflight));
  bc.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (bc.efd < 0) {
    fprintf(stderr, "loadgen: eventfd: %s\n", strerror(errno));
    return 2;
  }
  plan.bc = &bc;
  start_clock(plan, o.connect_timeout_s, o.warmup_s + o.duration_s);
  PhaseSync sync;
  sync.connecting.store(o.threads);
  std::vector<std::unique_ptr<Worker>> workers = make_workers(plan, sync);
  std::vector<std::thread> threads = start_threads(workers);
  wait_connected(sync);
  uint64_t ready = 0;
  for (auto& w : workers) ready += w->stats().upgraded;  // written before `connecting` dropped
  bc.expected = ready;
  if (ready < static_cast<uint64_t>(o.conns)) bc.broken.store(true);  // someone would never get them
  uint64_t t_measure = 0, t_end = 0;
  set_phases(o, sync, now_ns(), &t_measure, &t_end);
  const auto [srv_ok, srv0, srv1, self0, self1] = measure_cpu(o, t_measure, t_end);
  for (auto& t : threads) t.join();
  alarm(0);
  close(bc.efd);
  const Stats total = total_of(workers);
  const double dur = o.duration_s;
  const double deliveries = static_cast<double>(total.messages);
  JsonLine j;
  j.str("mode", "broadcast");
  j.str("proto", o.proto);
  j.u64("conns", static_cast<uint64_t>(o.conns));
  j.u64("inflight", static_cast<uint64_t>(o.inflight));
  j.u64("size", o.size);
  j.num("duration_s", dur, 3);
  j.num("warmup_s", o.warmup_s, 3);
  j.u64("deliveries", total.messages);
  j.num("deliveries_per_sec", deliveries / dur, 1);
  j.u64("broadcasts", total.broadcasts);
  j.num("broadcasts_per_sec", static_cast<double>(total.broadcasts) / dur, 1);
  percentiles(j, total.hist, "p50_us", "p99_us", "max_us");
  tail_percentiles(j, total.hist, "");
  percentiles(j, total.fanout, "fanout_p50_us", "fanout_p99_us", "fanout_max_us");
  j.u64("errors", total.errors);
  j.u64("verify_failures", total.verify_failures);
  j.u64("handshake_failures", total.handshake_failures);
  j.u64("conns_ok", total.conns_ok);
  server_cpu_fields(j, srv_ok, srv0, srv1, "server_cpu_us_per_delivery", total.messages > 0 ? deliveries : 0, 4);
  j.num("loadgen_cpu_s", self1 - self0, 3);
  j.u64("threads", static_cast<uint64_t>(o.threads));
  j.str("msg_type", o.msg_type);
  if (total.upgraded > 0) {
    j.num("connect_time_s", static_cast<double>(total.last_ready_ns - plan.t_start) / 1e9, 3);
  } else {
    j.null("connect_time_s");
  }
  j.u64("source_ips", plan.sources.size());
  std::string line = j.done();
  printf("%s\n", line.c_str());
  fflush(stdout);
  return (total.errors > 0 || total.conns_ok < static_cast<uint64_t>(o.conns)) ? 1 : 0;
}

// Hold: sample the server's RSS, open everything, wait until all are upgraded (or failed),
// let the server settle, sample RSS again, hold (and ping) for the duration, sample once more.
int run_hold(Plan& plan) {
  const Options& o = plan.opt;
  const bool have_pid = o.server_pid > 0;
  uint64_t rss_before = 0, rss_idle = 0, rss_end = 0;
  uint64_t cpu_before = 0, cpu_up = 0, cpu_hold = 0, cpu_end = 0;
  bool rss_ok = have_pid && read_proc_rss_bytes(o.server_pid, &rss_before);
  bool cpu_ok = have_pid && read_proc_cpu_ticks(o.server_pid, &cpu_before);

  plan.pong_grace_ns = o.ping_interval_s > 0 ? static_cast<uint64_t>(std::min(std::max(o.ping_interval_s, 1.0), 5.0) * 1e9) : 0;
  start_clock(plan, o.connect_timeout_s, o.settle_s + o.duration_s + 5);

  PhaseSync sync;
  sync.connecting.store(o.threads);
  const double self0 = self_cpu_s();
  std::vector<std::unique_ptr<Worker>> workers = make_workers(plan, sync);
  std::vector<std::thread> threads = start_threads(workers);
  wait_connected(sync);
  cpu_ok = cpu_ok && read_proc_cpu_ticks(o.server_pid, &cpu_up);
  sleep_until_ns(now_ns() + static_cast<uint64_t>(o.settle_s * 1e9));
  rss_ok = rss_ok && read_proc_rss_bytes(o.server_pid, &rss_idle);
  cpu_ok = cpu_ok && read_proc_cpu_ticks(o.server_pid, &cpu_hold);
  const uint64_t hold_start = now_ns();
  const uint64_t hold_end = hold_start + static_cast<uint64_t>(o.duration_s * 1e9);
  sync.end.store(hold_end, std::memory_order_relaxed);
  sync.start.store(hold_start, std::memory_order_release);
  sleep_until_ns(hold_end);
  rss_ok = rss_ok && read_proc_rss_bytes(o.server_pid, &rss_end);
  cpu_ok = cpu_ok && read_proc_cpu_ticks(o.server_pid, &cpu_end);
  for (auto& t : threads) t.join();
  const double self1 = self_cpu_s();
  alarm(0);
  if (have_pid && !(rss_ok && cpu_ok)) fprintf(stderr, "loadgen: cannot read /proc/%ld: server RSS or CPU unknown\n", o.server_pid);
  const Stats total = total_of(workers);
  const uint64_t errors = total.errors + total.pings_unanswered;

  JsonLine j;
  j.str("mode", "hold");
  j.str("proto", o.proto);
  j.u64("conns", static_cast<uint64_t>(o.conns));
  j.u64("conns_ok", total.conns_ok);
  j.u64("errors", errors);
  j.u64("failed_conns", total.errors);
  j.u64("handshake_failures", total.handshake_failures);
  j.u64("connect_retries", total.connect_retries);
  if (total.upgraded > 0) {
    const double t = static_cast<double>(total.last_ready_ns - plan.t_start) / 1e9;
    j.num("connect_time_s", t, 3);
    j.num("connects_per_sec", t > 0 ? static_cast<double>(total.upgraded) / t : NAN, 1);
  } else {
    j.null("connect_time_s");
    j.null("connects_per_sec");
  }
  j.num("settle_s", o.settle_s, 3);
  j.num("duration_s", o.duration_s, 3);
  j.num("ping_interval_s", o.ping_interval_s, 3);
  j.u64("pings_sent", total.pings_sent);
  j.u64("pongs_received", total.pongs_received);
  j.u64("pings_unanswered", total.pings_unanswered);
  j.u64("pongs_unexpected", total.pongs_unexpected);
  j.u64("server_pings", total.server_pings);
  percentiles(j, total.hist, "ping_p50_us", "ping_p99_us", nullptr);
  if (rss_ok) {
    j.u64("rss_before_bytes", rss_before);
    j.u64("rss_idle_bytes", rss_idle);
    j.u64("rss_end_bytes", rss_end);
    if (total.conns_ok > 0) {
      j.num("rss_per_conn_bytes", (static_cast<double>(rss_idle) - static_cast<double>(rss_before)) / static_cast<double>(total.conns_ok), 1);
    } else {
      j.null("rss_per_conn_bytes");
    }
  } else {
    for (const char* k : {"rss_before_bytes", "rss_idle_bytes", "rss_end_bytes", "rss_per_conn_bytes"}) j.null(k);
  }
  if (cpu_ok) {
    j.num("server_connect_cpu_s", ticks_to_s(cpu_up - cpu_before), 3);
    j.num("server_hold_cpu_s", ticks_to_s(cpu_end - cpu_hold), 3);
  } else {
    j.null("server_connect_cpu_s");
    j.null("server_hold_cpu_s");
  }
  j.num("loadgen_cpu_s", self1 - self0, 3);
  j.u64("threads", static_cast<uint64_t>(o.threads));
  j.u64("connect_concurrency", static_cast<uint64_t>(o.connect_concurrency));
  j.u64("source_ips", plan.sources.size());
  std::string line = j.done();
  printf("%s\n", line.c_str());
  fflush(stdout);
  return (errors > 0 || total.conns_ok < static_cast<uint64_t>(o.conns)) ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  pattern_init();
  Plan plan;
  bool help = false;
  std::string err = parse_options(argc, argv, &plan.opt, &help);
  if (help) {
    fputs(kUsage, stdout);
    return 0;
  }
  if (err.empty() && plan.opt.self_test) return self_test();
  Options& o = plan.opt;
  if (err.empty() && !protocol_known(o.proto)) err = "unsupported --proto " + o.proto + " (have: tcp, ws)";
  plan.addr.sin_family = AF_INET;
  plan.addr.sin_port = htons(static_cast<uint16_t>(o.port));
  if (err.empty() && inet_pton(AF_INET, o.host.c_str(), &plan.addr.sin_addr) != 1) err = "--host must be an IPv4 address";
  for (const std::string& ip : o.source_ips) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    if (err.empty() && inet_pton(AF_INET, ip.c_str(), &src.sin_addr) != 1) err = "--source-ips: not an IPv4 address: " + ip;
    plan.sources.push_back(src);
  }
  if (!err.empty()) {
    fprintf(stderr, "netloop-loadgen: %s\n%s", err.c_str(), kUsage);
    return 2;
  }
  plan.pattern = o.msg_type == "text" ? kTextPattern : kBinaryPattern;
  plan.ws.path = o.path;
  plan.ws.host_header = o.host_header.empty() ? o.host + ":" + std::to_string(o.port) : o.host_header;
  plan.ws.opcode = o.msg_type == "text" ? 1 : 2;
  plan.ws.msg_size = o.size;
  if (getrandom(&plan.seed, sizeof plan.seed, 0) != static_cast<ssize_t>(sizeof plan.seed)) {
    plan.seed = now_ns() ^ (static_cast<uint64_t>(getpid()) << 32);
  }

  // One fd per connection plus a few: raise the soft limit as far as the hard one allows.
  rlimit rl{};
  const rlim_t want = static_cast<rlim_t>(o.conns) + 64;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, want);
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want) {
      fprintf(stderr, "loadgen: the open-files limit (%llu) allows about %llu connections in one process; run several\n",
              static_cast<unsigned long long>(rl.rlim_cur), static_cast<unsigned long long>(rl.rlim_cur - 64));
    }
  }
  if (o.hold) return run_hold(plan);
  if (o.churn) return run_churn(plan);
  if (o.broadcast) return run_broadcast(plan);
  return run_echo(plan);
}
