// The netloop side of the interop tests (interop-ws, interop-undici,
// interop-chromium): an Engine with an Upgrader whose every handler records
// what it saw, per connection, so that tests can count callbacks (onClose
// exactly once), compare close handler calls, onClose errors and closeInfo
// with the close reporting contract (DESIGN.md, non-blocking column).
//
// Not a test file itself (tap runs test/**/*.test.js only).
import { performance } from 'node:perf_hooks';
import { testIoMode, asNonBlocking } from './ws-peer.js';
import { testTls } from './tls-env.js';
import http from 'node:http';
import { Engine, Upgrader, NetClosedError } from '../../dist/index.js';
import { requestHeadOf } from '../../dist/adopt.js';

export const MiB = 1024 * 1024;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls cond() every 2 ms; rejects after ms with a message naming what it waited for. */
export async function until(cond, ms, what) {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(2);
  }
}

/** Resolves or rejects like `promise`, or rejects after ms with a message naming what it waited for. */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A deterministic byte pattern (xorshift), so that a shifted, dropped or
 * duplicated chunk never lines up by accident.
 */
export function pattern(n, seed = 2463534242) {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Text of n bytes of UTF-8 made of 1-, 2-, 3- and 4-byte characters (n a multiple of 10). */
export function utf8Text(n) {
  const unit = 'aé€😀'; // 1 + 2 + 3 + 4 bytes
  if (n % 10 !== 0) throw new Error('utf8Text: n must be a multiple of 10');
  return unit.repeat(n / 10);
}

/**
 * Starts an engine on 127.0.0.1:0 with an Upgrader (subprotocols
 * ['chat', 'superchat'], compression off, unless `upgrader` says otherwise).
 * `compression` (false by default) is the Upgrader's permessage-deflate
 * option, true or a DeflateOptions object; `upgrader.compression` wins if
 * both are given.
 *
 * Each upgraded connection gets a record (`c.session`, also in `conns`):
 *   messages     [{ type, data }]       every onMessage, data copied
 *   closeFrames  [[code, reason]]       every close handler call
 *   closes       [err]                  every onClose call (must end with length 1)
 *   pongs        [Buffer]               every pong received
 *   closeInfo    a copy of c.closeInfo taken inside onClose
 *   writeAfterClose  what c.writeMessage() threw inside onClose
 *   closed       a promise of onClose's err
 *
 * onMessage(c, type, data, rec) replaces the default echo (which echoes
 * while the connection is open). The engine is stopped at teardown;
 * `finish(t)` stops it inside the test and checks the counts.
 *
 * NETLOOP_TEST_MOUNT=http (test/websocket-modes.test.js sets it): the port is
 * a Node http.Server's instead of the engine's own listener; its requests go
 * to httpHandler, its upgrades to upgrader.handleUpgrade(). The suites then
 * check that a connection taken over from Node behaves exactly like one the
 * engine accepted.
 */
export async function startServer(t, { upgrader = {}, compression = false, onOpen, onMessage, httpHandler } = {}) {
  // No compression by default (permessage-deflate is offered by every client
  // under test and must simply be declined), unless a test asks for it.
  const options = { subprotocols: ['chat', 'superchat'], compression, ...upgrader };
  if (httpHandler !== undefined) options.httpHandler = httpHandler;
  const up = new Upgrader(options);
  const conns = [];
  let opened = 0;
  up.onOpen((c) => {
    opened++;
    const rec = { c, index: conns.length, messages: [], closeFrames: [], closes: [], pongs: [], closeInfo: null, writeAfterClose: undefined };
    rec.closed = new Promise((resolve) => {
      rec.resolveClosed = resolve;
    });
    c.setSession(rec);
    conns.push(rec);
    onOpen?.(c, rec);
  });
  up.onMessage((c, type, data) => {
    const rec = c.session;
    rec.messages.push({ type, data: Buffer.from(data) });
    if (onMessage !== undefined) onMessage(c, type, data, rec);
    else if (!c.closed) c.writeMessage(type, data);
  });
  up.onClose((c, raw) => {
    const rec = c.session;
    const err = asNonBlocking(raw, c); // the same as raw, except when a suite reruns in blocking mode
    rec.closes.push(err);
    rec.closeInfo = c.closeInfo === null ? null : { ...c.closeInfo, error: err };
    try {
      c.writeMessage('text', 'after close');
      rec.writeAfterClose = null;
    } catch (e) {
      rec.writeAfterClose = e;
    }
    rec.resolveClosed(err);
  });
  up.setCloseHandler((c, code, reason) => {
    c.session.closeFrames.push([code, reason]);
  });
  up.setPongHandler((c, data) => {
    c.session.pongs.push(Buffer.from(data));
  });
  const mountOnHttp = process.env.NETLOOP_TEST_MOUNT === 'http';
  const tls = testTls(); // NETLOOP_TEST_TLS=1: the same suite over wss://
  const engine = new Engine({ ...(mountOnHttp ? {} : { addrs: ['127.0.0.1:0'] }), upgrader: up, ...testIoMode(), ...(tls !== undefined ? { tls } : {}) });
  await engine.start();
  t.teardown(() => engine.stop());
  let addr;
  if (mountOnHttp) {
    const server = http.createServer((req, res) => {
      const answer = httpHandler?.(requestHeadOf(req), undefined) ?? { status: 404, body: 'Not Found\n' };
      res.writeHead(answer.status, answer.headers ?? {});
      res.end(answer.body ?? '');
    });
    server.on('upgrade', (req, socket, head) => {
      up.handleUpgrade(req, socket, head).catch((err) => {
        t.fail(`handleUpgrade: ${err?.message}`);
        socket.destroy();
      });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise((resolve) => server.close(resolve)));
    addr = `127.0.0.1:${server.address().port}`;
  } else {
    [addr] = engine.addresses();
  }

  const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
  return {
    engine,
    up,
    addr,
    port,
    // Over TLS the certificate names localhost (and 127.0.0.1); clients
    // verify it against the test CA (NODE_EXTRA_CA_CERTS).
    url: tls !== undefined ? `wss://localhost:${port}/ws` : `ws://${addr}/ws`,
    /** The page origin (Chromium): http://addr, or https://localhost:port over TLS. */
    origin: tls !== undefined ? `https://localhost:${port}` : `http://${addr}`,
    conns,
    /** The record of the i-th upgraded connection, once it has opened. */
    async conn(i = 0, ms = 5000) {
      await until(() => conns.length > i, ms, `server connection #${i} to open`);
      return conns[i];
    },
    /** Waits for onClose of a record; resolves to its err. */
    closed(rec, ms = 5000) {
      return within(rec.closed, ms, `server onClose of connection #${rec.index}`);
    },
    /**
     * Stops the engine (bounded), waits a little for late callbacks, and
     * checks that every upgraded connection got exactly one onClose, and
     * that writes inside onClose threw NetClosedError.
     */
    async finish(t, ms = 7000) {
      await within(engine.stop(), ms, 'engine.stop()');
      await sleep(20);
      t.equal(conns.length, opened, 'one record per onOpen');
      for (const rec of conns) {
        t.equal(rec.closes.length, 1, `server onClose called exactly once for connection #${rec.index}`);
        t.ok(rec.writeAfterClose instanceof NetClosedError, `writeMessage() inside onClose threw NetClosedError (#${rec.index})`);
      }
    },
  };
}

/** Asserts an error's class, code and message (exact string or RegExp). */
export function assertError(t, err, Class, code, message, what = 'error') {
  t.ok(err instanceof Class, `${what} is a ${Class.name} (got ${err?.constructor?.name}: ${err?.message})`);
  t.equal(err?.code, code, `${what}.code`);
  if (message instanceof RegExp) t.match(err?.message, message, `${what}.message`);
  else if (message !== undefined) t.equal(err?.message, message, `${what}.message`);
}
