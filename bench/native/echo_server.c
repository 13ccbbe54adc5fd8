/* netloop-echo-c: the plainest fast epoll echo server, used as the ceiling in benchmarks.
 *
 *   netloop-echo-c --host 127.0.0.1 --port P
 *
 * One thread, level-triggered epoll, non-blocking sockets with TCP_NODELAY. Every readable
 * socket is read once into one shared buffer and the bytes are written straight back. What the
 * kernel does not take is kept for that connection, which then stops reading (backpressure) and
 * waits for EPOLLOUT until the rest is written. Prints "listening HOST:PORT" once it accepts
 * connections; exits 0 on SIGINT or SIGTERM. Linux only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF_SIZE (256 * 1024)
#define MAX_EVENTS 1024

/* Bytes the kernel refused, per connection (indexed by fd). */
struct pending {
  char *data;
  size_t len;
  size_t off;
};

static volatile sig_atomic_t stop_requested = 0;
static struct pending *pend = NULL;
static size_t pend_cap = 0;
static char read_buf[READ_BUF_SIZE];

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void usage(FILE *to) {
  fputs("usage: netloop-echo-c [--host 127.0.0.1] --port P\n", to);
}

static struct pending *pending_for(int fd) {
  if ((size_t)fd >= pend_cap) {
    size_t cap = pend_cap ? pend_cap : 1024;
    while (cap <= (size_t)fd) cap *= 2;
    struct pending *p = realloc(pend, cap * sizeof *p);
    if (p == NULL) return NULL;
    memset(p + pend_cap, 0, (cap - pend_cap) * sizeof *p);
    pend = p;
    pend_cap = cap;
  }
  return &pend[fd];
}

static void drop_conn(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  if ((size_t)fd < pend_cap) {
    free(pend[fd].data);
    pend[fd].data = NULL;
    pend[fd].len = pend[fd].off = 0;
  }
}

static int set_interest(int ep, int fd, uint32_t events) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.fd = fd;
  return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

/* Accept until the backlog is empty. EMFILE/ENFILE on a level-triggered listener would report
 * it readable forever and spin: give the spare fd back, accept and close the connection, and take
 * the spare again. */
static void accept_all(int ep, int lfd, int *spare_fd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && *spare_fd >= 0) {
        close(*spare_fd);
        fd = accept(lfd, NULL, NULL);
        if (fd >= 0) close(fd);
        *spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        continue;
      }
      return; /* EAGAIN, or an error the next wake-up will see again */
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN; /* EOF and errors make a socket readable too */
    ev.data.fd = fd;
    if (pending_for(fd) == NULL || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) close(fd);
  }
}

/* Writes what is pending; returns 0 when all of it went, 1 when some is left, -1 on error. */
static int flush_pending(int fd, struct pending *p) {
  while (p->off < p->len) {
    ssize_t n = send(fd, p->data + p->off, p->len - p->off, MSG_NOSIGNAL);
    if (n >= 0) {
      p->off += (size_t)n;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
    return -1;
  }
  free(p->data);
  p->data = NULL;
  p->len = p->off = 0;
  return 0;
}

static void on_readable(int ep, int fd) {
  ssize_t n;
  do {
    n = recv(fd, read_buf, sizeof read_buf, 0);
  } while (n < 0 && errno == EINTR);
  if (n == 0) {
    drop_conn(ep, fd);
    return;
  }
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) drop_conn(ep, fd);
    return;
  }
  size_t off = 0;
  while (off < (size_t)n) {
    ssize_t w = send(fd, read_buf + off, (size_t)n - off, MSG_NOSIGNAL);
    if (w >= 0) {
      off += (size_t)w;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    drop_conn(ep, fd);
    return;
  }
  if (off == (size_t)n) return;
  /* The peer is not reading fast enough: keep the rest, stop reading until it is written. */
  struct pending *p = &pend[fd];
  p->len = (size_t)n - off;
  p->off = 0;
  p->data = malloc(p->len);
  if (p->data == NULL || set_interest(ep, fd, EPOLLOUT) != 0) {
    drop_conn(ep, fd);
    return;
  }
  memcpy(p->data, read_buf + off, p->len);
}

static void on_writable(int ep, int fd) {
  int rc = flush_pending(fd, &pend[fd]);
  if (rc < 0) {
    drop_conn(ep, fd);
  } else if (rc == 0 && set_interest(ep, fd, EPOLLIN) != 0) {
    drop_conn(ep, fd);
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  long port = -1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      usage(stderr);
      return 2;
    }
    if (strcmp(argv[i], "--host") == 0) {
      host = argv[++i];
    } else if (strcmp(argv[i], "--port") == 0) {
      char *end = NULL;
      port = strtol(argv[++i], &end, 10);
      if (*end != '\0' || port < 0 || port > 65535) port = -2;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (port < 0) {
    usage(stderr);
    return 2;
  }

  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "netloop-echo-c: --host must be an IPv4 address\n");
    return 2;
  }

  /* No SA_RESTART: a signal interrupts epoll_wait so the loop sees the stop flag at once. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (lfd < 0) {
    perror("netloop-echo-c: socket");
    return 1;
  }
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, SOMAXCONN) != 0) {
    perror("netloop-echo-c: bind/listen");
    return 1;
  }
  socklen_t alen = sizeof addr;
  getsockname(lfd, (struct sockaddr *)&addr, &alen);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    perror("netloop-echo-c: epoll_create1");
    return 1;
  }
  struct epoll_event lev;
  memset(&lev, 0, sizeof lev);
  lev.events = EPOLLIN;
  lev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  int spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

  printf("listening %s:%u\n", host, (unsigned)ntohs(addr.sin_port));
  fflush(stdout);

  static struct epoll_event events[MAX_EVENTS];
  while (!stop_requested) {
    int n = epoll_wait(ep, events, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("netloop-echo-c: epoll_wait");
      return 1;
    }
    /* An fd dropped earlier in this batch may have been reused by accept_all(); a stale event
     * for it then costs one read that finds nothing (EAGAIN), which is harmless. */
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      uint32_t ev = events[i].events;
      if (fd == lfd) {
        accept_all(ep, lfd, &spare_fd);
      } else if ((size_t)fd < pend_cap && pend[fd].data != NULL) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(ep, fd);
      } else if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        on_readable(ep, fd);
      }
    }
  }

  /* Stop: close the listener; the connections still open close when the process exits. */
  close(lfd);
  for (size_t fd = 0; fd < pend_cap; fd++) free(pend[fd].data);
  free(pend);
  close(ep);
  if (spare_fd >= 0) close(spare_fd);
  return 0;
}
