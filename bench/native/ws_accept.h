/* ws_accept.h: the WebSocket handshake's one piece of cryptography, for the benchmark programs.
 *
 *   Sec-WebSocket-Accept = base64(SHA-1(Sec-WebSocket-Key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
 *
 * A small SHA-1 (FIPS 180-4) and base64 (RFC 4648, with padding), written for this and nothing
 * else: correct for any input, but not tuned. Shared by netloop-loadgen (C++) and netloop-echo-c
 * (C), so it is plain C99 that also compiles as C++; every function is static inline (a program
 * that uses only some of them gets no unused-function warning). Checked by
 * `netloop-loadgen --self-test` against the RFC 6455 section 1.3 sample and the FIPS test vectors.
 */
#ifndef NETLOOP_BENCH_WS_ACCEPT_H
#define NETLOOP_BENCH_WS_ACCEPT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NL_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define NL_WS_GUID_LEN 36
#define NL_WS_ACCEPT_LEN 28 /* base64 of 20 bytes */

static inline uint32_t nl_rol32(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

/* One 64-byte block into the state h. */
static inline void nl_sha1_block(uint32_t h[5], const uint8_t *p) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++) {
    w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) | ((uint32_t)p[4 * i + 2] << 8) |
           (uint32_t)p[4 * i + 3];
  }
  for (int i = 16; i < 80; i++) w[i] = nl_rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999u;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1u;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDCu;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6u;
    }
    uint32_t t = nl_rol32(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = nl_rol32(b, 30);
    b = a;
    a = t;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

/* SHA-1 of len bytes at data into out[20]. */
static inline void nl_sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  size_t full = len / 64 * 64;
  for (size_t off = 0; off < full; off += 64) nl_sha1_block(h, data + off);
  /* The tail, 0x80, zeros, and the length in bits (big-endian) fill one or two blocks. */
  uint8_t tail[128];
  size_t rest = len - full;
  memset(tail, 0, sizeof tail);
  if (rest > 0) memcpy(tail, data + full, rest);
  tail[rest] = 0x80;
  size_t tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
  uint64_t bits = (uint64_t)len * 8u;
  for (int i = 0; i < 8; i++) tail[tail_len - 1 - (size_t)i] = (uint8_t)(bits >> (8 * i));
  nl_sha1_block(h, tail);
  if (tail_len == 128) nl_sha1_block(h, tail + 64);
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (uint8_t)(h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(h[i] >> 8);
    out[4 * i + 3] = (uint8_t)h[i];
  }
}

/* base64 of len bytes into out (4 * ceil(len / 3) chars, then a NUL). Returns the length. */
static inline size_t nl_base64(const uint8_t *in, size_t len, char *out) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0, i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
    out[o++] = abc[v >> 18];
    out[o++] = abc[(v >> 12) & 63];
    out[o++] = abc[(v >> 6) & 63];
    out[o++] = abc[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = abc[v >> 18];
    out[o++] = abc[(v >> 12) & 63];
    out[o++] = '=';
    out[o++] = '=';
  } else if (len - i == 2) {
    uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
    out[o++] = abc[v >> 18];
    out[o++] = abc[(v >> 12) & 63];
    out[o++] = abc[(v >> 6) & 63];
    out[o++] = '=';
  }
  out[o] = '\0';
  return o;
}

/* The Sec-WebSocket-Accept value for a key of key_len bytes (a client sends 24) into
 * out[NL_WS_ACCEPT_LEN + 1]. Returns 0, or -1 for a key longer than 256 bytes. */
static inline int nl_ws_accept(const char *key, size_t key_len, char *out) {
  uint8_t buf[256 + NL_WS_GUID_LEN];
  uint8_t digest[20];
  if (key_len > 256) return -1;
  memcpy(buf, key, key_len);
  memcpy(buf + key_len, NL_WS_GUID, NL_WS_GUID_LEN);
  nl_sha1(buf, key_len + NL_WS_GUID_LEN, digest);
  nl_base64(digest, 20, out);
  return 0;
}

#endif /* NETLOOP_BENCH_WS_ACCEPT_H */
