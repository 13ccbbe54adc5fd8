// --self-test: the pieces that a wrong byte would quietly break, checked without a server.
#include "modes.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../ws_accept.h"
#include "byte_queue.h"
#include "histogram.h"
#include "pattern.h"
#include "protocol.h"
#include "ws_protocol.h"

namespace loadgen {

namespace {


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

}  // namespace

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

}  // namespace loadgen
