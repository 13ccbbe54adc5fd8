#!/usr/bin/env node
// Where permessage-deflate should run: on the JS thread in bounded slices
// (lib/websocket/deflate-work.ts, what netloop does) or on libuv's thread
// pool through Node's async zlib streams (what ws does). `node
// bench/micro/deflate-offload.js [--chunk 16384]`. A micro benchmark in one
// process, warm JIT; the figures it printed are quoted in deflate-work.ts.
//
//   1. a 2.4 KB JSON message compressed and inflated back, context takeover,
//      one after the other: microseconds per message, sync codec against
//      async streams (two thread-pool round trips per message);
//   2. a 16 KiB message inflating to 16 MiB - 1: wall time, and how long the
//      JS thread was busy (eventLoopUtilization) and the longest loop delay,
//      sync codec in one go, sync codec in slices (decompressLater), async
//      stream with --chunk bytes of output per round trip (zlib's default,
//      16 KiB, is what ws uses).
import zlib from 'node:zlib';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { PerMessageDeflate } from '../../dist/websocket/deflate.js';

const { values: args } = parseArgs({ options: { chunk: { type: 'string', default: '16384' } } });
const CHUNK = Number(args.chunk);
const LIMIT = 16 * 1024 * 1024;
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const { Z_SYNC_FLUSH } = zlib.constants;
const params = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };

/** Sync-flushes `data` through a zlib stream (its context kept); resolves to what came out. */
function streamFlush(stream, data) {
  return new Promise((resolve) => {
    const chunks = [];
    const on = (c) => chunks.push(c);
    stream.on('data', on);
    stream.write(data);
    stream.flush(Z_SYNC_FLUSH, () => {
      stream.off('data', on);
      resolve(Buffer.concat(chunks));
    });
  });
}

/** Runs `fn` (async), reporting wall ms, JS-thread busy ms and the longest loop delay. */
async function measure(label, fn) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  for (let r = 0; r < 3; r++) {
    h.reset();
    h.enable();
    const elu = performance.eventLoopUtilization();
    const t0 = performance.now();
    await fn();
    const wall = performance.now() - t0;
    const busy = performance.eventLoopUtilization(elu).active;
    h.disable();
    console.log(`${label}: ${wall.toFixed(1)} ms wall, JS thread busy ${busy.toFixed(1)} ms, loop delay max ${(h.max / 1e6).toFixed(1)} ms`);
  }
}

// 1. Small messages
const small = Buffer.from(JSON.stringify(Array.from({ length: 60 }, (_, i) => ({ id: i, name: `item${i}`, v: i * 3.7 }))));
{
  const server = new PerMessageDeflate(params, 'server', {});
  const client = new PerMessageDeflate(params, 'client', {});
  const n = 20000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) client.decompress(server.compress(small), LIMIT);
  console.log(`${small.length} B message, sync codec: ${(((performance.now() - t0) * 1000) / n).toFixed(1)} us per message (deflate + inflate)`);
}
{
  const d = zlib.createDeflateRaw({ windowBits: 15, level: 1 });
  const i = zlib.createInflateRaw({ windowBits: 15 });
  const n = 3000;
  const t0 = performance.now();
  for (let k = 0; k < n; k++) await streamFlush(i, Buffer.concat([(await streamFlush(d, small)).subarray(0, -4), TAIL]));
  console.log(`${small.length} B message, async streams: ${(((performance.now() - t0) * 1000) / n).toFixed(1)} us per message (deflate + inflate)`);
}

// 2. One message inflating to just under 16 MiB
const plain = Buffer.alloc(LIMIT - 1, 0x61);
const packed = zlib.deflateRawSync(plain, { finishFlush: Z_SYNC_FLUSH }).subarray(0, -4);
console.log(`large message: ${packed.length} B on the wire, ${plain.length} B inflated`);
const codec = new PerMessageDeflate(params, 'server', {});
await measure('sync codec, in one go', async () => codec.decompress(packed, LIMIT));
await measure('sync codec, in slices (decompressLater)', () => new Promise((resolve) => codec.decompressLater(packed, LIMIT, resolve) !== undefined && resolve()));
const stream = zlib.createInflateRaw({ windowBits: 15, chunkSize: CHUNK });
await measure(`async stream, ${CHUNK} B chunks`, () => streamFlush(stream, Buffer.concat([packed, TAIL])));
