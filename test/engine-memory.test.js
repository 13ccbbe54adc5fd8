// Giving back the memory of a connection burst (lib/memory.ts): after a
// burst of connections V8's young generation has grown; the engine asks V8
// for a memory-reducing collection once the burst is over (one request per
// burst, counted), and the young generation shrinks back (measured through
// v8.getHeapSpaceStatistics() in this process, with real loopback
// connections). What it does to a server's RSS is measured by the hold
// benchmark (bench/README.md), not here.
import t from 'tap';
import net from 'node:net';
import v8 from 'node:v8';
import { Engine, releaseMemory } from '../dist/index.js';
import { sleep, until } from './helpers/engine.js';
import { autoReleaseCount } from '../dist/memory.js';

t.setTimeout(60000);
const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
const MiB = 1024 * 1024;

async function burst(t, engineOptions, n) {
  const conns = [];
  const e = new Engine({ addrs: ['127.0.0.1:0'], backlog: 4096, ...engineOptions, onOpen: (c) => conns.push(c) });
  await e.start();
  t.teardown(() => e.stop());
  const port = Number(e.addresses()[0].split(':').pop());
  const clients = [];
  for (let i = 0; i < n; i += 500) {
    const wave = Array.from({ length: Math.min(500, n - i) }, () => net.connect(port, '127.0.0.1'));
    clients.push(...wave);
    await Promise.all(wave.map((s) => new Promise((resolve) => s.once('connect', resolve))));
  }
  await until(() => conns.length === n, 10000, `${n} opens`);
  t.teardown(() => clients.forEach((s) => s.destroy()));
  return { e, conns, clients };
}

t.test('releaseMemory() checks its argument', async (t) => {
  t.throws(() => releaseMemory('high'), TypeError);
  t.doesNotThrow(() => releaseMemory());
  t.doesNotThrow(() => releaseMemory('critical'));
  t.equal(new Engine({}).options.releaseMemoryAfterBurst, 1000, 'on by default, after 1,000 connections');
  t.throws(() => new Engine({ releaseMemoryAfterBurst: -1 }), TypeError);
});

t.test('one release per burst, once the burst is over; none when disabled', async (t) => {
  await t.test('releaseMemoryAfterBurst: 0', async (t) => {
    const before = autoReleaseCount();
    await burst(t, { releaseMemoryAfterBurst: 0 }, 2000);
    await sleep(1500);
    t.equal(autoReleaseCount(), before, 'no release');
  });
  await sleep(5000); // past the once-per-5-s throttle of the process
  await t.test('releaseMemoryAfterBurst: 1000 (the default): the young generation shrinks back', async (t) => {
    releaseMemory('critical'); // start from a small young generation
    await sleep(100);
    const start = newSpace();
    const before = autoReleaseCount();
    await burst(t, {}, 4000);
    const grown = newSpace();
    t.ok(grown > start, `the burst grew the young generation: ${(start / MiB).toFixed(1)} -> ${(grown / MiB).toFixed(1)} MiB`);
    t.equal(autoReleaseCount(), before, 'no release while connections keep arriving');
    await until(() => autoReleaseCount() === before + 1, 3000, 'the release, a second after the burst');
    await until(() => newSpace() < grown, 5000, 'the young generation to shrink');
    t.ok(newSpace() <= start * 2, `given back: ${(newSpace() / MiB).toFixed(1)} MiB, about where it started (${(start / MiB).toFixed(1)})`);
    await sleep(1500);
    t.equal(autoReleaseCount(), before + 1, 'one release for the burst');
  });
});
