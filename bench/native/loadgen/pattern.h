// Payload pattern. A message (conn, seq) has a 64-bit seed. Its byte i is
//     table[(seed % kTableLen + i) % kTableLen] ^ byte (i % 8) of (seed & key_mask)
// where table is one fixed pseudo-random block shared by all threads. The offset and the key
// differ per message, so a lost, duplicated, altered or reordered byte (or message) shows; and
// generating or checking costs one 8-byte load, xor and store/compare per 8 bytes, with no
// per-byte arithmetic. The table is stored twice in a row so that any run of up to kTableLen
// bytes is contiguous. Pure functions: generation and checking agree by construction, and
// checking accepts any split of the byte stream.
//
// Two patterns: binary (any byte, the full 64-bit key) and text (printable ASCII, hence valid
// UTF-8, for WebSocket text messages). The text table holds bytes in 0x20..0x5F and its key has
// only the low 5 bits of each byte (key_mask 0x1F..1F): XOR then changes only the low 5 bits, so
// every byte stays inside its 32-byte block, 0x20..0x3F (space to '?') or 0x40..0x5F ('@' to
// '_'). The text key carries 40 bits instead of 64, still ample to tell messages apart.
#ifndef NETLOOP_LOADGEN_PATTERN_H_
#define NETLOOP_LOADGEN_PATTERN_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace loadgen {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "pattern words are little-endian");

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;
constexpr size_t kTableLen = 65521;  // prime: offsets do not repeat with power-of-two sizes
// Filled once by pattern_init() before any thread starts, read-only afterwards.
extern uint8_t g_bin_table[2 * kTableLen + 8];
extern uint8_t g_text_table[2 * kTableLen + 8];

struct Pattern {
  const uint8_t* table;
  uint64_t key_mask;
};
inline const Pattern kBinaryPattern{g_bin_table, ~0ull};
inline const Pattern kTextPattern{g_text_table, 0x1F1F1F1F1F1F1F1Full};

inline uint64_t mix64(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

// Fills both tables (once, at start-up).
void pattern_init();

inline uint64_t message_seed(uint32_t conn, uint64_t seq) {
  return mix64((static_cast<uint64_t>(conn) << 40) ^ (seq * kGolden));
}

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

inline void store64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }

// The key as it lines up with the message bytes from offset off on (little-endian words).
inline uint64_t key_at(uint64_t key, size_t off) {
  unsigned s = static_cast<unsigned>(off % 8) * 8;
  return s == 0 ? key : (key >> s) | (key << (64 - s));
}

// Calls fn(table_run, key, length) over the runs that make up bytes [off, off + n).
template <typename Fn>
inline bool pattern_runs(const Pattern& pat, uint64_t seed, size_t off, size_t n, Fn fn) {
  const size_t base = static_cast<size_t>(seed % kTableLen);
  const uint64_t key = seed & pat.key_mask;
  while (n > 0) {
    size_t pos = (base + off) % kTableLen;
    size_t run = std::min(n, kTableLen);  // pos < kTableLen, so pos + run <= 2 * kTableLen
    if (!fn(pat.table + pos, key_at(key, off), run)) return false;
    off += run;
    n -= run;
  }
  return true;
}

inline void pattern_fill(const Pattern& pat, uint64_t seed, uint8_t* out, size_t len) {
  pattern_runs(pat, seed, 0, len, [&out](const uint8_t* t, uint64_t key, size_t run) {
    size_t j = 0;
    for (; j + 8 <= run; j += 8) store64(out + j, load64(t + j) ^ key);
    for (; j < run; j++) out[j] = static_cast<uint8_t>(t[j] ^ (key >> (8 * (j % 8))));
    out += run;
    return true;
  });
}

// Checks n bytes that sit at offset off of the message; true if they all match.
inline bool pattern_check(const Pattern& pat, uint64_t seed, size_t off, const uint8_t* in, size_t n) {
  return pattern_runs(pat, seed, off, n, [&in](const uint8_t* t, uint64_t key, size_t run) {
    size_t j = 0;
    uint64_t diff = 0;
    for (; j + 8 <= run; j += 8) diff |= (load64(in + j) ^ key) ^ load64(t + j);
    for (; j < run; j++) diff |= static_cast<uint8_t>(in[j] ^ (key >> (8 * (j % 8))) ^ t[j]);
    in += run;
    return diff == 0;
  });
}

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_PATTERN_H_
