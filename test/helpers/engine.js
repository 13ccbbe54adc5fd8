// Helpers shared by the engine tests: descriptor counting, bounded waits,
// a deterministic byte pattern to check long streams against, and a waiter
// that callbacks poke.
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';

const MiB = 1024 * 1024;

export const fdCount = () => fs.readdirSync('/proc/self/fd').length;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function until(cond, ms, what) {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(2);
  }
}

export const PERIOD = 65521;

export const RING = (() => {
  const b = Buffer.allocUnsafe(PERIOD + MiB);
  let x = 2463534242;
  for (let i = 0; i < PERIOD; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  for (let i = PERIOD; i < b.length; i++) b[i] = b[i - PERIOD];
  return b;
})();

export function pattern(offset, len) {
  const s = offset % PERIOD;
  return RING.subarray(s, s + len);
}

// Resolves waiters whose predicate became true; poke() after every callback.
export function signal() {
  const waiters = [];
  return {
    poke() {
      for (const w of [...waiters]) {
        if (w.pred()) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
    until(pred) {
      if (pred()) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
  };
}
