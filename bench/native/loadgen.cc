// netloop-loadgen: a closed-loop echo load generator (Linux, epoll, C++17).
//
// N connections are spread over T threads, each thread with its own level-triggered epoll.
// Every connection keeps W messages of SIZE bytes in flight: when the full echo of the oldest
// message has come back, the next one is sent. Every echoed byte is checked against the bytes
// that were sent: a message's payload is a pseudo-random pattern seeded by (connection id,
// sequence number), so a lost, duplicated, corrupted or reordered byte is caught. Latency is the
// time from the write that carried a message to the read that completed its echo.
//
// Output: exactly one JSON line on stdout at the end (see README.md for the fields).
// Exit code: 0 ok, 1 if any verify failure or fewer healthy connections than asked, 2 bad usage.
//
// Layers, inside out:
//   Histogram      log-linear latency buckets, ~0.4% relative error
//   pattern_*      pure payload generation and checking
//   ByteQueue      a growable byte queue with a read offset (outgoing bytes)
//   Protocol       per-connection framing: frame_begin()/frame_end() around each outgoing payload
//                  (generated in place), parse() incoming bytes into payload bytes. TcpProtocol is the identity; a WebSocket one fits the same
//                  interface (handshake in on_open()/parse(), ready() once upgraded).
//   Conn           the closed loop over one socket: in-flight window, verification, timestamps
//   Worker         one thread: one epoll, its connections, its own stats (merged at the end)
//
// Built with -fno-exceptions by binding.gyp: nothing here throws or catches.

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
#include <memory>
#include <string>
#include <thread>
#include <vector>

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
};

const char kUsage[] =
    "usage: netloop-loadgen --port P [--host 127.0.0.1] [--conns 100] [--inflight 4]\n"
    "                       [--size 64] [--duration 5] [--warmup 1] [--threads 1]\n"
    "                       [--server-pid PID] [--proto tcp]\n"
    "Prints one JSON line with throughput, latency percentiles, errors and server CPU.\n";

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
    } else {
      return "unknown flag " + flag;
    }
    if (!ok) return "bad value for " + flag + ": " + v;
  }
  if (!have_port) return "--port is required";
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
//     table[(seed % kTableLen + i) % kTableLen] ^ byte (i % 8) of the seed
// where table is one fixed pseudo-random block shared by all threads. The offset and the key
// differ per message, so a lost, duplicated, altered or reordered byte (or message) shows; and
// generating or checking costs one 8-byte load, xor and store/compare per 8 bytes, with no
// per-byte arithmetic. The table is stored twice in a row so that any run of up to kTableLen
// bytes is contiguous. Pure functions: generation and checking agree by construction, and
// checking accepts any split of the byte stream.

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pattern words are little-endian");

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
constexpr size_t kTableLen = 65521;  // prime: offsets do not repeat with power-of-two sizes
uint8_t g_table[2 * kTableLen + 8];

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
    g_table[i] = static_cast<uint8_t>(mix64(i * kGolden + 0x6E65746C6F6F70ull) >> 29);
  }
  memcpy(g_table + kTableLen, g_table, kTableLen);
  memcpy(g_table + 2 * kTableLen, g_table, 8);
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
inline uint64_t key_at(uint64_t seed, size_t off) {
  unsigned s = static_cast<unsigned>(off % 8) * 8;
  return s == 0 ? seed : (seed >> s) | (seed << (64 - s));
}

// Calls fn(table_run, key, length) over the runs that make up bytes [off, off + n).
template <typename Fn>
inline bool pattern_runs(uint64_t seed, size_t off, size_t n, Fn fn) {
  const size_t base = static_cast<size_t>(seed % kTableLen);
  while (n > 0) {
    size_t pos = (base + off) % kTableLen;
    size_t run = std::min(n, kTableLen);  // pos < kTableLen, so pos + run <= 2 * kTableLen
    if (!fn(g_table + pos, key_at(seed, off), run)) return false;
    off += run;
    n -= run;
  }
  return true;
}

void pattern_fill(uint64_t seed, uint8_t* out, size_t len) {
  pattern_runs(seed, 0, len, [&out](const uint8_t* t, uint64_t key, size_t run) {
    size_t j = 0;
    for (; j + 8 <= run; j += 8) store64(out + j, load64(t + j) ^ key);
    for (; j < run; j++) out[j] = static_cast<uint8_t>(t[j] ^ (key >> (8 * (j % 8))));
    out += run;
    return true;
  });
}

// Checks n bytes that sit at offset off of the message; true if they all match.
bool pattern_check(uint64_t seed, size_t off, const uint8_t* in, size_t n) {
  return pattern_runs(seed, off, n, [&in](const uint8_t* t, uint64_t key, size_t run) {
    size_t j = 0;
    uint64_t diff = 0;
    for (; j + 8 <= run; j += 8) diff |= (load64(in + j) ^ key) ^ load64(t + j);
    for (; j < run; j++) diff |= static_cast<uint8_t>(in[j] ^ (key >> (8 * (j % 8))) ^ t[j]);
    in += run;
    return diff == 0;
  });
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

 protected:
  ~PayloadSink() = default;
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
  // (a WebSocket client masks the payload there).
  virtual uint8_t* frame_begin(size_t len, ByteQueue& out) = 0;
  virtual void frame_end(uint8_t* payload, size_t len) {
    (void)payload;
    (void)len;
  }
  // Consumes wire bytes. Returns 0, or a negative value for a protocol error. Delivery to the
  // sink stops (and 0 is returned) when the sink returns false.
  virtual int parse(const uint8_t* in, size_t n, PayloadSink& sink) = 0;
};

// Raw TCP: the wire is the payload. Message boundaries are the receiver's business (it knows the
// size of each message it sent).
class TcpProtocol final : public Protocol {
 public:
  const char* name() const override { return "tcp"; }
  uint8_t* frame_begin(size_t len, ByteQueue& out) override { return out.extend(len); }
  int parse(const uint8_t* in, size_t n, PayloadSink& sink) override {
    sink.on_payload(in, n);
    return 0;
  }
};

std::unique_ptr<Protocol> make_protocol(const std::string& name) {
  if (name == "tcp") return std::unique_ptr<Protocol>(new TcpProtocol());
  // "ws": a client-side WebSocket framing (masked frames out, unmasked frames in, upgrade
  // request in on_open, 101 response consumed by parse) plugs in here.
  return nullptr;
}

bool protocol_known(const std::string& name) { return name == "tcp"; }

// ---------------------------------------------------------------------------------------------
// Shared run parameters and per-worker stats.

struct Plan {
  Options opt;
  sockaddr_in addr{};
  uint64_t t_start = 0;  // connections open at t_start
  uint64_t t_measure = 0;  // warmup ends: stats count from here
  uint64_t t_end = 0;      // stats stop, everything closes
};

struct Stats {
  uint64_t messages = 0;  // messages whose echo completed inside [t_measure, t_end)
  uint64_t errors = 0;    // failed connections, any reason (verify failures included)
  uint64_t verify_failures = 0;
  uint64_t conns_ok = 0;  // connected, >= 1 echo completed, never failed, still open at t_end
  Histogram hist;
};

enum class ConnState { kIdle, kConnecting, kOpen, kClosed };

class Worker;

class Conn final : public PayloadSink {
 public:
  int fd = -1;
  uint32_t id = 0;  // global connection id, part of every payload seed
  ConnState state = ConnState::kIdle;
  bool want_out = false;  // EPOLLOUT armed
  bool started = false;   // initial window sent
  std::unique_ptr<Protocol> proto;
  ByteQueue out;
  uint64_t send_seq = 0;   // next message to send
  uint64_t recv_seq = 0;   // message whose echo is arriving
  size_t recv_off = 0;     // bytes of it already checked
  uint64_t recv_seed = 0;  // message_seed(id, recv_seq)
  std::vector<uint64_t> sent_at;  // ring of W send times, indexed by seq % W
  Worker* worker = nullptr;

  bool on_payload(const uint8_t* p, size_t n) override;
};

class Worker {
 public:
  Worker(const Plan& plan, uint32_t first_id, uint32_t count)
      : plan_(plan), conns_(count), rbuf_(kReadBuf) {
    for (uint32_t i = 0; i < count; i++) {
      conns_[i].id = first_id + i;
      conns_[i].worker = this;
      conns_[i].sent_at.assign(static_cast<size_t>(plan.opt.inflight), 0);
    }
  }

  void run();
  const Stats& stats() const { return stats_; }
  const Plan& plan() const { return plan_; }

  // Called from Conn::on_payload when a message's echo is complete.
  void message_done(Conn& c);
  void fail(Conn& c, bool verify, const char* what, int err);

 private:
  // Read budget per readiness event: bounded so one busy connection cannot starve the others
  // (level-triggered epoll reports the rest on the next wait).
  static constexpr int kReadsPerEvent = 4;
  static constexpr size_t kReadBuf = 256 << 10;
  static constexpr int kMaxEvents = 1024;

  void open_all();
  void on_event(Conn& c, uint32_t events);
  void on_connected(Conn& c);
  void start_messages(Conn& c);
  void send_message(Conn& c);
  void on_readable(Conn& c);
  void flush(Conn& c);
  void set_want_out(Conn& c, bool on);
  void close_conn(Conn& c);

  const Plan& plan_;
  std::vector<Conn> conns_;
  std::vector<uint8_t> rbuf_;
  int ep_ = -1;
  uint64_t now_ = 0;  // time of the event being handled
  Stats stats_;
};


bool Conn::on_payload(const uint8_t* p, size_t n) {
  const size_t size = worker->plan().opt.size;
  while (n > 0) {
    if (recv_seq >= send_seq) {  // the server sent more than it was sent
      worker->fail(*this, true, "bytes beyond what was sent", 0);
      return false;
    }
    size_t take = std::min(n, size - recv_off);
    if (!pattern_check(recv_seed, recv_off, p, take)) {
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

void Worker::fail(Conn& c, bool verify, const char* what, int err) {
  if (c.state == ConnState::kClosed) return;
  stats_.errors++;
  if (verify) stats_.verify_failures++;
  // Say why, but do not flood stderr when a server drops thousands of connections at once.
  if (stats_.errors <= 5) {
    if (err != 0) {
      fprintf(stderr, "loadgen: conn %u: %s: %s\n", c.id, what, strerror(err));
    } else {
      fprintf(stderr, "loadgen: conn %u: %s (message %" PRIu64 ", offset %zu)\n", c.id, what,
              c.recv_seq, c.recv_off);
    }
  }
  close_conn(c);
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

void Worker::open_all() {
  for (Conn& c : conns_) {
    c.proto = make_protocol(plan_.opt.proto);
    c.recv_seed = message_seed(c.id, 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      stats_.errors++;
      if (stats_.errors <= 5) fprintf(stderr, "loadgen: conn %u: socket: %s\n", c.id, strerror(errno));
      c.state = ConnState::kClosed;
      continue;
    }
    c.fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.state = ConnState::kConnecting;
    int rc = connect(fd, reinterpret_cast<const sockaddr*>(&plan_.addr), sizeof plan_.addr);
    if (rc != 0 && errno != EINPROGRESS) {
      fail(c, false, "connect", errno);
      continue;
    }
    // Connecting: wait for writability, then read SO_ERROR (a refused connect shows as
    // EPOLLERR|EPOLLOUT). A connect that completed at once gets the same path.
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = static_cast<uint64_t>(&c - conns_.data());
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      fail(c, false, "epoll_ctl add", errno);
      continue;
    }
    c.want_out = true;
  }
}

void Worker::on_connected(Conn& c) {
  c.state = ConnState::kOpen;
  now_ = now_ns();
  c.proto->on_open(c.out);
  if (c.proto->ready()) start_messages(c);
  flush(c);  // also disarms EPOLLOUT once the queue is empty
}

void Worker::start_messages(Conn& c) {
  c.started = true;
  if (now_ >= plan_.t_end) return;
  for (int i = 0; i < plan_.opt.inflight; i++) send_message(c);
}

void Worker::send_message(Conn& c) {
  const size_t size = plan_.opt.size;
  uint64_t seq = c.send_seq++;
  uint8_t* payload = c.proto->frame_begin(size, c.out);
  pattern_fill(message_seed(c.id, seq), payload, size);
  c.proto->frame_end(payload, size);
  c.sent_at[seq % c.sent_at.size()] = now_;
}

void Worker::message_done(Conn& c) {
  // Echoes arrive in order, so the oldest in-flight slot is this message's.
  uint64_t sent = c.sent_at[c.recv_seq % c.sent_at.size()];
  if (now_ >= plan_.t_measure && now_ < plan_.t_end) {
    stats_.messages++;
    stats_.hist.record(now_ - sent);
  }
  c.recv_seq++;
  c.recv_off = 0;
  c.recv_seed = message_seed(c.id, c.recv_seq);
  if (now_ < plan_.t_end) send_message(c);
}

void Worker::on_readable(Conn& c) {
  for (int i = 0; i < kReadsPerEvent; i++) {
    ssize_t n = recv(c.fd, rbuf_.data(), rbuf_.size(), 0);
    if (n > 0) {
      now_ = now_ns();
      int rc = c.proto->parse(rbuf_.data(), static_cast<size_t>(n), c);
      if (c.state != ConnState::kOpen) return;
      if (rc < 0) {
        fail(c, false, "protocol error", 0);
        return;
      }
      if (!c.started && c.proto->ready()) start_messages(c);
      if (static_cast<size_t>(n) < rbuf_.size()) break;  // drained: skip the EAGAIN read
      continue;
    }
    if (n == 0) {
      fail(c, false, "server closed the connection", 0);
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
  if (c.state == ConnState::kClosed) return;
  if (c.state == ConnState::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      fail(c, false, "connect", err);
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

void Worker::run() {
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) {
    fprintf(stderr, "loadgen: epoll_create1: %s\n", strerror(errno));
    stats_.errors += conns_.size();
    return;
  }
  now_ = now_ns();
  open_all();
  std::vector<epoll_event> events(kMaxEvents);
  for (;;) {
    uint64_t now = now_ns();
    if (now >= plan_.t_end) break;
    // Wake at least every 100 ms so the end of the run is never missed by more than that.
    uint64_t left_ms = (plan_.t_end - now + 999999) / 1000000;
    int timeout = static_cast<int>(std::min<uint64_t>(left_ms, 100));
    int n = epoll_wait(ep_, events.data(), kMaxEvents, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "loadgen: epoll_wait: %s\n", strerror(errno));
      break;
    }
    for (int i = 0; i < n; i++) {
      on_event(conns_[static_cast<size_t>(events[i].data.u64)], events[i].events);
    }
  }
  uint64_t stalled = 0;
  for (Conn& c : conns_) {
    if (c.state == ConnState::kOpen && c.recv_seq > 0) {
      stats_.conns_ok++;
    } else if (c.state == ConnState::kOpen) {
      // Healthy socket, but not one echo came back: a stalled or starving server.
      stalled++;
    } else if (c.state != ConnState::kClosed) {
      stats_.errors++;
      if (stats_.errors <= 5) fprintf(stderr, "loadgen: conn %u: not established by the end of the run\n", c.id);
    }
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
    c.state = ConnState::kClosed;
  }
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
  if (err.empty() && !protocol_known(plan.opt.proto)) err = "unsupported --proto " + plan.opt.proto + " (have: tcp)";
  const Options& o = plan.opt;
  plan.addr.sin_family = AF_INET;
  plan.addr.sin_port = htons(static_cast<uint16_t>(o.port));
  if (err.empty() && inet_pton(AF_INET, o.host.c_str(), &plan.addr.sin_addr) != 1) err = "--host must be an IPv4 address";
  if (!err.empty()) {
    fprintf(stderr, "netloop-loadgen: %s\n%s", err.c_str(), kUsage);
    return 2;
  }

  // One fd per connection plus a few: raise the soft limit as far as the hard one allows.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < static_cast<rlim_t>(o.conns) + 64) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, static_cast<rlim_t>(o.conns) + 64);
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  plan.t_start = now_ns();
  plan.t_measure = plan.t_start + static_cast<uint64_t>(o.warmup_s * 1e9);
  plan.t_end = plan.t_measure + static_cast<uint64_t>(o.duration_s * 1e9);

  // Workers stop on their own at t_end (epoll_wait wakes at least every 100 ms); the watchdog is
  // for a machine so overloaded that they do not.
  signal(SIGALRM, on_watchdog);
  alarm(static_cast<unsigned>(std::ceil(o.warmup_s + o.duration_s)) + 30);

  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < o.threads; t++) {
    uint32_t lo = static_cast<uint32_t>(static_cast<uint64_t>(o.conns) * t / o.threads);
    uint32_t hi = static_cast<uint32_t>(static_cast<uint64_t>(o.conns) * (t + 1) / o.threads);
    workers.emplace_back(new Worker(plan, lo, hi - lo));
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    Worker* wp = w.get();
    threads.emplace_back([wp] { wp->run(); });
  }

  const bool have_pid = o.server_pid > 0;
  uint64_t srv0 = 0, srv1 = 0;
  bool srv_ok = have_pid;
  sleep_until_ns(plan.t_measure);
  if (have_pid && !read_proc_cpu_ticks(o.server_pid, &srv0)) srv_ok = false;
  double self0 = self_cpu_s();
  sleep_until_ns(plan.t_end);
  if (srv_ok && !read_proc_cpu_ticks(o.server_pid, &srv1)) srv_ok = false;
  double self1 = self_cpu_s();
  if (have_pid && !srv_ok) fprintf(stderr, "loadgen: cannot read /proc/%ld/stat: server CPU unknown\n", o.server_pid);

  for (auto& t : threads) t.join();
  alarm(0);

  Stats total;
  for (auto& w : workers) {
    const Stats& s = w->stats();
    total.messages += s.messages;
    total.errors += s.errors;
    total.verify_failures += s.verify_failures;
    total.conns_ok += s.conns_ok;
    total.hist.merge(s.hist);
  }

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
  if (total.messages > 0) {
    j.num("p50_us", static_cast<double>(total.hist.percentile(0.50)) / 1e3, 2);
    j.num("p99_us", static_cast<double>(total.hist.percentile(0.99)) / 1e3, 2);
    j.num("max_us", static_cast<double>(total.hist.max()) / 1e3, 2);
  } else {
    j.null("p50_us");
    j.null("p99_us");
    j.null("max_us");
  }
  j.u64("errors", total.errors);
  j.u64("verify_failures", total.verify_failures);
  j.u64("conns_ok", total.conns_ok);
  if (srv_ok) {
    double cpu = static_cast<double>(srv1 - srv0) / static_cast<double>(sysconf(_SC_CLK_TCK));
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
  std::string line = j.done();
  printf("%s\n", line.c_str());
  fflush(stdout);

  return (total.verify_failures > 0 || total.conns_ok < static_cast<uint64_t>(o.conns)) ? 1 : 0;
}
