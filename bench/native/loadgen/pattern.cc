// The payload tables (see pattern.h).
#include "pattern.h"

#include <cstring>

namespace loadgen {

uint8_t g_bin_table[2 * kTableLen + 8];
uint8_t g_text_table[2 * kTableLen + 8];

void pattern_init() {
  for (size_t i = 0; i < kTableLen; i++) {
    uint64_t r = mix64(i * kGolden + 0x6E65746C6F6F70ull);
    g_bin_table[i] = static_cast<uint8_t>(r >> 29);
    g_text_table[i] = static_cast<uint8_t>(0x20 + ((r >> 41) & 0x3F));
  }
  for (uint8_t* t : {g_bin_table, g_text_table}) {
    memcpy(t + kTableLen, t, kTableLen);
    memcpy(t + 2 * kTableLen, t, 8);
  }
}

}  // namespace loadgen
