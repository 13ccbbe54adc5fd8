#include "sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace netloop {

namespace {

[[maybe_unused]] int SetNonBlockingCloexec(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
  int fdfl = fcntl(fd, F_GETFD);
  if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0) return -errno;
  return 0;
}

// socket() as non-blocking and close-on-exec, atomically where the OS can.
int NewSocket(int family) {
#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  return fd < 0 ? -errno : fd;
#else
  int fd = socket(family, SOCK_STREAM, 0);
  if (fd < 0) return -errno;
  int r = SetNonBlockingCloexec(fd);
  if (r < 0) {
    close(fd);
    return r;
  }
#ifdef SO_NOSIGPIPE
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
  return fd;
#endif
}

int FillUnixAddr(const char* path, sockaddr_un* un, socklen_t* len) {
  size_t n = std::strlen(path);
  if (n == 0) return -EINVAL;
  if (n >= sizeof(un->sun_path)) return -ENAMETOOLONG;
  std::memset(un, 0, sizeof *un);
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path, n);
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n + 1);
  return 0;
}

int Fail(int fd) {
  int err = -errno;
  close(fd);
  return err;
}

}  // namespace

int ParseInetAddr(const char* host, int port, InetAddr* out, socklen_t* len) {
  if (port < 0 || port > 65535) return -EINVAL;
  std::memset(out, 0, sizeof *out);
  if (inet_pton(AF_INET, host, &out->in4.sin_addr) == 1) {
    out->in4.sin_family = AF_INET;
    out->in4.sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
    return 0;
  }
  if (inet_pton(AF_INET6, host, &out->in6.sin6_addr) == 1) {
    out->in6.sin6_family = AF_INET6;
    out->in6.sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
    return 0;
  }
  return -EINVAL;
}

int FormatInetAddr(const sockaddr* sa, char* host, size_t host_len) {
  if (sa->sa_family == AF_INET) {
    auto* in4 = reinterpret_cast<const sockaddr_in*>(sa);
    if (inet_ntop(AF_INET, &in4->sin_addr, host, static_cast<socklen_t>(host_len)) == nullptr) return -errno;
    return ntohs(in4->sin_port);
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (inet_ntop(AF_INET6, &in6->sin6_addr, host, static_cast<socklen_t>(host_len)) == nullptr) return -errno;
    return ntohs(in6->sin6_port);
  }
  return -EAFNOSUPPORT;
}

int ListenInet(const InetAddr& addr, socklen_t len, int backlog, bool reuse_port) {
  int fd = NewSocket(addr.sa.sa_family);
  if (fd < 0) return fd;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) return Fail(fd);
  if (reuse_port) {
#ifdef SO_REUSEPORT
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) return Fail(fd);
#else
    close(fd);
    return -ENOTSUP;
#endif
  }
  if (bind(fd, &addr.sa, len) < 0) return Fail(fd);
  if (listen(fd, backlog) < 0) return Fail(fd);
  return fd;
}

int ListenUnix(const char* path, int backlog) {
  sockaddr_un un;
  socklen_t len;
  int r = FillUnixAddr(path, &un, &len);
  if (r < 0) return r;
  int fd = NewSocket(AF_UNIX);
  if (fd < 0) return fd;
  if (bind(fd, reinterpret_cast<sockaddr*>(&un), len) < 0) return Fail(fd);
  if (listen(fd, backlog) < 0) {
    int err = -errno;
    close(fd);
    unlink(path);
    return err;
  }
  return fd;
}

int AdoptStreamSocket(int fd, InetAddr* peer, bool* is_unix) {
  int type = 0;
  socklen_t tlen = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0) return -errno;
  if (type != SOCK_STREAM) return -EPROTOTYPE;
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return -errno;
  std::memset(peer, 0, sizeof *peer);
  if (ss.ss_family == AF_INET) {
    std::memcpy(&peer->in4, &ss, sizeof(sockaddr_in));
  } else if (ss.ss_family == AF_INET6) {
    std::memcpy(&peer->in6, &ss, sizeof(sockaddr_in6));
  } else if (ss.ss_family != AF_UNIX) {
    return -EAFNOSUPPORT;
  }
  *is_unix = ss.ss_family == AF_UNIX;
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (nfd < 0) return -errno;
  // O_NONBLOCK is a property of the open file, shared with the original
  // descriptor: libuv set it already, and keeps it until it closes its copy.
  int fl = fcntl(nfd, F_GETFL);
  if (fl < 0 || fcntl(nfd, F_SETFL, fl | O_NONBLOCK) < 0) {
    int err = errno;
    close(nfd);
    return -err;
  }
#ifdef SO_NOSIGPIPE
  int one = 1;
  setsockopt(nfd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
  return nfd;
}

int AcceptNonBlocking(int listen_fd, InetAddr* peer) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int fd;
#if defined(__linux__) || defined(__FreeBSD__)
  do {
    fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return -errno;
#else
  do {
    fd = accept(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return -errno;
  int r = SetNonBlockingCloexec(fd);
  if (r < 0) {
    close(fd);
    return r;
  }
#ifdef SO_NOSIGPIPE
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
#endif
  if (peer != nullptr) {
    std::memset(peer, 0, sizeof *peer);
    if (ss.ss_family == AF_INET) {
      std::memcpy(&peer->in4, &ss, sizeof(sockaddr_in));
    } else if (ss.ss_family == AF_INET6) {
      std::memcpy(&peer->in6, &ss, sizeof(sockaddr_in6));
    }
  }
  return fd;
}

static int FinishConnect(int fd, const sockaddr* sa, socklen_t len, int* out) {
  int r;
  do {
    r = connect(fd, sa, len);
  } while (r < 0 && errno == EINTR);
  if (r == 0) {
    *out = fd;
    return 0;
  }
  if (errno == EINPROGRESS) {
    *out = fd;
    return 1;
  }
  return Fail(fd);
}

int ConnectInet(const InetAddr& addr, socklen_t len, int* fd) {
  int s = NewSocket(addr.sa.sa_family);
  if (s < 0) return s;
  return FinishConnect(s, &addr.sa, len, fd);
}

int ConnectUnix(const char* path, int* fd) {
  sockaddr_un un;
  socklen_t len;
  int r = FillUnixAddr(path, &un, &len);
  if (r < 0) return r;
  int s = NewSocket(AF_UNIX);
  if (s < 0) return s;
  return FinishConnect(s, reinterpret_cast<sockaddr*>(&un), len, fd);
}

int SocketError(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
  return -err;
}

int SetNoDelay(int fd) {
  int one = 1;
  return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 ? 0 : -errno;
}

int SetAbortiveClose(int fd) {
  linger lg;
  lg.l_onoff = 1;
  lg.l_linger = 0;
  return setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0 ? 0 : -errno;
}

ssize_t SendVector(int fd, const iovec* iov, int iovcnt) {
  // MSG_DONTWAIT: a connection read by a blocking reader thread has a
  // blocking descriptor, and a write from the loop thread must never block.
#ifdef MSG_NOSIGNAL
  const int flags = MSG_NOSIGNAL | MSG_DONTWAIT;
#else
  const int flags = MSG_DONTWAIT;  // SO_NOSIGPIPE was set on the socket instead
#endif
  ssize_t n;
  // One buffer (a connection's corked writes in the out slab, a TLS
  // connection's records) goes through send(): the kernel's sendmsg path
  // copies and checks the msghdr and its iovec array first, about 0.25 us
  // more per call for 96 bytes over loopback on this machine's kernel.
  if (iovcnt == 1) {
    do {
      n = send(fd, iov[0].iov_base, iov[0].iov_len, flags);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
  }
  msghdr msg;
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = iovcnt;
  do {
    n = sendmsg(fd, &msg, flags);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

bool PeerFinPending(int fd) {
  char b;
  ssize_t n;
  do {
    n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  return n == 0;
}

int SocketAddress(int fd, bool peer, char* host, size_t host_len, int* port) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int r = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
               : getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (r < 0) return -errno;
  if (ss.ss_family == AF_UNIX) {
    auto* un = reinterpret_cast<sockaddr_un*>(&ss);
    size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
    n = strnlen(un->sun_path, n);
    if (n >= host_len) n = host_len - 1;
    std::memcpy(host, un->sun_path, n);
    host[n] = '\0';
    *port = 0;
    return AF_UNIX;
  }
  int p = FormatInetAddr(reinterpret_cast<sockaddr*>(&ss), host, host_len);
  if (p < 0) return p;
  *port = p;
  return ss.ss_family;
}

}  // namespace netloop
