// engine.dial(): to a net.Server (data both ways, onOpen for dialed
// connections), to a closed port (ECONNREFUSED), to a listener that never
// completes the handshake (dial timeout), and before start / after stop.
import t from 'tap';
import net from 'node:net';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { Engine, SysError, TimeoutError, NetClosedError, NetloopError } from '../dist/index.js';
import { signal } from './helpers/engine.js';

t.setTimeout(20_000);

// An engine without listeners that counts its callbacks.
async function dialer(t, extra = {}) {
  const sig = signal();
  const ev = { opens: [], closes: [], data: new Map() };
  const engine = new Engine({
    onOpen: (c) => {
      ev.opens.push(c);
      sig.poke();
    },
    onData: (c, d) => {
      const list = ev.data.get(c) ?? [];
      list.push(Buffer.from(d));
      ev.data.set(c, list);
      sig.poke();
    },
    onClose: (c, err) => {
      ev.closes.push([c, err]);
      sig.poke();
    },
    ...extra,
  });
  await engine.start();
  t.teardown(() => engine.stop());
  return { engine, ev, sig };
}

function received(ev, c) {
  return Buffer.concat(ev.data.get(c) ?? []);
}

async function listen(t, server, host = '127.0.0.1') {
  await new Promise((resolve) => server.listen(0, host, resolve));
  t.teardown(() => new Promise((r) => server.close(r)));
  return server.address().port;
}

async function errorOf(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  return null;
}

t.test('dial a net.Server: data both ways, onOpen fires, the promise gives the same Conn', { timeout: 10_000 }, async (t) => {
  const toServer = crypto.randomBytes(512 * 1024 + 3);
  const toEngine = crypto.randomBytes(256 * 1024 + 1);
  const serverGot = [];
  let serverConns = 0;
  let serverSock;
  let serverEnded;
  const serverDone = new Promise((resolve) => (serverEnded = resolve));
  const server = net.createServer((s) => {
    serverConns++;
    serverSock = s;
    s.on('data', (d) => serverGot.push(d));
    s.on('end', serverEnded); // net answers our FIN with its own (allowHalfOpen false)
    s.write(toEngine);
  });
  const port = await listen(t, server);
  const { engine, ev, sig } = await dialer(t);
  const conn = await engine.dial(`127.0.0.1:${port}`);
  t.equal(ev.opens.length, 1, 'onOpen fired once for the dialed connection');
  t.equal(ev.opens[0], conn, 'dial() resolved to the Conn onOpen received');
  t.equal(conn.remoteAddr, `127.0.0.1:${port}`, 'remoteAddr is the dialed address');
  t.match(conn.localAddr, /^127\.0\.0\.1:\d+$/, 'localAddr is host:port');
  t.equal(conn.closed, false, 'open');
  for (let off = 0; off < toServer.length; off += 50_000) conn.write(toServer.subarray(off, off + 50_000));
  await sig.until(() => received(ev, conn).length >= toEngine.length);
  t.ok(received(ev, conn).equals(toEngine), 'the engine received the server bytes exactly');
  t.equal(conn.localAddr, `127.0.0.1:${serverSock.remotePort}`, 'localAddr matches what the server sees');
  conn.close();
  t.equal(conn.closed, true, 'closed once close() was called');
  await serverDone;
  t.ok(Buffer.concat(serverGot).equals(toServer), 'the server received the engine bytes exactly');
  await sig.until(() => ev.closes.length === 1);
  t.equal(ev.closes.length, 1, 'onClose once');
  t.equal(ev.closes[0][0], conn, 'for that Conn');
  t.equal(ev.closes[0][1], null, 'a delivered close() reports null');
  t.equal(serverConns, 1, 'one server connection');
  const s = engine.stats();
  t.equal(s.dialed, 1, 'dialed');
  t.equal(s.accepted, 0, 'accepted');
  t.equal(s.closed, 1, 'closed');
  t.equal(s.online, 0, 'online');
  t.equal(s.bytesOut, toServer.length, 'bytesOut');
  t.equal(s.bytesIn, toEngine.length, 'bytesIn');
});

t.test('the peer closes a dialed connection: onClose gets EOFError once', { timeout: 10_000 }, async (t) => {
  const server = net.createServer((s) => s.end('bye'));
  const port = await listen(t, server);
  const { engine, ev, sig } = await dialer(t);
  const conn = await engine.dial(`127.0.0.1:${port}`);
  await sig.until(() => ev.closes.length === 1);
  t.equal(received(ev, conn).toString(), 'bye', 'exact bytes before EOF');
  const [c, err] = ev.closes[0];
  t.equal(c, conn);
  t.equal(err?.code, 'NETLOOP_EOF');
  t.equal(err?.message, 'EOF');
  t.equal(ev.opens.length, 1, 'onOpen once');
  t.throws(() => conn.write('x'), NetClosedError, 'write after onClose throws NetClosedError');
});

t.test('several dials at once, each resolves to its own Conn', { timeout: 10_000 }, async (t) => {
  const server = net.createServer((s) => s.on('data', (d) => s.write(d)));
  const port = await listen(t, server);
  const { engine, ev, sig } = await dialer(t);
  const N = 8;
  const conns = await Promise.all(Array.from({ length: N }, () => engine.dial(`127.0.0.1:${port}`)));
  t.equal(new Set(conns).size, N, 'N distinct Conns');
  t.equal(ev.opens.length, N, 'onOpen N times');
  t.same(new Set(ev.opens), new Set(conns), 'the same Conns');
  conns.forEach((c, i) => c.write(`hello ${i}`));
  await sig.until(() => conns.every((c, i) => received(ev, c).length >= `hello ${i}`.length));
  conns.forEach((c, i) => t.equal(received(ev, c).toString(), `hello ${i}`, `conn ${i} echoed`));
  for (const c of conns) c.close();
  await sig.until(() => ev.closes.length === N);
  t.equal(ev.closes.length, N, 'onClose N times');
  t.ok(
    ev.closes.every(([, err]) => err === null),
    'every graceful close reports null',
  );
  t.equal(engine.stats().dialed, N);
});

t.test('dial [::1]', async (t) => {
  const v6 = await new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (err) => resolve(err.code));
    probe.listen(0, '::1', () => probe.close(() => resolve(true)));
  });
  if (v6 !== true) {
    t.skip(`::1 is not available on this machine (listen failed with ${v6})`);
    return;
  }
  t.setTimeout(10_000);
  const server = net.createServer((s) => s.end('v6'));
  const port = await listen(t, server, '::1');
  const { engine, ev, sig } = await dialer(t);
  const conn = await engine.dial(`[::1]:${port}`);
  t.equal(conn.remoteAddr, `[::1]:${port}`, 'remoteAddr "[::1]:port"');
  t.match(conn.localAddr, /^\[::1\]:\d+$/, 'localAddr "[::1]:port"');
  await sig.until(() => ev.closes.length === 1);
  t.equal(received(ev, conn).toString(), 'v6');
  t.equal(ev.closes[0][1]?.code, 'NETLOOP_EOF');
});

t.test('dial to a closed port rejects with SysError ECONNREFUSED', { timeout: 10_000 }, async (t) => {
  // A port that was just free: listen, note it, close.
  const probe = net.createServer();
  await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = probe.address().port;
  await new Promise((resolve) => probe.close(resolve));

  const { engine, ev } = await dialer(t);
  const err = await errorOf(engine.dial(`127.0.0.1:${port}`));
  t.type(err, SysError);
  t.type(err, NetloopError);
  t.equal(err?.code, 'ECONNREFUSED', 'code');
  t.match(err?.message, 'connection refused', 'message says connection refused');
  t.equal(err?.message, `dial 127.0.0.1:${port}: connection refused`, 'exact message');
  t.equal(err?.syscall, 'dial', 'syscall');
  t.equal(ev.opens.length, 0, 'no onOpen');
  t.equal(ev.closes.length, 0, 'no onClose for a connection that never opened');
  const s = engine.stats();
  t.equal(s.online, 0, 'online 0');
  t.equal(s.closed, 0, 'closed 0');

  // The engine still works afterwards.
  const server = net.createServer((sock) => sock.end('ok'));
  const port2 = await listen(t, server);
  const conn = await engine.dial(`127.0.0.1:${port2}`);
  t.equal(conn.remoteAddr, `127.0.0.1:${port2}`, 'a later dial succeeds');
});

t.test('dial to a unix path nobody listens on rejects with SysError ENOENT', { timeout: 10_000 }, async (t) => {
  const { engine, ev } = await dialer(t);
  const p = `/tmp/netloop-no-such-dir-${process.pid}-${Date.now()}/x.sock`;
  const err = await errorOf(engine.dial(`unix:${p}`));
  t.type(err, SysError);
  t.equal(err?.code, 'ENOENT');
  t.equal(err?.message, `dial unix:${p}: no such file or directory`);
  t.equal(ev.opens.length, 0);
  t.equal(ev.closes.length, 0);
});

t.test('dial timeout: a listener whose backlog is full never completes the handshake', { timeout: 15_000 }, async (t) => {
  // A loopback listener with backlog 0 that never accepts: Linux queues
  // backlog + 1 completed connections, then drops further SYNs while the
  // accept queue is full (tcp_conn_request: sk_acceptq_is_full -> drop), so
  // a connect() after that stays in SYN_SENT until the client gives up.
  const py = spawn(
    'python3',
    [
      '-c',
      [
        'import socket, sys',
        's = socket.socket(socket.AF_INET, socket.SOCK_STREAM)',
        "s.bind(('127.0.0.1', 0))",
        's.listen(0)',
        'print(s.getsockname()[1], flush=True)',
        'sys.stdin.read()', // until our end of the pipe closes
      ].join('\n'),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const exited = new Promise((resolve) => py.once('exit', resolve));
  t.teardown(async () => {
    py.stdin.end();
    py.kill();
    await exited;
  });
  const port = await new Promise((resolve, reject) => {
    py.once('error', reject);
    py.stdout.once('data', (d) => resolve(Number(String(d).trim())));
  });
  t.ok(port > 0, `python listener on 127.0.0.1:${port}`);

  // Fill the accept queue: the first connection completes (it waits in the
  // queue), the next ones' SYNs are dropped.
  const fillers = [];
  t.teardown(() => fillers.forEach((s) => s.destroy()));
  const first = net.connect(port, '127.0.0.1');
  first.on('error', () => {});
  fillers.push(first);
  await new Promise((resolve) => first.once('connect', resolve));
  for (let i = 0; i < 2; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }

  const { engine, ev } = await dialer(t);
  const t0 = Date.now();
  const err = await errorOf(engine.dial(`127.0.0.1:${port}`, { timeout: 300 }));
  const took = Date.now() - t0;
  t.type(err, TimeoutError);
  t.type(err, NetloopError);
  t.equal(err?.code, 'NETLOOP_TIMEOUT', 'code');
  t.equal(err?.message, 'dial timeout', 'message');
  t.equal(err?.kind, 'dial', 'kind');
  t.ok(took >= 290, `not before the timeout (${took} ms)`);
  t.ok(took < 5000, `not much after it (${took} ms)`);
  t.equal(ev.opens.length, 0, 'no onOpen');
  t.equal(ev.closes.length, 0, 'no onClose');
  t.equal(engine.stats().online, 0, 'online 0');

  // The dialTimeout option is the default for dial().
  const { engine: e2, ev: ev2 } = await dialer(t, { dialTimeout: 200 });
  const err2 = await errorOf(e2.dial(`127.0.0.1:${port}`));
  t.type(err2, TimeoutError, 'dialTimeout option applies');
  t.equal(err2?.message, 'dial timeout');
  t.equal(ev2.opens.length + ev2.closes.length, 0, 'no callbacks');

  // A dial still in progress when the engine stops must settle, not hang.
  const { engine: e3, ev: ev3 } = await dialer(t);
  const pending = errorOf(e3.dial(`127.0.0.1:${port}`, { timeout: 60_000 }));
  let settled = false;
  pending.then(() => (settled = true));
  await new Promise((resolve) => setImmediate(resolve)); // the connect() is under way
  t.equal(e3.stats().dialed, 1, 'the dial started');
  await e3.stop();
  await new Promise((resolve) => setImmediate(resolve));
  t.ok(settled, 'the dial promise settled by the time stop() resolved');
  const err3 = await pending;
  t.type(err3, NetClosedError, 'it rejected with NetClosedError: the engine closed under it');
  t.equal(err3?.code, 'NETLOOP_CLOSED', `code ${err3?.code}`);
  t.equal(ev3.opens.length + ev3.closes.length, 0, 'no callbacks for it');
});

t.test('dial before start() and after stop() rejects with NetClosedError', { timeout: 10_000 }, async (t) => {
  const server = net.createServer((s) => s.destroy());
  const port = await listen(t, server);
  let opens = 0;
  let closes = 0;
  const engine = new Engine({ onOpen: () => opens++, onClose: () => closes++ });
  t.teardown(() => engine.stop());
  const before = await errorOf(engine.dial(`127.0.0.1:${port}`));
  t.type(before, NetClosedError, 'before start()');
  t.equal(before?.code, 'NETLOOP_CLOSED');
  t.equal(before?.message, 'use of closed network connection');
  await engine.start();
  await engine.stop();
  const after = await errorOf(engine.dial(`127.0.0.1:${port}`));
  t.type(after, NetClosedError, 'after stop()');
  t.equal(after?.code, 'NETLOOP_CLOSED');
  t.equal(after?.message, 'use of closed network connection');
  const afterUnix = await errorOf(engine.dial('unix:/tmp/netloop-none.sock'));
  t.type(afterUnix, NetClosedError, 'unix dial after stop()');
  t.equal(opens, 0, 'no onOpen');
  t.equal(closes, 0, 'no onClose');
});
