// The WebSocket client protocol (see ws_protocol.h): the upgrade and the frame codec.
#include "ws_protocol.h"

#include <ctype.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "options.h"

namespace loadgen {

namespace {

bool iequals(const std::string& a, const char* b) {
  size_t n = strlen(b);
  if (a.size() != n) return false;
  for (size_t i = 0; i < n; i++) {
    if (tolower(static_cast<unsigned char>(a[i])) != tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t");
  return s.substr(a, b - a + 1);
}

}  // namespace

void WsProtocol::on_open(ByteQueue& out) {
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

bool WsProtocol::ping(const uint8_t* p, size_t n, ByteQueue& out) {
  control(kPing, p, n, out);
  return true;
}

bool WsProtocol::close_frame(uint16_t code, ByteQueue& out) {
  const uint8_t p[2] = {static_cast<uint8_t>(code >> 8), static_cast<uint8_t>(code & 0xFF)};
  control(kClose, p, 2, out);
  return true;
}

ParseError WsProtocol::parse(const uint8_t* in, size_t n, PayloadSink& sink, ByteQueue& out) {
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

ParseError WsProtocol::fail(ParseError e, std::string what) {
  err_ = std::move(what);
  return e;
}

uint8_t* WsProtocol::header(uint8_t opcode, size_t len, ByteQueue& out) {
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

void WsProtocol::control(uint8_t opcode, const uint8_t* p, size_t n, ByteQueue& out) {
  uint8_t* payload = header(opcode, n, out);
  if (n > 0) memcpy(payload, p, n);
  ws_mask(payload, n, mask_);
}

const uint8_t* WsProtocol::parse_head(const uint8_t* p, const uint8_t* end) {
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

bool WsProtocol::check_head(const std::string& head) {
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

ParseError WsProtocol::on_header(PayloadSink& sink, ByteQueue& out) {
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

void WsProtocol::end_data_frame() {
  if (fin_) in_msg_ = false;
  st_ = St::kHeader;
}

ParseError WsProtocol::on_control(PayloadSink& sink, ByteQueue& out) {
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

}  // namespace loadgen
