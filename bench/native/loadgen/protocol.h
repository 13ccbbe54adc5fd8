// The protocol layer: what a connection speaks over its socket. One instance per connection
// (a real protocol keeps parser state). TcpProtocol is here; WsProtocol in ws_protocol.h.
#ifndef NETLOOP_LOADGEN_PROTOCOL_H_
#define NETLOOP_LOADGEN_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "byte_queue.h"

namespace loadgen {

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

struct Plan;

// The protocol --proto names, for connection conn_id of the run (nullptr: unknown name).
std::unique_ptr<Protocol> make_protocol(const Plan& plan, uint32_t conn_id);
bool protocol_known(const std::string& name);

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_PROTOCOL_H_
