// Flow control and server-wide bounds on raw TCP, in every I/O mode, against
// Node's own net clients on loopback:
// - a peer that sends and never reads: its connection stops being read above
//   writeHighWaterMark (the queue stays near the mark instead of growing to
//   maxWriteBufferSize), resumes at writeLowWaterMark once the peer reads,
//   and every byte is echoed, in order;
// - memoryBudget: the connection whose queue would take the engine past the
//   budget fails with BudgetError, the others are untouched;
// - a throwing onData: that connection is closed (what was written before is
//   delivered, then FIN), onClose receives the thrown error, the exception
//   reaches the process, and another connection in the same batch carries on.
import t from 'tap';
import net from 'node:net';
import { Engine, BudgetError } from '../dist/index.js';
import { fdCount, sleep, until, pattern } from './helpers/engine.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const MODES = ['nonblocking', 'blocking', 'mixed'];

async function echoServer(t, options = {}) {
  const closes = [];
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    ...options,
    onData(conn, data) {
      options.onData?.(conn, data);
      conn.write(data);
    },
    onClose(conn, err) {
      closes.push({ conn, err });
    },
  });
  await engine.start();
  t.teardown(() => engine.stop());
  const port = Number(engine.addresses()[0].split(':').pop());
  return { engine, port, closes };
}

function connect(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

// Writes `total` pattern bytes as fast as the socket takes them; resolves with
// the bytes written when done or when the socket stops taking (paused peer).
function pump(sock, total) {
  let sent = 0;
  return new Promise((resolve) => {
    const more = () => {
      while (sent < total) {
        const n = Math.min(64 * KiB, total - sent);
        const ok = sock.write(pattern(sent, n));
        sent += n;
        if (!ok) {
          sock.once('drain', more);
          return;
        }
      }
      resolve(sent);
    };
    sock.on('error', () => resolve(sent));
    more();
  });
}

for (const ioMode of MODES) {
  t.test(`${ioMode}: a peer that never reads is paused at the high mark and loses nothing`, async (t) => {
    const high = 512 * KiB;
    const low = 128 * KiB;
    const { engine, port, closes } = await echoServer(t, { ioMode, writeHighWaterMark: high, writeLowWaterMark: low });
    const sock = await connect(port);
    sock.pause(); // never reads, for now
    const total = 24 * MiB;
    const pumping = pump(sock, total);
    await until(() => engine.stats().readPaused === 1, 10_000, 'the connection paused');
    // The peer keeps sending into its kernel buffers; the server does not read it.
    await sleep(300);
    const s1 = engine.stats();
    t.equal(s1.readPaused, 1, 'one connection is not read');
    // Above the mark by at most what one read can add (an echo of a read of
    // up to the read budget, 64 KiB; a reader thread's buffer is smaller).
    t.ok(s1.queuedBytes <= high + 256 * KiB, `queued ${s1.queuedBytes} stays near the high mark, not maxWriteBufferSize`);
    t.ok(s1.bytesIn < total, 'the server stopped taking bytes it cannot answer');
    // Now read everything back: reading resumes at the low mark, and every
    // byte comes back in order.
    let got = 0;
    let bad = false;
    sock.on('data', (d) => {
      if (!d.equals(pattern(got, d.length))) bad = true;
      got += d.length;
    });
    sock.resume();
    await pumping;
    await until(() => got === total, 30_000, 'every byte echoed');
    t.notOk(bad, 'the echo is the pattern, in order');
    t.equal(engine.stats().readPaused, 0, 'reading resumed');
    sock.end();
    await until(() => closes.length === 1, 5000, 'closed');
    t.equal(engine.stats().readPaused, 0);
  });

  t.test(`${ioMode}: memoryBudget fails the connection that would exceed it, not the others`, async (t) => {
    const fds = fdCount();
    // No pausing, so that a never-reading peer's queue grows until the budget stops it.
    const { engine, port, closes } = await echoServer(t, { ioMode, writeHighWaterMark: 0, memoryBudget: 4 * MiB });
    const honest = await connect(port);
    let honestGot = 0;
    honest.on('data', (d) => (honestGot += d.length));
    const hog = await connect(port);
    hog.pause();
    hog.on('error', () => {});
    pump(hog, 64 * MiB);
    await until(() => closes.length === 1, 20_000, 'the hog is failed');
    t.type(closes[0].err, BudgetError, 'onClose: BudgetError');
    t.equal(closes[0].err.code, 'NETLOOP_BUDGET');
    t.equal(closes[0].err.budget, 4 * MiB);
    t.match(closes[0].err.message, /memory budget/);
    t.ok(engine.stats().queuedBytes <= 4 * MiB, 'the queues stay within the budget');
    honest.write(pattern(0, 100 * KiB));
    await until(() => honestGot === 100 * KiB, 5000, 'the honest connection is echoed');
    t.equal(closes.length, 1, 'the honest connection is open');
    honest.destroy();
    hog.destroy();
    await until(() => closes.length === 2, 5000, 'both closed');
    await engine.stop();
    await until(() => fdCount() <= fds, 2000, 'descriptors back');
  });

  t.test(`${ioMode}: a throwing onData fails its connection only`, async (t) => {
    const boom = new Error('boom from onData');
    const caught = [];
    const onUncaught = (err) => caught.push(err);
    process.on('uncaughtException', onUncaught);
    t.teardown(() => process.off('uncaughtException', onUncaught));
    const { port, closes } = await echoServer(t, {
      ioMode,
      onData(conn, data) {
        if (data.includes('boom')) {
          conn.write('before the throw\n');
          throw boom;
        }
      },
    });
    const good = await connect(port);
    const bad = await connect(port);
    let goodGot = '';
    let badGot = '';
    good.on('data', (d) => (goodGot += d));
    bad.on('data', (d) => (badGot += d));
    const badEnded = new Promise((resolve) => bad.on('end', resolve));
    bad.write('boom');
    good.write('hello');
    await badEnded;
    t.equal(badGot, 'before the throw\n', 'what the handler wrote before throwing is delivered, then FIN');
    await until(() => closes.length === 1 && caught.length === 1, 5000, 'onClose and the process saw it');
    t.equal(closes[0].err, boom, 'onClose receives the thrown error');
    t.equal(caught[0], boom, 'the exception is rethrown to the process');
    await until(() => goodGot === 'hello', 5000, 'the other connection is echoed');
    good.write(' again');
    await until(() => goodGot === 'hello again', 5000, 'and keeps working');
    good.destroy();
    bad.destroy();
  });
}

t.test('options: the marks and the budget are checked', async (t) => {
  t.throws(() => new Engine({ writeHighWaterMark: -1 }), TypeError);
  t.throws(() => new Engine({ writeHighWaterMark: 1000, writeLowWaterMark: 2000 }), /writeLowWaterMark/);
  t.throws(() => new Engine({ memoryBudget: 1.5 }), TypeError);
  const e = new Engine({ writeHighWaterMark: 100 * KiB });
  t.equal(e.options.writeLowWaterMark, 100 * KiB, 'the default low mark is at most the high mark');
  const d = new Engine({});
  t.equal(d.options.writeHighWaterMark, MiB);
  t.equal(d.options.writeLowWaterMark, 256 * KiB);
  t.ok(d.options.memoryBudget > 0, 'a budget by default');
});
