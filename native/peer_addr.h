// The peer address a connection's slot keeps, in 16 bytes instead of the
// 28 of an InetAddr (there is one slot per connection, toward a million).
//
// IPv4 peers, and IPv6 peers that are IPv4-mapped (what a dual-stack "::"
// listener accepts from IPv4 clients) with no flow label or scope, are kept
// inline: the address and port are all such a sockaddr holds, so Get()
// rebuilds it exactly. Any other IPv6 peer is copied out of line, whole
// (scope id and flow info included), and freed with the PeerAddr. Unix
// sockets and connections with no known peer keep nothing (kind kNone).
#ifndef NETLOOP_PEER_ADDR_H_
#define NETLOOP_PEER_ADDR_H_

#include <netinet/in.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "sockets.h"

namespace netloop {

class PeerAddr {
 public:
  PeerAddr() = default;
  ~PeerAddr() { Clear(); }
  // Move-only: an out-of-line IPv6 address has one owner (slots move when
  // the slot table grows).
  PeerAddr(PeerAddr&& o) noexcept : kind_(o.kind_), port_(o.port_), u_(o.u_) { o.kind_ = kNone; }
  PeerAddr& operator=(PeerAddr&& o) noexcept {
    if (this != &o) {
      Clear();
      kind_ = o.kind_;
      port_ = o.port_;
      u_ = o.u_;
      o.kind_ = kNone;
    }
    return *this;
  }
  PeerAddr(const PeerAddr&) = delete;
  PeerAddr& operator=(const PeerAddr&) = delete;

  // Keeps a copy of addr (family 0: no peer). An IPv6 address that must go
  // out of line and finds no memory is not kept: Address() then asks the
  // socket itself (getpeername), which only fails once it is closed.
  void Set(const InetAddr& addr) {
    Clear();
    if (addr.sa.sa_family == AF_INET) {
      kind_ = kV4;
      port_ = addr.in4.sin_port;
      u_.v4 = addr.in4.sin_addr.s_addr;
    } else if (addr.sa.sa_family == AF_INET6) {
      const sockaddr_in6& a = addr.in6;
      if (IN6_IS_ADDR_V4MAPPED(&a.sin6_addr) && a.sin6_flowinfo == 0 && a.sin6_scope_id == 0) {
        kind_ = kV4Mapped;
        port_ = a.sin6_port;
        std::memcpy(&u_.v4, a.sin6_addr.s6_addr + 12, sizeof u_.v4);
        return;
      }
      auto* v6 = static_cast<sockaddr_in6*>(std::malloc(sizeof(sockaddr_in6)));
      if (v6 == nullptr) return;
      std::memcpy(v6, &a, sizeof a);
      kind_ = kV6;
      u_.v6 = v6;
    }
  }

  void Clear() {
    if (kind_ == kV6) std::free(u_.v6);
    kind_ = kNone;
  }

  bool empty() const { return kind_ == kNone; }

  // Rebuilds the sockaddr; returns false (and leaves *out alone) when empty.
  bool Get(InetAddr* out) const {
    switch (kind_) {
      case kV4:
        std::memset(out, 0, sizeof *out);
        out->in4.sin_family = AF_INET;
        out->in4.sin_port = port_;
        out->in4.sin_addr.s_addr = u_.v4;
        return true;
      case kV4Mapped:
        std::memset(out, 0, sizeof *out);
        out->in6.sin6_family = AF_INET6;
        out->in6.sin6_port = port_;
        out->in6.sin6_addr.s6_addr[10] = 0xff;
        out->in6.sin6_addr.s6_addr[11] = 0xff;
        std::memcpy(out->in6.sin6_addr.s6_addr + 12, &u_.v4, sizeof u_.v4);
        return true;
      case kV6:
        std::memset(out, 0, sizeof *out);
        std::memcpy(&out->in6, u_.v6, sizeof(sockaddr_in6));
        return true;
      default:
        return false;
    }
  }

 private:
  enum Kind : uint8_t { kNone = 0, kV4 = 1, kV4Mapped = 2, kV6 = 3 };
  uint8_t kind_ = kNone;
  in_port_t port_ = 0;  // network byte order (inline kinds)
  union {
    in_addr_t v4;       // network byte order (kV4, kV4Mapped)
    sockaddr_in6* v6;   // owned (kV6)
  } u_{};
};

}  // namespace netloop

#endif  // NETLOOP_PEER_ADDR_H_
