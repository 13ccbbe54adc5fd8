#!/usr/bin/env node
// Masking throughput (RFC 6455 §5.3), the JavaScript 32-bit word loop against
// the addon's 64-bit loop, by payload size: where lib/websocket/mask.ts should
// switch to native (NATIVE_MIN); then the receiver's copy-and-unmask, JavaScript against
// the addon (COPY_MASKED_NATIVE_MIN). `node bench/micro/mask.js`. A micro
// benchmark: it runs in one process on a warm JIT, and reports ns per call
// and GB/s; the median of 5 rounds of at least 200 ms each.
import { binding } from '../../dist/native.js';

const key = Buffer.from('a1b2c3d4', 'hex');

// The JavaScript loop of lib/websocket/mask.ts, without its native branch.
const keyBytes = new Uint8Array(4);
const keyWord = new Uint32Array(keyBytes.buffer);
function jsMask(buf, start, end, k) {
  let i = start;
  const misalign = (buf.byteOffset + i) & 3;
  for (let n = misalign === 0 ? 0 : 4 - misalign; n > 0 && i < end; n--) {
    buf[i++] ^= key[k];
    k = (k + 1) & 3;
  }
  for (let j = 0; j < 4; j++) keyBytes[j] = key[(k + j) & 3];
  const word = keyWord[0];
  const words = (end - i) >>> 2;
  const view = new Uint32Array(buf.buffer, buf.byteOffset + i, words);
  for (let w = 0; w < words; w++) view[w] ^= word;
  i += words << 2;
  for (; i < end; i++) {
    buf[i] ^= key[k];
    k = (k + 1) & 3;
  }
  return k;
}

function measure(fn, buf) {
  const rounds = [];
  for (let r = 0; r < 5; r++) {
    let calls = 0;
    const t0 = process.hrtime.bigint();
    let t1 = t0;
    while (t1 - t0 < 200_000_000n) {
      for (let i = 0; i < 100; i++) fn(buf, 0, buf.length, 0);
      calls += 100;
      t1 = process.hrtime.bigint();
    }
    rounds.push(Number(t1 - t0) / calls);
  }
  rounds.sort((a, b) => a - b);
  return rounds[2];
}

console.log('| payload | JS loop ns/call | JS GB/s | native ns/call | native GB/s | native / JS time |');
console.log('|---:|---:|---:|---:|---:|---:|');
for (const size of [64, 256, 512, 1024, 2048, 4096, 16384, 65536, 1 << 20]) {
  const buf = Buffer.alloc(size, 7);
  const js = measure(jsMask, buf);
  const nat = measure((b, s, e, k) => binding.mask(b, s, e, key, k), buf);
  console.log(`| ${size} | ${js.toFixed(0)} | ${(size / js).toFixed(2)} | ${nat.toFixed(0)} | ${(size / nat).toFixed(2)} | ${(nat / js).toFixed(2)} |`);
}

// The receiver's copy out of the receive buffer with unmasking (copyMasked in
// lib/websocket/mask.ts): its four-bytes-a-step JavaScript loop against the
// addon's fused copy, by size: where copyMasked should switch to native
// (COPY_MASKED_NATIVE_MIN).
const src = Buffer.alloc(65536 + 16, 7);
function jsCopyMasked(dst, n, k) {
  const k0 = key[k & 3], k1 = key[(k + 1) & 3], k2 = key[(k + 2) & 3], k3 = key[(k + 3) & 3];
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    dst[i] = src[13 + i] ^ k0;
    dst[i + 1] = src[14 + i] ^ k1;
    dst[i + 2] = src[15 + i] ^ k2;
    dst[i + 3] = src[16 + i] ^ k3;
  }
  for (; i < n; i++) dst[i] = src[13 + i] ^ key[(k + i) & 3];
  return (k + n) & 3;
}
console.log('');
console.log('| copy and unmask | JS loop ns/call | native ns/call | native / JS time |');
console.log('|---:|---:|---:|---:|');
for (const size of [32, 64, 128, 256, 1024, 16384]) {
  const dst = Buffer.alloc(size);
  const js = measure((d, s, n, k) => jsCopyMasked(d, n, k), dst);
  const nat = measure((d, s, n, k) => binding.maskCopy(src, 13, d, 0, n, key, k), dst);
  console.log(`| ${size} | ${js.toFixed(0)} | ${nat.toFixed(0)} | ${(nat / js).toFixed(2)} |`);
}
