/* netloop-echo-c: the plainest fast epoll echo server, used as the ceiling in benchmarks.
 *
 *   netloop-echo-c --host 127.0.0.1 --port P [--proto tcp|ws]
 *
 * One thread, level-triggered epoll, non-blocking sockets with TCP_NODELAY. Every readable
 * socket is read once into one shared buffer and the bytes are written straight back. What the
 * kernel does not take is kept for that connection, which then stops reading (backpressure) and
 * waits for EPOLLOUT until the rest is written. Prints "listening HOST:PORT" once it accepts
 * connections; exits 0 on SIGINT or SIGTERM. Linux only.
 *
 * --proto ws: the same loop with a WebSocket (RFC 6455) server layer, as a CEILING, NOT A
 * CONFORMANT SERVER. The handshake finds Sec-WebSocket-Key in the request head and answers 101
 * (it checks nothing else: not the method, Upgrade, Connection or the version). Client frames
 * are parsed incrementally (a frame may be split across reads at any byte, a read may hold many
 * frames), unmasked and echoed as they arrive, unmasked, with the same opcode and FIN bit and
 * the minimal length encoding; a payload is never buffered whole, so memory does not grow with
 * the message size. Ping is answered with pong, pong is dropped, close is echoed and the socket
 * closed once the echo is written. Not done: UTF-8 validation of text, fragmentation rules,
 * close code validation, size limits, timeouts, extensions. An unmasked client frame or an RSV
 * bit closes the connection. That is enough to echo netloop-loadgen's traffic correctly while
 * costing as little as a WebSocket server can.
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

#include "ws_accept.h"

#define READ_BUF_SIZE (256 * 1024)
#define MAX_EVENTS 1024
/* ws: the request head may take this much; a longer one closes the connection. */
#define WS_MAX_HEAD 8192
/* ws: one read's output. Each client frame's header (6, 8 or 14 bytes with the mask) is longer
 * than the header echoed for it (2, 4 or 10), so the echo of the frames that lie inside a read is
 * smaller than the read. What can exceed it: the one frame whose header or control payload began
 * in an earlier read (its 10-byte header or 2 + 125-byte pong or close), and the 101 response. */
#define WS_OUT_SLACK 1024

/* Per connection (indexed by fd): bytes the kernel refused, and the ws parser's state. */
struct conn {
  char *data; /* pending output */
  size_t len;
  size_t off;
  /* ws only */
  int ws_open;        /* 101 sent: the bytes are frames */
  int close_after;    /* a close was echoed: close the socket once the output is written */
  char *head;         /* the request head while it arrives */
  size_t head_len;
  uint8_t hdr[14];    /* the frame header being collected (2..14 bytes) */
  unsigned hdr_len;
  unsigned hdr_need;  /* 2, then 2 + extended length + 4 (mask) */
  int in_payload;     /* inside a frame's payload */
  uint64_t left;      /* its payload bytes still to come */
  uint8_t mask[4];
  unsigned mask_pos;  /* payload bytes unmasked so far, mod 4 */
  uint8_t b0;         /* the frame's first byte: FIN and opcode */
  uint8_t ctrl[125];  /* a control frame's payload */
  unsigned ctrl_len;
};

static volatile sig_atomic_t stop_requested = 0;
static struct conn *conns = NULL;
static size_t conns_cap = 0;
static char read_buf[READ_BUF_SIZE];
static uint8_t ws_out[READ_BUF_SIZE + WS_OUT_SLACK];
static int proto_ws = 0;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static void usage(FILE *to) {
  fputs("usage: netloop-echo-c [--host 127.0.0.1] --port P [--proto tcp|ws]\n", to);
}

static struct conn *conn_for(int fd) {
  if ((size_t)fd >= conns_cap) {
    size_t cap = conns_cap ? conns_cap : 1024;
    while (cap <= (size_t)fd) cap *= 2;
    struct conn *p = realloc(conns, cap * sizeof *p);
    if (p == NULL) return NULL;
    memset(p + conns_cap, 0, (cap - conns_cap) * sizeof *p);
    conns = p;
    conns_cap = cap;
  }
  return &conns[fd];
}

static void conn_reset(struct conn *c) {
  free(c->data);
  free(c->head);
  memset(c, 0, sizeof *c);
  c->hdr_need = 2;
}

static void drop_conn(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  if ((size_t)fd < conns_cap) conn_reset(&conns[fd]);
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
    struct conn *c = conn_for(fd);
    if (c == NULL) {
      close(fd);
      continue;
    }
    conn_reset(c);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) close(fd);
  }
}

/* Writes what is pending; returns 0 when all of it went, 1 when some is left, -1 on error. */
static int flush_pending(int fd, struct conn *p) {
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

/* ------------------------------------------------------------------------------------------
 * WebSocket layer (--proto ws). ws_input() turns one read's bytes into the bytes to send back,
 * appended at out + *out_len; it returns 0, or -1 to drop the connection. */

/* Copies n payload bytes to out, unmasked; pos is the payload offset mod 4 where they start. */
static void ws_unmask(uint8_t *out, const uint8_t *in, size_t n, const uint8_t mask[4], unsigned pos) {
  uint8_t m8[8];
  for (int i = 0; i < 8; i++) m8[i] = mask[(pos + (unsigned)i) & 3];
  uint64_t k;
  memcpy(&k, m8, 8);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, in + i, 8);
    v ^= k;
    memcpy(out + i, &v, 8);
  }
  for (; i < n; i++) out[i] = in[i] ^ m8[i & 7];
}

/* A server frame header (unmasked, minimal length encoding); returns its size. */
static size_t ws_header(uint8_t *h, uint8_t b0, uint64_t len) {
  h[0] = b0;
  if (len < 126) {
    h[1] = (uint8_t)len;
    return 2;
  }
  if (len <= 0xFFFF) {
    h[1] = 126;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    return 4;
  }
  h[1] = 127;
  for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
  return 10;
}

/* Case-insensitive search for "\r\nName:" in the head; returns the value (trimmed) or NULL. */
static const char *ws_header_value(const char *head, size_t head_len, const char *name, size_t *vlen) {
  size_t nlen = strlen(name);
  for (size_t i = 0; i + 2 + nlen + 1 <= head_len; i++) {
    if (head[i] != '\r' || head[i + 1] != '\n' || strncasecmp(head + i + 2, name, nlen) != 0 ||
        head[i + 2 + nlen] != ':')
      continue;
    size_t v = i + 2 + nlen + 1;
    while (v < head_len && (head[v] == ' ' || head[v] == '\t')) v++;
    size_t e = v;
    while (e < head_len && head[e] != '\r') e++;
    while (e > v && (head[e - 1] == ' ' || head[e - 1] == '\t')) e--;
    *vlen = e - v;
    return head + v;
  }
  return NULL;
}

/* The request head. Returns how many of the n bytes it used (the rest are frames), or -1. */
static ssize_t ws_handshake(struct conn *c, const uint8_t *in, size_t n, uint8_t *out, size_t *out_len) {
  if (c->head == NULL) {
    c->head = malloc(WS_MAX_HEAD);
    if (c->head == NULL) return -1;
  }
  size_t old = c->head_len;
  size_t take = n < WS_MAX_HEAD - old ? n : WS_MAX_HEAD - old;
  memcpy(c->head + old, in, take);
  c->head_len += take;
  char *end = memmem(c->head + (old >= 3 ? old - 3 : 0), c->head_len - (old >= 3 ? old - 3 : 0), "\r\n\r\n", 4);
  if (end == NULL) return c->head_len == WS_MAX_HEAD ? -1 : (ssize_t)take;
  size_t head_len = (size_t)(end - c->head) + 4;
  size_t klen = 0;
  const char *key = ws_header_value(c->head, head_len, "Sec-WebSocket-Key", &klen);
  char accept[NL_WS_ACCEPT_LEN + 1];
  if (key == NULL || klen == 0 || nl_ws_accept(key, klen, accept) != 0) return -1;
  int w = snprintf((char *)out + *out_len, WS_OUT_SLACK,
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n\r\n",
                   accept);
  *out_len += (size_t)w;
  free(c->head);
  c->head = NULL;
  c->head_len = 0;
  c->ws_open = 1;
  return (ssize_t)(head_len - old);
}

static int ws_input(struct conn *c, const uint8_t *in, size_t n, uint8_t *out, size_t *out_len) {
  size_t o = *out_len;
  if (!c->ws_open) {
    ssize_t used = ws_handshake(c, in, n, out, &o);
    if (used < 0) return -1;
    in += used;
    n -= (size_t)used;
  }
  while (n > 0 && !c->close_after) {
    if (!c->in_payload) {
      /* Collect the header: 2 bytes say how long it is. */
      size_t take = c->hdr_need - c->hdr_len;
      if (take > n) take = n;
      memcpy(c->hdr + c->hdr_len, in, take);
      c->hdr_len += (unsigned)take;
      in += take;
      n -= take;
      if (c->hdr_len < c->hdr_need) break;
      if (c->hdr_need == 2) {
        if (!(c->hdr[1] & 0x80) || (c->hdr[0] & 0x70)) return -1; /* unmasked, or RSV bits */
        unsigned len7 = c->hdr[1] & 0x7F;
        c->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
        continue;
      }
      unsigned len7 = c->hdr[1] & 0x7F, m = 2;
      uint64_t len = len7;
      if (len7 == 126) {
        len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
        m = 4;
      } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | c->hdr[2 + i];
        m = 10;
      }
      memcpy(c->mask, c->hdr + m, 4);
      c->b0 = c->hdr[0];
      c->hdr_len = 0;
      c->hdr_need = 2;
      c->in_payload = 1;
      c->left = len;
      c->mask_pos = 0;
      c->ctrl_len = 0;
      if (c->b0 & 0x08) {
        if (len > 125 || !(c->b0 & 0x80)) return -1; /* control frames: short and whole */
      } else {
        o += ws_header(out + o, c->b0, len); /* data: echo the header now, the payload as it comes */
      }
    }
    size_t take = c->left < n ? (size_t)c->left : n;
    if (c->b0 & 0x08) {
      ws_unmask(c->ctrl + c->ctrl_len, in, take, c->mask, c->mask_pos);
      c->ctrl_len += (unsigned)take;
    } else {
      ws_unmask(out + o, in, take, c->mask, c->mask_pos);
      o += take;
    }
    c->mask_pos = (c->mask_pos + (unsigned)take) & 3;
    c->left -= take;
    in += take;
    n -= take;
    if (c->left > 0) break;
    c->in_payload = 0;
    uint8_t op = c->b0 & 0x0F;
    if (op == 0x9 || op == 0x8) { /* ping -> pong; close -> close, then hang up */
      o += ws_header(out + o, (uint8_t)(0x80 | (op == 0x9 ? 0xA : 0x8)), c->ctrl_len);
      memcpy(out + o, c->ctrl, c->ctrl_len);
      o += c->ctrl_len;
      if (op == 0x8) c->close_after = 1;
    }
  }
  *out_len = o;
  return 0;
}

/* ------------------------------------------------------------------------------------------ */

/* Sends out[0..len); keeps what the kernel refuses and stops reading until it is written.
 * Returns 0, or -1 after dropping the connection. */
static int send_or_keep(int ep, int fd, const char *out, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t w = send(fd, out + off, len - off, MSG_NOSIGNAL);
    if (w >= 0) {
      off += (size_t)w;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    drop_conn(ep, fd);
    return -1;
  }
  if (off == len) return 0;
  /* The peer is not reading fast enough: keep the rest, stop reading until it is written. */
  struct conn *p = &conns[fd];
  p->len = len - off;
  p->off = 0;
  p->data = malloc(p->len);
  if (p->data == NULL || set_interest(ep, fd, EPOLLOUT) != 0) {
    drop_conn(ep, fd);
    return -1;
  }
  memcpy(p->data, out + off, p->len);
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
  if (!proto_ws) {
    send_or_keep(ep, fd, read_buf, (size_t)n);
    return;
  }
  struct conn *c = &conns[fd];
  size_t out_len = 0;
  if (ws_input(c, (const uint8_t *)read_buf, (size_t)n, ws_out, &out_len) != 0) {
    drop_conn(ep, fd);
    return;
  }
  if (send_or_keep(ep, fd, (const char *)ws_out, out_len) != 0) return;
  if (c->close_after && c->data == NULL) drop_conn(ep, fd); /* close echoed and written */
}

static void on_writable(int ep, int fd) {
  int rc = flush_pending(fd, &conns[fd]);
  if (rc < 0 || (rc == 0 && conns[fd].close_after)) {
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
    } else if (strcmp(argv[i], "--proto") == 0) {
      const char *p = argv[++i];
      if (strcmp(p, "ws") == 0) {
        proto_ws = 1;
      } else if (strcmp(p, "tcp") != 0) {
        usage(stderr);
        return 2;
      }
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

  printf("listening %s:%u%s\n", host, (unsigned)ntohs(addr.sin_port), proto_ws ? " (ws)" : "");
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
      } else if ((size_t)fd < conns_cap && conns[fd].data != NULL) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(ep, fd);
      } else if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        on_readable(ep, fd);
      }
    }
  }

  /* Stop: close the listener; the connections still open close when the process exits. */
  close(lfd);
  for (size_t fd = 0; fd < conns_cap; fd++) conn_reset(&conns[fd]);
  free(conns);
  close(ep);
  if (spare_fd >= 0) close(spare_fd);
  return 0;
}
