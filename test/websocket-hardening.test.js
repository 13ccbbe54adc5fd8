// WebSocket server under hostile or broken conditions, in every I/O mode
// (NETLOOP_TEST_IO_MODE, set per subtest here through the engine options):
// - a handler that throws (onOpen, onMessage, the close handler): its
//   connection gets close 1011 and FIN, onClose receives the thrown error,
//   the process sees the exception, another connection keeps echoing (a `ws`
//   client, from npm);
// - a frame header alone does not allocate the declared length: the buffer
//   grows with the bytes that arrive (Engine stats().heldBytes);
// - messageTimeout: a message that started arriving and stalls is failed
//   with 1008 and TimeoutError "message timeout";
// - memoryBudget on the receive side: close 1013 and BudgetError, and the
//   held bytes go back to 0.
import t from 'tap';
import WebSocket from 'ws';
import { BudgetError, TimeoutError } from '../dist/index.js';
import { Peer, cframe, parseFrames, startServer, until, sleep } from './helpers/ws-peer.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const MODES = {
  nonblocking: { ioMode: 'nonblocking' },
  blocking: { ioMode: 'blocking' },
  mixed: { ioMode: 'mixed', maxBlockingOnline: 1 },
};

function catchUncaught(t) {
  const caught = [];
  const on = (err) => caught.push(err);
  process.on('uncaughtException', on);
  t.teardown(() => process.off('uncaughtException', on));
  return caught;
}

function wsClient(t, addr) {
  const ws = new WebSocket(`ws://${addr}/`);
  t.teardown(() => ws.terminate());
  const got = [];
  let closed = null;
  ws.on('message', (d) => got.push(d.toString()));
  ws.on('close', (code, reason) => (closed = { code, reason: reason.toString() }));
  ws.on('error', () => {});
  return {
    ws,
    got,
    get closed() {
      return closed;
    },
    opened: new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    }),
  };
}

/** The close frames the server sent to a raw peer. */
function closeFrames(peer) {
  return parseFrames(peer.rx).frames.filter((f) => f.opcode === 8);
}

for (const [mode, engine] of Object.entries(MODES)) {
  t.test(`${mode}: a throwing onMessage fails its connection with 1011, the others carry on`, async (t) => {
    const caught = catchUncaught(t);
    const boom = new Error('boom from onMessage');
    const s = await startServer(
      t,
      {},
      {
        engine,
        onMessage(c, type, data) {
          if (data.toString() === 'boom') throw boom;
          c.writeMessage(type, data);
        },
      },
    );
    const good = wsClient(t, s.addr);
    const bad = wsClient(t, s.addr);
    await Promise.all([good.opened, bad.opened]);
    bad.ws.send('boom');
    good.ws.send('one');
    await until(() => bad.closed !== null, 5000, 'the client sees the close');
    t.equal(bad.closed.code, 1011, 'close 1011 (internal error)');
    await until(() => s.recs.some((r) => r.closes.length > 0), 3000, 'onClose');
    const rec = s.recs.find((r) => r.closes.length > 0);
    await sleep(20);
    t.equal(rec.closes.length, 1, 'onClose once');
    t.equal(rec.closes[0].err, boom, 'onClose receives the thrown error');
    t.equal(rec.closes[0].info.code, 1011, 'closeInfo.code 1011');
    t.equal(rec.closes[0].info.initiator, 'local');
    t.ok(caught.includes(boom), 'the exception reached the process');
    await until(() => good.got.length === 1, 3000, 'the other connection is echoed');
    good.ws.send('two');
    await until(() => good.got.length === 2, 3000, 'and keeps working');
    t.same(good.got, ['one', 'two']);
  });

  t.test(`${mode}: a throwing onOpen or close handler fails the connection the same way`, async (t) => {
    const caught = catchUncaught(t);
    const s = await startServer(
      t,
      {},
      {
        engine,
        onOpen(c) {
          if (c.path === '/throw-open') throw new Error('boom from onOpen');
        },
      },
    );
    const peer = await Peer.open(t, s.addr, { path: '/throw-open' });
    await peer.waitEnd();
    const frames = closeFrames(peer);
    t.equal(frames.length, 1, 'one close frame');
    t.equal(frames[0].payload.readUInt16BE(0), 1011);
    await until(() => s.recs[0]?.closes.length === 1, 3000, 'onClose');
    t.match(s.recs[0].closes[0].err, { message: 'boom from onOpen' });
    t.equal(caught.length, 1);

    s.up.setCloseHandler(() => {
      throw new Error('boom from the close handler');
    });
    const p2 = await Peer.open(t, s.addr);
    p2.write(cframe(8, Buffer.from([0x03, 0xe8])));
    await p2.waitEnd();
    await until(() => s.recs[1]?.closes.length === 1, 3000, 'onClose');
    t.match(s.recs[1].closes[0].err, { message: 'boom from the close handler' });
    t.equal(caught.length, 2);
  });

  t.test(`${mode}: a frame header does not allocate its declared length`, async (t) => {
    const s = await startServer(t, { messageTimeout: 0 }, { engine });
    const peers = [];
    for (let i = 0; i < 8; i++) {
      const p = await Peer.open(t, s.addr);
      // 16 MiB - 1 declared, 4 KiB sent.
      p.write(cframe(2, Buffer.alloc(4 * KiB, 1), { len: 16 * MiB - 1 }));
      peers.push(p);
    }
    await sleep(200);
    const held = s.engine.stats().heldBytes;
    t.ok(held > 0, `bytes held for the unfinished messages: ${held}`);
    t.ok(held <= 8 * 128 * KiB, `held ${held} <= 1 MiB for 8 x 4 KiB received (declared: 8 x 16 MiB)`);
    for (const p of peers) p.sock.destroy();
    await until(() => s.engine.stats().heldBytes === 0, 3000, 'held bytes released at close');
  });

  t.test(`${mode}: a stalled message is failed by messageTimeout with 1008`, async (t) => {
    const s = await startServer(t, { messageTimeout: 300 }, { engine });
    const peer = await Peer.open(t, s.addr);
    const rec = await s.rec(peer);
    peer.write(cframe(1, 'hel', { fin: false }));
    // Keeps sending, a byte now and then, inside a second fragment that never ends.
    peer.write(cframe(0, 'x', { fin: false, len: 1000 }).subarray(0, 10));
    await peer.waitEnd(3000);
    const frames = closeFrames(peer);
    t.equal(frames.length, 1);
    t.equal(frames[0].payload.readUInt16BE(0), 1008, 'close 1008 (policy violation)');
    await until(() => rec.closes.length === 1, 3000, 'onClose');
    t.type(rec.closes[0].err, TimeoutError);
    t.equal(rec.closes[0].err.message, 'message timeout');
    // A message that completes in time is untouched.
    const ok = await Peer.open(t, s.addr);
    ok.write(cframe(2, Buffer.alloc(10)));
    await ok.waitRx(12);
    await sleep(500);
    t.notOk(ok.ended, 'an idle connection between messages is not timed out');
  });

  t.test(`${mode}: the receive side counts against memoryBudget (1013)`, async (t) => {
    const s = await startServer(t, {}, { engine: { ...engine, memoryBudget: 2 * MiB } });
    const honest = wsClient(t, s.addr);
    await honest.opened;
    const peer = await Peer.open(t, s.addr);
    const rec = await s.rec(peer);
    // A 4 MiB message, sent whole: its buffer cannot fit a 2 MiB budget.
    const payload = Buffer.alloc(4 * MiB, 7);
    peer.write(cframe(2, payload));
    await peer.waitEnd(5000);
    const frames = closeFrames(peer);
    t.equal(frames.length, 1);
    t.equal(frames[0].payload.readUInt16BE(0), 1013, 'close 1013 (try again later)');
    await until(() => rec.closes.length === 1, 3000, 'onClose');
    t.type(rec.closes[0].err, BudgetError);
    t.equal(rec.closes[0].err.closeCode, 1013);
    await until(() => s.engine.stats().heldBytes === 0, 3000, 'held bytes back to 0');
    honest.ws.send('still here');
    await until(() => honest.got.length === 1, 3000, 'the honest client is echoed');
  });
}

t.test('messages waiting behind one being compressed count as queued and against memoryBudget', async (t) => {
  const big = Buffer.alloc(12 * MiB);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i); // compresses, slowly
  const seen = {};
  const s = await startServer(
    t,
    { compression: { threshold: 0 } },
    {
      engine: { memoryBudget: 32 * MiB },
      onOpen(c) {
        c.writeMessage('binary', big); // compressed over several loop turns
        const before = c.bufferedAmount;
        for (let i = 0; i < 3; i++) c.writeMessage('binary', Buffer.alloc(MiB, i)); // wait behind it
        seen.waiting = c.bufferedAmount - before;
        seen.held = s.engine.stats().heldBytes;
        // More than the budget can hold: the connection is failed, not the process.
        for (let i = 0; i < 40; i++) if (!c.closed) c.writeMessage('binary', Buffer.alloc(MiB, i));
      },
    },
  );
  const ws = new WebSocket(`ws://${s.addr}/`, { perMessageDeflate: true });
  ws.on('error', () => {});
  await until(() => s.recs[0]?.closes.length === 1, 10_000, 'onClose');
  t.equal(seen.waiting, 3 * MiB, 'bufferedAmount counts the messages waiting behind the compression');
  t.ok(seen.held >= 3 * MiB, `and they are held against the budget (${seen.held} bytes)`);
  t.type(s.recs[0].closes[0].err, BudgetError, 'past the budget: BudgetError');
  await until(() => s.engine.stats().heldBytes === 0, 3000, 'everything released');
  ws.terminate();
});
