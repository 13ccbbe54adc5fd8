// Socket system calls at the edge: small functions that return a descriptor,
// 0 or -errno, and never keep state. Platform differences (accept4,
// MSG_NOSIGNAL) live here and nowhere else.
#ifndef NETLOOP_SOCKETS_H_
#define NETLOOP_SOCKETS_H_

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>

namespace netloop {

// An IPv4 or IPv6 address; 28 bytes, small enough to keep one per connection.
union InetAddr {
  sockaddr sa;
  sockaddr_in in4;
  sockaddr_in6 in6;
};

// Parses a numeric IPv4 or IPv6 address (no name lookup: the JS layer resolves
// names before it calls in). Returns 0 or -EINVAL.
int ParseInetAddr(const char* host, int port, InetAddr* out, socklen_t* len);
// Writes "1.2.3.4" or "::1" into host; returns the port, or -EAFNOSUPPORT.
int FormatInetAddr(const sockaddr* sa, char* host, size_t host_len);

int ListenInet(const InetAddr& addr, socklen_t len, int backlog, bool reuse_port);
int ListenUnix(const char* path, int backlog);
// Accepts one connection as non-blocking and close-on-exec; peer may be null.
int AcceptNonBlocking(int listen_fd, InetAddr* peer);
// Takes over a connected stream socket that another owner (Node's libuv)
// holds: duplicates it as non-blocking and close-on-exec, so that the owner
// can close its own descriptor. Returns the new fd or -errno (ENOTSOCK,
// ENOTCONN for a socket with no peer, EPROTOTYPE for a non-stream socket);
// fills *peer for TCP and sets *is_unix.
int AdoptStreamSocket(int fd, InetAddr* peer, bool* is_unix);
// Starts a non-blocking connect. Returns 0 when connected at once, 1 when in
// progress (wait for writable, then SocketError), or -errno. *fd is set
// whenever the result is not negative.
int ConnectInet(const InetAddr& addr, socklen_t len, int* fd);
int ConnectUnix(const char* path, int* fd);
// The pending error of a socket (SO_ERROR) as -errno, or 0.
int SocketError(int fd);
int SetNoDelay(int fd);
// Makes close() send RST and drop unsent data (SO_LINGER with a zero timeout).
int SetAbortiveClose(int fd);
// Gathers iov into the socket without raising SIGPIPE. Returns bytes or -errno.
ssize_t SendVector(int fd, const iovec* iov, int iovcnt);
// Whether the peer's FIN is the next thing to read (nothing unread before it).
bool PeerFinPending(int fd);
// getsockname/getpeername into host (and the port, or 0 for unix sockets):
// returns the address family (AF_INET, AF_INET6, AF_UNIX) or -errno.
int SocketAddress(int fd, bool peer, char* host, size_t host_len, int* port);

}  // namespace netloop

#endif  // NETLOOP_SOCKETS_H_
