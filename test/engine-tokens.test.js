// Generation-checked tokens: a stale token (an old Conn, or a command carrying
// an old generation) can never touch the connection that reuses its slot.
// First through the public API, then with a raw native EngineHandle and
// commands written by hand.
import t from 'tap';
import net from 'node:net';
import { Engine, NetClosedError, EOFError } from '../dist/index.js';
import {
  binding,
  RECORD_INTS,
  REC_OPEN,
  REC_DATA,
  REC_CLOSE,
  REASON_EOF,
  REASON_STOP,
  CMD_WRITE,
  CMD_WRITE_REF,
  CMD_CLOSE,
  CMD_DEADLINE,
} from '../dist/native.js';
import { signal } from './helpers/engine.js';

t.setTimeout(20_000);

function connect(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

function collector(s, sig) {
  const chunks = [];
  s.on('data', (d) => {
    chunks.push(d);
    sig.poke();
  });
  return () => Buffer.concat(chunks);
}

t.test('a stale Conn cannot touch the connection that reuses its slot', { timeout: 10_000 }, async (t) => {
  const sig = signal();
  const opens = [];
  const closes = new Map(); // Conn -> [err, ...]
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    onOpen: (c) => {
      opens.push(c);
      sig.poke();
    },
    onData: (c, d) => c.write(d),
    onClose: (c, err) => {
      closes.set(c, [...(closes.get(c) ?? []), err]);
      sig.poke();
    },
  });
  await engine.start();
  t.teardown(() => engine.stop());
  const port = Number(/:(\d+)$/.exec(engine.addresses()[0])[1]);

  // Connection A: opened, closed by us, closed for good.
  const a = await connect(port);
  t.teardown(() => a.destroy());
  const gotA = collector(a, sig);
  await sig.until(() => opens.length === 1);
  const A = opens[0];
  const aRemote = A.remoteAddr;
  A.write('A-bytes');
  A.close();
  await sig.until(() => closes.has(A));
  t.same(closes.get(A), [null], 'A: onClose once, null');
  await new Promise((resolve) => (a.readableEnded ? resolve() : a.once('end', resolve)));
  t.equal(gotA().toString(), 'A-bytes', 'A got exactly its bytes');

  // Connection B reuses A's slot with a new generation.
  const b = await connect(port);
  t.teardown(() => b.destroy());
  const gotB = collector(b, sig);
  await sig.until(() => opens.length === 2);
  const B = opens[1];
  t.not(B, A, 'a new Conn');
  t.equal(B._slot, A._slot, "B reuses A's slot");
  t.not(B._gen, A._gen, 'with another generation');

  // Every operation through A is refused or ignored.
  t.throws(() => A.write('stale'), NetClosedError, 'A.write throws NetClosedError');
  t.throws(() => A.write(Buffer.from('stale')), { code: 'NETLOOP_CLOSED', message: 'use of closed network connection' });
  t.throws(() => A.writev(['stale']), NetClosedError, 'A.writev throws NetClosedError');
  t.equal(A.close(), undefined, 'A.close() is a no-op');
  t.equal(A.closeWithError(new Error('stale')), undefined, 'A.closeWithError() is a no-op');
  t.equal(A.closeAndClean(), undefined, 'A.closeAndClean() is a no-op');
  t.equal(A.closeAndClean(new Error('stale')), undefined, 'A.closeAndClean(err) is a no-op');
  A.setReadDeadline(Date.now());
  A.setWriteDeadline(Date.now());
  A.setReadDeadline(new Date());
  t.equal(A.bufferedAmount, 0, 'A.bufferedAmount is 0');
  t.equal(A.remoteAddr, aRemote, "A still reports its own peer, not B's");
  t.equal(A.closed, true);
  t.equal(B.closed, false, 'B is open');
  t.not(B.remoteAddr, aRemote, 'B has its own peer address');
  t.equal(B.remoteAddr, `127.0.0.1:${b.localPort}`);

  // Give a wrongly applied deadline time to fire, then check B still echoes.
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(B.closed, false, 'B still open after the stale deadlines');
  t.notOk(closes.has(B), 'no onClose for B');
  b.write('B-echo');
  await sig.until(() => gotB().length >= 6);
  t.equal(gotB().toString(), 'B-echo', 'B echoes exactly, no stray bytes');
  t.equal(gotA().toString(), 'A-bytes', 'A got nothing more');

  b.end();
  await sig.until(() => closes.has(B));
  t.equal(closes.get(B).length, 1, 'B: onClose once');
  t.type(closes.get(B)[0], EOFError, 'B: EOF');
  t.equal(closes.get(A).length, 1, 'A: still one onClose');
  t.equal(opens.length, 2, 'two onOpen in all');
  t.equal(gotB().toString(), 'B-echo', 'B got nothing else');
});

t.test('raw EngineHandle: commands with an old generation are ignored', { timeout: 10_000 }, async (t) => {
  const sig = signal();
  const records = new Int32Array(256 * RECORD_INTS);
  const slab = Buffer.alloc(64 * 1024);
  const cmds = new Int32Array(64 * RECORD_INTS);
  const out = Buffer.alloc(64 * 1024);
  const recs = [];
  const h = new binding.EngineHandle(
    { maxEvents: 64, readBudget: 64 * 1024, acceptBudget: 16, maxWriteBufferSize: 1 << 20, closeTimeout: 1000, noDelay: true, maxLoad: 100 },
    { records, slab, cmds, out },
    (count) => {
      for (let i = 0; i < count; i++) {
        const p = i * RECORD_INTS;
        const r = { type: records[p], slot: records[p + 1], gen: records[p + 2], a: records[p + 3], b: records[p + 4] };
        if (r.type === REC_DATA) r.data = Buffer.from(slab.subarray(r.a, r.a + r.b));
        recs.push(r);
      }
      sig.poke();
    },
  );
  let stopped = false;
  t.teardown(() => {
    if (!stopped) return new Promise((resolve) => h.stop(resolve) || resolve());
  });
  const lid = h.listen('127.0.0.1', 0, 16, false);
  t.ok(lid >= 0, 'listening');
  const [family, host, port] = h.listenerAddress(lid);
  t.same([family, host], ['IPv4', '127.0.0.1']);
  t.equal(h.start(), 0, 'started');

  let outUsed = 0;
  // Writes one command into the shared command array and flushes it.
  const command = (op, slot, gen, a, b, refs) => {
    cmds.set([op, slot, gen, a, b], 0);
    if (refs) h.flush(1, refs);
    else h.flush(1);
  };
  const writeCmd = (slot, gen, text) => {
    const n = out.write(text, outUsed);
    command(CMD_WRITE, slot, gen, outUsed, n);
    outUsed += n;
  };
  const find = (pred) => recs.find(pred);

  // Client 1 connects, then closes: its slot is freed once the CLOSE is delivered.
  const c1 = await connect(port);
  t.teardown(() => c1.destroy());
  await sig.until(() => find((r) => r.type === REC_OPEN));
  const open1 = find((r) => r.type === REC_OPEN);
  t.equal(open1.a, lid, 'OPEN names the listener');
  const c1Closed = new Promise((resolve) => c1.once('close', resolve));
  c1.end();
  await sig.until(() => find((r) => r.type === REC_CLOSE && r.slot === open1.slot));
  const close1 = find((r) => r.type === REC_CLOSE && r.slot === open1.slot);
  t.equal(close1.gen, open1.gen, 'CLOSE carries the same generation');
  t.equal(close1.a, REASON_EOF, 'reason EOF');
  t.equal(close1.b, 0, 'errno 0');
  await c1Closed;

  // Client 2 reuses the slot.
  const c2 = await connect(port);
  t.teardown(() => c2.destroy());
  const got2 = collector(c2, sig);
  await sig.until(() => recs.filter((r) => r.type === REC_OPEN).length === 2);
  const open2 = recs.filter((r) => r.type === REC_OPEN)[1];
  t.equal(open2.slot, open1.slot, 'the slot is reused');
  t.not(open2.gen, open1.gen, 'with a new generation');
  const oldGen = open1.gen;
  const newGen = open2.gen;
  const slot = open2.slot;

  // Queries with the old generation see nothing.
  t.equal(h.queued(slot, oldGen), -1, 'queued(old gen) is -1');
  t.equal(h.queued(slot, newGen), 0, 'queued(new gen) is 0');
  t.equal(h.address(slot, oldGen, true), -9, 'address(old gen) is -EBADF');
  t.same(h.address(slot, newGen, true), ['IPv4', '127.0.0.1', c2.localPort], "address(new gen) is client 2's");

  // Commands with the old generation: write, write by reference, deadline, close.
  writeCmd(slot, oldGen, 'STALE-WRITE');
  command(CMD_WRITE_REF, slot, oldGen, 0, 0, [Buffer.from('STALE-REF')]);
  command(CMD_DEADLINE, slot, oldGen, 0, 0); // a read deadline of 0 ms
  command(CMD_DEADLINE, slot, oldGen, 1, 0);
  command(CMD_CLOSE, slot, oldGen, 1, 0); // abortive
  command(CMD_CLOSE, slot, oldGen, 0, 0); // graceful
  t.equal(h.queued(slot, newGen), 0, 'nothing queued for client 2');

  // The same commands with the new generation are delivered.
  writeCmd(slot, newGen, 'fresh');
  command(CMD_WRITE_REF, slot, newGen, 0, 0, [Buffer.from('+ref')]);
  await sig.until(() => got2().length >= 9);
  t.equal(got2().toString(), 'fresh+ref', 'client 2 got exactly the new-generation writes');

  // Give a wrongly applied 0 ms deadline time to fire, then prove the
  // connection is still open and reading: its DATA record arrives.
  await new Promise((resolve) => setTimeout(resolve, 100));
  c2.write('ping');
  await sig.until(() => find((r) => r.type === REC_DATA && r.slot === slot));
  const data = recs.filter((r) => r.type === REC_DATA);
  t.equal(data.length, 1, 'one DATA record');
  t.equal(data[0].gen, newGen, 'for the new generation');
  t.equal(data[0].data.toString(), 'ping', 'exact bytes');
  t.equal(recs.filter((r) => r.type === REC_CLOSE).length, 1, 'no CLOSE for client 2 (stale close and deadline ignored)');

  // Stop: client 2 gets a CLOSE(STOP) with the new generation.
  const ended = new Promise((resolve) => c2.once('end', resolve));
  await new Promise((resolve) => {
    t.equal(h.stop(resolve), true, 'stop() started');
  });
  stopped = true;
  const closes = recs.filter((r) => r.type === REC_CLOSE);
  t.equal(closes.length, 2, 'two CLOSE records in all');
  t.same([closes[1].slot, closes[1].gen, closes[1].a], [slot, newGen, REASON_STOP], 'CLOSE(STOP) for client 2');
  await ended;
  t.equal(got2().toString(), 'fresh+ref', 'client 2 never saw a stale byte');
  const st = new Float64Array(15);
  h.stats(st);
  t.same([...st].slice(0, 10), [0, 2, 0, 2, 0, 4, 9, 0, 0, 0], 'stats: online 0, accepted 2, closed 2, 4 bytes in, 9 out; no reader thread');
  // A reader would reserve its stack (64 KiB; more under AddressSanitizer) and a 16 KiB buffer.
  t.ok(st[10] >= (64 + 16) * 1024, `bytes per reader thread: ${st[10]}`);
});
