// WebSocket framing: the RFC 6455 client protocol, its masks and the mask generator.
#ifndef NETLOOP_LOADGEN_WS_PROTOCOL_H_
#define NETLOOP_LOADGEN_WS_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "../ws_accept.h"
#include "byte_queue.h"
#include "pattern.h"
#include "protocol.h"

namespace loadgen {

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
  void on_open(ByteQueue& out) override;
  uint8_t* frame_begin(size_t len, ByteQueue& out) override { return header(cfg_.opcode, len, out); }
  void frame_end(uint8_t* payload, size_t len) override { ws_mask(payload, len, mask_); }
  bool ping(const uint8_t* p, size_t n, ByteQueue& out) override;
  bool close_frame(uint16_t code, ByteQueue& out) override;
  ParseError parse(const uint8_t* in, size_t n, PayloadSink& sink, ByteQueue& out) override;
  uint64_t server_pings() const override { return server_pings_; }

 private:
  enum class St { kHead, kHeader, kPayload, kControl };
  static constexpr uint8_t kCont = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9,
                           kPong = 0xA;

  ParseError fail(ParseError e, std::string what);
  // Appends a masked frame's header and room for len payload bytes; returns the payload's place.
  // The mask is drawn here and applied by frame_end/control.
  uint8_t* header(uint8_t opcode, size_t len, ByteQueue& out);
  void control(uint8_t opcode, const uint8_t* p, size_t n, ByteQueue& out);
  // The upgrade response. Returns where the frames start (end when the head is not complete
  // yet), or nullptr on a bad response.
  const uint8_t* parse_head(const uint8_t* p, const uint8_t* end);
  bool check_head(const std::string& head);
  ParseError on_header(PayloadSink& sink, ByteQueue& out);
  void end_data_frame();
  ParseError on_control(PayloadSink& sink, ByteQueue& out);

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

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_WS_PROTOCOL_H_
