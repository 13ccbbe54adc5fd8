// Unix domain sockets: the engine listening (a net client as the peer), the
// engine dialing a net.Server, partial writes queued exactly as for TCP, the
// socket file's lifetime, and a path that is already taken.
import t from 'tap';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { Engine, EOFError, SysError, NetloopError } from '../dist/index.js';
import { signal } from './helpers/engine.js';

t.setTimeout(20_000);

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netloop-unix-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function connectUnix(p) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: p });
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

function assertEOF(t, err) {
  t.type(err, EOFError);
  t.equal(err.code, 'NETLOOP_EOF');
  t.equal(err.message, 'EOF');
}

t.test('listen on unix:<path>, echo exact bytes with a net client', { timeout: 10_000 }, async (t) => {
  const dir = tempDir(t);
  const sock = path.join(dir, 's.sock');
  const sig = signal();
  const conns = new Map();
  const engine = new Engine({
    addrs: [`unix:${sock}`],
    onOpen: (c) => {
      conns.set(c, { opens: (conns.get(c)?.opens ?? 0) + 1, closes: 0, err: undefined, local: c.localAddr, remote: c.remoteAddr });
      sig.poke();
    },
    onData: (c, d) => c.write(d),
    onClose: (c, err) => {
      const e = conns.get(c);
      e.closes++;
      e.err = err;
      e.remoteInClose = c.remoteAddr;
      sig.poke();
    },
  });
  await engine.start();
  t.teardown(() => engine.stop());
  t.same(engine.addresses(), [`unix:${sock}`], 'addresses() gives the path');
  t.ok(fs.statSync(sock).isSocket(), 'the socket file exists while listening');

  const payloads = [crypto.randomBytes(1), crypto.randomBytes(64 * 1024), crypto.randomBytes(1024 * 1024 + 7)];
  const total = payloads.reduce((a, p) => a + p.length, 0);
  const s = await connectUnix(sock);
  t.teardown(() => s.destroy());
  const got = [];
  let n = 0;
  const done = new Promise((resolve) =>
    s.on('data', (d) => {
      got.push(d);
      n += d.length;
      if (n >= total) resolve();
    }),
  );
  s.write(payloads[0]);
  for (let off = 0; off < payloads[1].length; off += 333) s.write(payloads[1].subarray(off, off + 333));
  s.write(payloads[2]);
  await done;
  t.ok(Buffer.concat(got).equals(Buffer.concat(payloads)), 'echoed stream equals the sent stream');
  s.end();
  await sig.until(() => [...conns.values()].some((e) => e.closes > 0));
  t.equal(conns.size, 1, 'one connection');
  const [e] = conns.values();
  t.equal(e.opens, 1, 'onOpen once');
  t.equal(e.closes, 1, 'onClose once');
  assertEOF(t, e.err);
  t.equal(e.local, `unix:${sock}`, 'localAddr is unix:<path>');
  t.equal(e.remote, 'unix:', 'remoteAddr of an unnamed peer is "unix:"');
  t.equal(e.remoteInClose, 'unix:', 'remoteAddr readable in onClose');
  const st = engine.stats();
  t.equal(st.accepted, 1);
  t.equal(st.closed, 1);
  t.equal(st.online, 0);
  t.equal(st.bytesIn, total, 'bytesIn');
  t.equal(st.bytesOut, total, 'bytesOut');
});

t.test('dial a net.Server listening on a unix path', { timeout: 10_000 }, async (t) => {
  const dir = tempDir(t);
  const sock = path.join(dir, 'peer.sock');
  const fromEngine = crypto.randomBytes(300 * 1024);
  const fromServer = crypto.randomBytes(200 * 1024);
  const serverGot = [];
  let serverConns = 0;
  const serverEnded = new Promise((resolve) => {
    const server = net.createServer((sock2) => {
      serverConns++;
      sock2.on('data', (d) => serverGot.push(d));
      sock2.on('end', resolve);
      sock2.write(fromServer);
    });
    t.teardown(() => new Promise((r) => server.close(r)));
    server.listen(sock);
  });
  await new Promise((resolve) => {
    const probe = () => (fs.existsSync(sock) ? resolve() : setImmediate(probe));
    probe();
  });

  const sig = signal();
  let opens = 0;
  let closes = 0;
  let openedConn;
  let closeErr;
  let engineGot = [];
  let engineBytes = 0;
  const engine = new Engine({
    onOpen: (c) => {
      opens++;
      openedConn = c;
      sig.poke();
    },
    onData: (_c, d) => {
      engineGot.push(Buffer.from(d));
      engineBytes += d.length;
      sig.poke();
    },
    onClose: (_c, err) => {
      closes++;
      closeErr = err;
      sig.poke();
    },
  });
  await engine.start();
  t.teardown(() => engine.stop());
  const conn = await engine.dial(`unix:${sock}`);
  t.equal(opens, 1, 'onOpen fired for the dialed connection');
  t.equal(conn, openedConn, 'dial() resolves to the Conn onOpen received');
  t.equal(conn.remoteAddr, `unix:${sock}`, 'remoteAddr is unix:<path>');
  t.equal(conn.localAddr, 'unix:', 'localAddr of an unbound client is "unix:"');
  conn.write(fromEngine);
  await sig.until(() => engineBytes >= fromServer.length);
  t.ok(Buffer.concat(engineGot).equals(fromServer), 'engine received the server bytes exactly');
  conn.close();
  await serverEnded;
  t.ok(Buffer.concat(serverGot).equals(fromEngine), 'server received the engine bytes exactly');
  await sig.until(() => closes === 1);
  t.equal(closes, 1, 'onClose once');
  t.equal(closeErr, null, 'graceful close reports null');
  t.equal(serverConns, 1, 'one server connection');
  const st = engine.stats();
  t.equal(st.dialed, 1, 'dialed');
  t.equal(st.accepted, 0, 'accepted');
  t.equal(st.online, 0, 'online');
  t.equal(st.bytesOut, fromEngine.length, 'bytesOut');
  t.equal(st.bytesIn, fromServer.length, 'bytesIn');
});

t.test('partial writes to a slow unix reader: queued, in order, drained', { timeout: 20_000 }, async (t) => {
  const dir = tempDir(t);
  const sock = path.join(dir, 's.sock');
  // 32 MiB in writes of varied sizes (small copies and large by-reference buffers).
  const parts = [];
  let total = 0;
  for (let i = 0; total < 32 * 1024 * 1024; i++) {
    const size = Math.min([1, 100, 16 * 1024, 16 * 1024 + 1, 1024 * 1024, 3 * 1024 * 1024 + 5][i % 6], 32 * 1024 * 1024 - total);
    parts.push(crypto.randomBytes(size));
    total += size;
  }
  const sig = signal();
  let conn;
  let opens = 0;
  let closes = 0;
  let closeErr;
  let engineDrains = 0;
  let connDrains = 0;
  let bufferedAfterWrite = -1;
  let bufferedInDrain = -1;
  const engine = new Engine({
    addrs: [`unix:${sock}`],
    onOpen: (c) => {
      opens++;
      conn = c;
      c.onDrain((cc) => {
        connDrains++;
        bufferedInDrain = cc.bufferedAmount;
        sig.poke();
      });
      for (const p of parts) c.write(p);
      bufferedAfterWrite = c.bufferedAmount;
      sig.poke();
    },
    onDrain: () => {
      engineDrains++;
      sig.poke();
    },
    onClose: (_c, err) => {
      closes++;
      closeErr = err;
      sig.poke();
    },
  });
  await engine.start();
  t.teardown(() => engine.stop());

  const s = net.connect({ path: sock });
  t.teardown(() => s.destroy());
  s.pause();
  const got = [];
  let n = 0;
  let pauses = 0;
  const received = new Promise((resolve, reject) => {
    s.once('error', reject);
    s.on('data', (d) => {
      got.push(d);
      n += d.length;
      if (n >= total) {
        resolve();
        return;
      }
      // Read slowly: stop after every chunk, resume on a later turn.
      s.pause();
      pauses++;
      setImmediate(() => s.resume());
    });
    s.pause(); // attaching 'data' resumed the stream
  });
  await sig.until(() => opens === 1);
  t.ok(bufferedAfterWrite > 0, `bufferedAmount rose above 0 (${bufferedAfterWrite})`);
  t.ok(bufferedAfterWrite < total, 'the kernel took part of it');
  // The paused client may still have taken a few KiB since (its stream reads
  // up to its highWaterMark), so the queue can only have shrunk.
  const queued = engine.stats().queuedBytes;
  t.ok(queued > 0 && queued <= bufferedAfterWrite, `stats().queuedBytes agrees (${queued})`);
  t.equal(conn.bufferedAmount, queued, 'bufferedAmount equals the queued bytes');
  t.equal(engineDrains, 0, 'no drain while data is queued');
  s.resume();
  await received;
  await sig.until(() => engineDrains === 1 && connDrains === 1);
  t.equal(engineDrains, 1, 'engine onDrain fired once');
  t.equal(connDrains, 1, 'conn.onDrain handler fired once');
  t.equal(bufferedInDrain, 0, 'bufferedAmount is 0 inside onDrain');
  t.equal(conn.bufferedAmount, 0, 'bufferedAmount returned to 0');
  t.equal(engine.stats().queuedBytes, 0, 'queuedBytes returned to 0');
  t.ok(pauses > 10, 'the reader really was slow (paused many times)');
  const all = Buffer.concat(got);
  t.equal(all.length, total, 'every byte arrived');
  t.ok(all.equals(Buffer.concat(parts)), 'in order, byte for byte');
  t.equal(engine.stats().bytesOut, total, 'bytesOut exact');
  s.end();
  await sig.until(() => closes === 1);
  t.equal(closes, 1, 'onClose once');
  assertEOF(t, closeErr);
});

t.test('the socket file is removed by engine.stop()', { timeout: 10_000 }, async (t) => {
  const dir = tempDir(t);
  const sock = path.join(dir, 's.sock');
  let closes = 0;
  let closeErr;
  const sig = signal();
  const engine = new Engine({
    addrs: [`unix:${sock}`],
    onOpen: () => sig.poke(),
    onClose: (_c, err) => {
      closes++;
      closeErr = err;
    },
  });
  await engine.start();
  t.teardown(() => engine.stop());
  t.ok(fs.existsSync(sock), 'exists while listening');
  const s = await connectUnix(sock);
  t.teardown(() => s.destroy());
  await sig.until(() => engine.stats().online === 1);
  const ended = new Promise((resolve) => s.once('end', resolve));
  await engine.stop();
  t.notOk(fs.existsSync(sock), 'removed after stop()');
  t.equal(closes, 1, 'the open connection got onClose once');
  t.equal(closeErr, null, 'stop() reports null');
  await ended;
  t.pass('the client saw EOF');
  t.same(fs.readdirSync(dir), [], 'nothing left in the directory');
});

t.test('listening on a path that already exists fails with EADDRINUSE', { timeout: 10_000 }, async (t) => {
  const dir = tempDir(t);

  // A regular file.
  const file = path.join(dir, 'taken');
  fs.writeFileSync(file, 'keep me');
  const e1 = new Engine({ addrs: [`unix:${file}`] });
  t.teardown(() => e1.stop());
  const err1 = await e1.start().then(
    () => null,
    (e) => e,
  );
  t.type(err1, SysError);
  t.type(err1, NetloopError);
  t.equal(err1?.code, 'EADDRINUSE', 'code');
  t.equal(err1?.message, `listen unix:${file}: address already in use`, 'message');
  t.equal(e1.running, false, 'not running');
  t.equal(fs.readFileSync(file, 'utf8'), 'keep me', 'the existing file was left alone');

  // A listener opened before the failing one is released, its file removed.
  const first = path.join(dir, 'first.sock');
  const e0 = new Engine({ addrs: [`unix:${first}`, `unix:${file}`] });
  t.teardown(() => e0.stop());
  const err0 = await e0.start().then(
    () => null,
    (e) => e,
  );
  t.equal(err0?.code, 'EADDRINUSE', 'the second address fails');
  t.notOk(fs.existsSync(first), 'the first listener\'s socket file was removed');
  t.equal(fs.readFileSync(file, 'utf8'), 'keep me', 'the existing file was left alone');

  // A live socket of a net.Server.
  const sock = path.join(dir, 'live.sock');
  const server = net.createServer((c) => c.end('still here'));
  await new Promise((resolve) => server.listen(sock, resolve));
  t.teardown(() => new Promise((r) => server.close(r)));
  const e2 = new Engine({ addrs: [`unix:${sock}`] });
  t.teardown(() => e2.stop());
  const err2 = await e2.start().then(
    () => null,
    (e) => e,
  );
  t.type(err2, SysError);
  t.equal(err2?.code, 'EADDRINUSE', 'code');
  t.equal(err2?.message, `listen unix:${sock}: address already in use`, 'message');
  const c = await connectUnix(sock);
  t.teardown(() => c.destroy());
  const reply = await new Promise((resolve) => {
    const got = [];
    c.on('data', (d) => got.push(d));
    c.once('end', () => resolve(Buffer.concat(got).toString()));
  });
  t.equal(reply, 'still here', 'the net.Server still owns its socket file');
});

t.test('a unix path longer than sun_path fails with SysError ENAMETOOLONG', { timeout: 10_000 }, async (t) => {
  const dir = tempDir(t);
  const long = path.join(dir, 'x'.repeat(120) + '.sock');
  const before = fs.readdirSync(dir);
  const engine = new Engine({ addrs: [`unix:${long}`] });
  t.teardown(() => engine.stop());
  const err = await engine.start().then(
    () => null,
    (e) => e,
  );
  t.type(err, SysError);
  t.equal(err?.code, 'ENAMETOOLONG', 'code');
  t.equal(err?.message, `listen unix:${long}: name too long`, 'message');
  t.same(fs.readdirSync(dir), before, 'nothing was created');

  const e2 = new Engine({});
  await e2.start();
  t.teardown(() => e2.stop());
  const err2 = await e2.dial(`unix:${long}`).then(
    () => null,
    (e) => e,
  );
  t.type(err2, SysError, 'dial too');
  t.equal(err2?.code, 'ENAMETOOLONG');
  t.equal(err2?.message, `dial unix:${long}: name too long`);
});
