// Masking (RFC 6455 §5.3): payload byte i is XORed with key[i % 4]. The same
// operation masks (sender) and unmasks (receiver).
//
// The receiver copies each payload out of the engine's reused receive buffer
// and unmasks it in the same pass (copyMasked: one read and one write of
// every byte, as the C echo server does; native from 128 bytes); the sender copies the user's
// payload next to the frame header and masks that in place (maskInPlace).

import { binding } from '../native.js';

// Below this many bytes a plain byte loop beats creating a Uint32Array view.
const WORD_LOOP_MIN = 32;
// From this many bytes the native loop (64-bit words, vectorized by the C
// compiler) wins over the 32-bit JavaScript loop despite the call into the
// addon: node bench/micro/mask.js (a call costs about 95 ns; 256 bytes: 93 ns
// native, 118 ns here; 64 KiB: 1.3 us native, 16.8 us here).
const NATIVE_MIN = 256;

// Scratch for turning four key bytes, in memory order, into the 32-bit word
// that XORs them in place. Going through memory instead of shifting makes the
// word right on little- and big-endian machines alike.
const keyBytes = new Uint8Array(4);
const keyWord = new Uint32Array(keyBytes.buffer);

/**
 * XORs buf[start..end) with the 4-byte `key`, in place. `keyIndex` is the
 * position in the key of the byte at `start` (the number of payload bytes
 * already masked, mod 4), so that a payload can be processed in pieces as it
 * arrives. Returns the key index for the byte at `end`.
 */
export function maskInPlace(buf: Uint8Array, start: number, end: number, key: Uint8Array, keyIndex: number): number {
  if (end - start >= NATIVE_MIN) return binding.mask(buf, start, end, key, keyIndex);
  let i = start;
  let k = keyIndex & 3;
  if (end - i >= WORD_LOOP_MIN) {
    // Bytes up to the first 4-byte-aligned address: Uint32Array needs aligned offsets.
    const misalign = (buf.byteOffset + i) & 3;
    if (misalign !== 0) {
      for (let n = 4 - misalign; n > 0; n--) {
        buf[i++]! ^= key[k]!;
        k = (k + 1) & 3;
      }
    }
    keyBytes[0] = key[k]!;
    keyBytes[1] = key[(k + 1) & 3]!;
    keyBytes[2] = key[(k + 2) & 3]!;
    keyBytes[3] = key[(k + 3) & 3]!;
    const word = keyWord[0]!;
    const words = (end - i) >>> 2;
    const view = new Uint32Array(buf.buffer, buf.byteOffset + i, words);
    // Four words per iteration: fewer loop checks; the compiler keeps `word` in a register.
    const unrolled = words & ~3;
    let w = 0;
    for (; w < unrolled; w += 4) {
      view[w]! ^= word;
      view[w + 1]! ^= word;
      view[w + 2]! ^= word;
      view[w + 3]! ^= word;
    }
    for (; w < words; w++) view[w]! ^= word;
    i += words << 2; // a whole number of words: the key index is unchanged
  }
  for (; i < end; i++) {
    buf[i]! ^= key[k]!;
    k = (k + 1) & 3;
  }
  return k;
}

// From this many bytes the fused native copy (16-byte vectors, one pass)
// beats the unrolled JavaScript loop below: a call into the addon costs
// about 120 ns at any size up to 1 KiB; the loop takes 59 ns for 64 bytes,
// 112 ns for 128 and 215 ns for 256 (node bench/micro/mask.js; the byte
// loop it replaced took 94 ns for 64 bytes).
const COPY_MASKED_NATIVE_MIN = 128;

/**
 * Copies src[srcStart, srcStart + n) to dst at dstStart, XORing it with the
 * 4-byte `key` on the way (key byte `keyIndex` first): one read and one
 * write of every byte. src and dst must be different memory. Returns the key
 * index after the last byte.
 */
export function copyMasked(src: Uint8Array, srcStart: number, dst: Uint8Array, dstStart: number, n: number, key: Uint8Array, keyIndex: number): number {
  if (n >= COPY_MASKED_NATIVE_MIN) return binding.maskCopy(src, srcStart, dst, dstStart, n, key, keyIndex);
  // The key bytes in locals, four payload bytes per iteration: no key
  // index arithmetic per byte.
  const k0 = key[keyIndex & 3]!;
  const k1 = key[(keyIndex + 1) & 3]!;
  const k2 = key[(keyIndex + 2) & 3]!;
  const k3 = key[(keyIndex + 3) & 3]!;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    dst[dstStart + i] = src[srcStart + i]! ^ k0;
    dst[dstStart + i + 1] = src[srcStart + i + 1]! ^ k1;
    dst[dstStart + i + 2] = src[srcStart + i + 2]! ^ k2;
    dst[dstStart + i + 3] = src[srcStart + i + 3]! ^ k3;
  }
  if (i < n) dst[dstStart + i] = src[srcStart + i]! ^ k0;
  if (i + 1 < n) dst[dstStart + i + 1] = src[srcStart + i + 1]! ^ k1;
  if (i + 2 < n) dst[dstStart + i + 2] = src[srcStart + i + 2]! ^ k2;
  return (keyIndex + n) & 3;
}
