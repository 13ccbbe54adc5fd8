// The close reporting contract (DESIGN.md, "Close reporting contract"),
// non-blocking column: the table's rows (test/helpers/close-contract.js),
// then closes requested twice, connections closed from their own onMessage
// callback, and the close timeout. The other I/O modes run the same table in
// test/close-contract-modes.test.js.
import t from 'tap';
import { performance } from 'node:perf_hooks';
import { NetClosedError } from '../dist/index.js';
import { sleep, hex, cframe, cclose, sframe, Peer, startServer, closedOnce } from './helpers/ws-peer.js';
import { runContract, probeWrites } from './helpers/close-contract.js';

// The whole file is bounded; each wait inside it is bounded much more tightly (until()).
t.setTimeout(60000);

// ---------------------------------------------------------------------------

runContract(t, 'nonblocking');

// ---------------------------------------------------------------------------
// Closes requested more than once: one onClose, the first reason wins.

t.test('several closes on one connection: onClose once, the first cause wins', async (t) => {
  const s = await startServer(t, {}, { onClose: probeWrites });
  await t.test('closeWithError(a) then closeAndClean(b) then writeClose()', async (t) => {
    const peer = await Peer.open(t, s.addr);
    const rec = await s.rec(peer);
    const a = new Error('a');
    rec.conn.closeWithError(a);
    rec.conn.closeAndClean(new Error('b'));
    rec.conn.writeClose(1000);
    const c = await closedOnce(t, rec);
    t.equal(c.err, a);
    await peer.waitClosed();
    t.equal(peer.rxLen, 0, 'no close frame');
  });
  await t.test('writeClose() then closeWithError(e) before the answer', async (t) => {
    const peer = await Peer.open(t, s.addr);
    const rec = await s.rec(peer);
    const e = new Error('impatient');
    rec.conn.writeClose(1000, 'x');
    rec.conn.closeWithError(e);
    const c = await closedOnce(t, rec);
    t.equal(c.err, e);
    await peer.waitClosed();
    t.equal(hex(peer.rx), '880303e878', 'the close frame already written is delivered');
  });
  await t.test('the peer closes while the server closes with an error in the same tick', async (t) => {
    const peer = await Peer.open(t, s.addr);
    const rec = await s.rec(peer);
    const e = new Error('mine');
    peer.write(cclose(1000));
    rec.conn.closeWithError(e);
    const c = await closedOnce(t, rec);
    t.ok(c.err === e || c.err === null, 'one report, either cause');
    await peer.waitClosed();
  });
});

// ---------------------------------------------------------------------------
// Closing from the connection's own onMessage

t.test('closed from its own onMessage callback', async (t) => {
  await t.test('writeClose in onMessage: the echo, then the close frame; onClose null after the answer', async (t) => {
    const s = await startServer(t, {}, {
      onMessage: (c, type, data) => {
        if (c.closed) return;
        c.writeMessage(type, data);
        c.writeClose(4000, 'enough');
      },
      onClose: probeWrites,
    });
    const peer = await Peer.open(t, s.addr);
    const rec = await s.rec(peer);
    peer.write(Buffer.concat([cframe(1, 'one'), cframe(1, 'two')]));
    const want = sframe(1, 'one').length + 10;
    await peer.waitRx(want);
    peer.write(cclose(4000));
    await peer.waitEnd();
    t.equal(hex(peer.rx), hex(Buffer.concat([sframe(1, 'one'), Buffer.from('88080fa0', 'hex'), Buffer.from('enough')])));
    const c = await closedOnce(t, rec);
    t.equal(c.err, null);
    t.same(rec.handler, [[4000, '']]);
    t.match(c.info, { code: 4000, wasClean: true, initiator: 'local' });
    t.type(rec.writeInOnClose, NetClosedError);
  });
  for (const how of ['closeWithError', 'closeAndClean']) {
    await t.test(`${how} in onMessage: onClose gets the error; later messages of the same read are not delivered`, async (t) => {
      const e = new Error(`${how} from onMessage`);
      const s = await startServer(t, {}, {
        onMessage: (c, type, data) => {
          c[how](e);
        },
        onClose: probeWrites,
      });
      const peer = await Peer.open(t, s.addr);
      const rec = await s.rec(peer);
      peer.write(Buffer.concat([cframe(1, 'first'), cframe(1, 'second'), cframe(1, 'third'), cclose(1000)]));
      const c = await closedOnce(t, rec);
      t.equal(c.err, e);
      await peer.waitClosed();
      t.equal(peer.rxLen, 0, 'no frame on the wire');
      t.same(rec.messages.map((m) => m.data.toString()), ['first'], 'nothing is delivered after the connection was closed');
      t.same(rec.handler, [], 'the close frame behind them is not reported either');
      t.match(c.info, { code: 1006, wasClean: false, initiator: 'local', error: e });
    });
  }
  await t.test('writeMessage throws NetClosedError once closeWithError was called in onMessage', async (t) => {
    let thrown;
    const s = await startServer(t, {}, {
      onMessage: (c) => {
        c.closeWithError(null);
        try {
          c.writeMessage('text', 'too late');
        } catch (err) {
          thrown = err;
        }
      },
    });
    const peer = await Peer.open(t, s.addr);
    const rec = await s.rec(peer);
    peer.write(cframe(1, 'x'));
    const c = await closedOnce(t, rec);
    t.equal(c.err, null);
    t.type(thrown, NetClosedError);
    await peer.waitClosed();
    t.equal(peer.rxLen, 0);
  });
});

// ---------------------------------------------------------------------------
// The close handshake timeout bounds the whole close (DESIGN.md, "Limits and
// defaults": "close handshake timeout 5 s, then the TCP connection is
// dropped"; configurable with the Upgrader's closeTimeout).

t.test('closeTimeout bounds the close: a peer that never closes its TCP side is dropped after closeTimeout', async (t) => {
  const s = await startServer(t, { closeTimeout: 300 }, { onClose: probeWrites });
  await t.test('after the closing handshake started by the server', async (t) => {
    const peer = await Peer.open(t, s.addr, { allowHalfOpen: true });
    const rec = await s.rec(peer);
    const t0 = performance.now();
    rec.conn.writeClose(1000, 'done');
    await peer.waitRx(8);
    peer.write(cclose(1000)); // answers the close frame, but keeps its side of TCP open
    const c = await closedOnce(t, rec, 6000);
    const took = c.at - t0;
    t.ok(took < 1000, `onClose ${took.toFixed(0)} ms after writeClose (closeTimeout 300)`);
    t.equal(c.err, null);
    t.same(rec.handler, [[1000, '']]);
  });
});
