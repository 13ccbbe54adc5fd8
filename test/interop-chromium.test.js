// Interop with a real browser: headless Chromium from Debian
// (/usr/bin/chromium, `apt-get install -y chromium`; .ci/run installs it),
// driven by playwright-core. netloop serves the page itself (the Upgrader's
// httpHandler), so the page and its WebSocket share origin and port. The
// page opens `new WebSocket('ws://127.0.0.1:PORT/ws', ['chat'])`, and the
// results come back through page.evaluate promises: text, binary
// (ArrayBuffer), 1 MiB messages, the subprotocol, the declined
// permessage-deflate offer, and the close paths on both ends against the
// close reporting contract (DESIGN.md, non-blocking column).
//
// Bounded: the whole file gets 30 s; the browser, the engine and the
// profile directory are released at teardown.
import t from 'tap';
import { launchChromium, requireChromium } from './helpers/chromium.js';
import { CloseError } from '../dist/index.js';
import { MiB, pattern, startServer, until, within } from './helpers/interop-server.js';

const OPTS = { timeout: 10000 };

t.setTimeout(30000);

// Runs in the page. T keeps the page's sockets by id between evaluate calls.
// pattern() is the same xorshift as helpers/interop-server.js.
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>netloop interop</title>
<script>
'use strict';
window.T = {
  next: 0,
  socks: {},
  pattern(n, seed) {
    const b = new Uint8Array(n);
    let x = (seed >>> 0) || 1;
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      b[i] = x & 0xff;
    }
    return b;
  },
  open(protocols) {
    const id = ++T.next;
    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws', protocols);
    ws.binaryType = 'arraybuffer';
    const s = { ws, messages: [], errors: 0, closeEvents: [] };
    T.socks[id] = s;
    ws.onmessage = (ev) => s.messages.push(ev.data);
    ws.onerror = () => s.errors++;
    s.closed = new Promise((resolve) => {
      ws.onclose = (ev) => {
        s.closeEvents.push({ code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
        resolve(s.closeEvents[0]);
      };
    });
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve({ id, protocol: ws.protocol, extensions: ws.extensions, url: ws.url });
      s.closed.then((ev) => reject(new Error('closed before open: ' + JSON.stringify(ev))));
    });
  },
  async messages(id, n, ms = 5000) {
    const s = T.socks[id];
    const end = Date.now() + ms;
    while (s.messages.length < n) {
      if (Date.now() > end) throw new Error('timed out waiting for ' + n + ' messages, have ' + s.messages.length);
      await new Promise((r) => setTimeout(r, 5));
    }
    return s.messages.slice(0, n);
  },
  async closed(id, ms = 5000) {
    const s = T.socks[id];
    const ev = await Promise.race([s.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('timed out waiting for the close event')), ms))]);
    await new Promise((r) => setTimeout(r, 20)); // a second close event would show here
    return { ...ev, closeEvents: s.closeEvents.length, errors: s.errors };
  },
};
</script>
`;

if (requireChromium(t)) await browserTests();

async function browserTests() {
  const handshakes = [];
  const httpRequests = [];
  const srv = await startServer(t, {
    upgrader: {
      // Called with every upgrade's request head: a place to see what the browser offered.
      checkOrigin(origin, head) {
        handshakes.push({ origin, extensions: head.get('sec-websocket-extensions'), protocol: head.get('sec-websocket-protocol'), target: head.target });
        return true;
      },
    },
    httpHandler(head) {
      httpRequests.push(`${head.method} ${head.target}`);
      if (head.method === 'GET' && head.target === '/') {
        return { status: 200, headers: [['Content-Type', 'text/html; charset=utf-8'], ['Cache-Control', 'no-store']], body: PAGE };
      }
      return { status: 404, headers: [['Content-Type', 'text/plain']], body: 'Not Found\n' };
    },
  });
  const origin = srv.origin;

  const context = await launchChromium(t);
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(8000);
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));
  const response = await page.goto(`${origin}/`, { timeout: 8000 });
  t.equal(response?.status(), 200, 'the page came from netloop (httpHandler)');

  // Opens a WebSocket in the page; resolves to the page's view and the
  // server's record of the connection (opens are sequential).
  let opened = 0;
  const open = async (protocols) => {
    const s = await page.evaluate((p) => T.open(p), protocols);
    s.rec = await srv.conn(opened++);
    return s;
  };

  t.test('handshake: subprotocol chat, permessage-deflate offered and declined, same origin', OPTS, async (t) => {
    const s = await open(['chat']);
    t.equal(s.protocol, 'chat', 'the browser sees the subprotocol');
    t.equal(s.extensions, '', 'no extension agreed');
    t.equal(s.url, srv.url);
    const rec = s.rec;
    t.equal(rec.c.subprotocol, 'chat');
    t.equal(rec.c.path, '/ws');
    const hs = handshakes.at(-1);
    t.equal(hs.origin, origin, 'Origin is the page (served by netloop itself)');
    t.equal(hs.protocol, 'chat');
    t.equal(hs.target, '/ws');
    t.match(hs.extensions, /^permessage-deflate\b/, `Chromium offered permessage-deflate (${hs.extensions})`);
    const two = await open(['superchat', 'chat']);
    t.equal(two.protocol, 'chat', 'offered superchat and chat: the server preference wins');
    await page.evaluate(([a, b]) => { T.socks[a].ws.close(1000); T.socks[b].ws.close(1000); }, [s.id, two.id]);
    const closes = await page.evaluate(([a, b]) => Promise.all([T.closed(a), T.closed(b)]), [s.id, two.id]);
    t.same(closes.map((c) => c.code), [1000, 1000]);
  });

  t.test('text and binary (ArrayBuffer) echo', OPTS, async (t) => {
    const s = await open(['chat']);
    const rec = s.rec;
    const got = await page.evaluate(async (id) => {
      const ws = T.socks[id].ws;
      ws.send('hello');
      ws.send('héllo — 日本語 — 🎉');
      ws.send(T.pattern(1000, 21));
      ws.send(new Uint8Array([0, 255, 0]).buffer);
      ws.send('');
      ws.send(new ArrayBuffer(0));
      const m = await T.messages(id, 6);
      return m.map((x) => (typeof x === 'string' ? ['string', x] : [Object.prototype.toString.call(x), Array.from(new Uint8Array(x))]));
    }, s.id);
    t.same(got[0], ['string', 'hello']);
    t.same(got[1], ['string', 'héllo — 日本語 — 🎉']);
    t.equal(got[2][0], '[object ArrayBuffer]', 'binary arrives as an ArrayBuffer');
    t.ok(Buffer.from(got[2][1]).equals(pattern(1000, 21)), 'binary echo byte-exact');
    t.same(got[3], ['[object ArrayBuffer]', [0, 255, 0]]);
    t.same(got[4], ['string', '']);
    t.same(got[5], ['[object ArrayBuffer]', []]);
    t.same(
      rec.messages.map((m) => [m.type, m.data.toString('hex')]),
      [
        ['text', Buffer.from('hello').toString('hex')],
        ['text', Buffer.from('héllo — 日本語 — 🎉').toString('hex')],
        ['binary', pattern(1000, 21).toString('hex')],
        ['binary', '00ff00'],
        ['text', ''],
        ['binary', ''],
      ],
      'the server got each message with its type, byte-exact',
    );
    await page.evaluate((id) => T.socks[id].ws.close(1000), s.id);
    t.equal((await page.evaluate((id) => T.closed(id), s.id)).code, 1000);
  });

  t.test('1 MiB messages, binary and text', OPTS, async (t) => {
    const s = await open(['chat']);
    const rec = s.rec;
    const got = await page.evaluate(async ([id, n]) => {
      const ws = T.socks[id].ws;
      const bin = T.pattern(n, 42);
      const text = 'aé€😀'.repeat(n / 10);
      ws.send(bin);
      ws.send(text);
      const [b, s] = await T.messages(id, 2, 8000);
      const echoed = new Uint8Array(b);
      let same = echoed.length === bin.length;
      for (let i = 0; same && i < bin.length; i++) same = echoed[i] === bin[i];
      return { binLength: echoed.length, binSame: same, textSame: s === text, textLength: s.length };
    }, [s.id, MiB - (MiB % 10)]);
    const n = MiB - (MiB % 10);
    t.same(got, { binLength: n, binSame: true, textSame: true, textLength: 'aé€😀'.length * (n / 10) }, 'the browser got both echoes exactly');
    t.equal(rec.messages.length, 2);
    t.equal(rec.messages[0]?.type, 'binary');
    t.ok(rec.messages[0]?.data.equals(pattern(n, 42)), 'server: ~1 MiB binary byte-exact');
    t.equal(rec.messages[1]?.type, 'text');
    t.ok(rec.messages[1]?.data.equals(Buffer.from('aé€😀'.repeat(n / 10))), 'server: ~1 MiB text byte-exact');
    await page.evaluate((id) => T.socks[id].ws.close(1000), s.id);
    t.equal((await page.evaluate((id) => T.closed(id), s.id)).code, 1000);
  });

  t.test("browser close(1000, 'bye')", OPTS, async (t) => {
    const s = await open(['chat']);
    const rec = s.rec;
    await page.evaluate((id) => T.socks[id].ws.close(1000, 'bye'), s.id);
    const ev = await page.evaluate((id) => T.closed(id), s.id);
    t.same(ev, { code: 1000, reason: '', wasClean: true, closeEvents: 1, errors: 0 }, 'CloseEvent 1000, clean');
    t.equal(await srv.closed(rec), null, 'server onClose(null)');
    t.same(rec.closeFrames, [[1000, 'bye']], "close handler (1000, 'bye')");
    t.same(rec.closeInfo, { code: 1000, reason: 'bye', wasClean: true, initiator: 'peer', error: null });
  });

  t.test('browser close(4000)', OPTS, async (t) => {
    const s = await open(['chat']);
    const rec = s.rec;
    await page.evaluate((id) => T.socks[id].ws.close(4000), s.id);
    const ev = await page.evaluate((id) => T.closed(id), s.id);
    t.same(ev, { code: 4000, reason: '', wasClean: true, closeEvents: 1, errors: 0 }, 'CloseEvent 4000, clean');
    const err = await srv.closed(rec);
    t.ok(err instanceof CloseError, `onClose err is a CloseError (${err?.constructor?.name})`);
    t.equal(err?.code, 'NETLOOP_WS_CLOSE');
    t.equal(err?.closeCode, 4000);
    t.equal(err?.reason, '');
    t.equal(err?.message, 'websocket: close 4000');
    t.same(rec.closeFrames, [[4000, '']]);
    t.same(rec.closeInfo, { code: 4000, reason: '', wasClean: true, initiator: 'peer', error: err });
  });

  t.test("server writeClose(4001, 'srv')", OPTS, async (t) => {
    const s = await open(['chat']);
    const rec = s.rec;
    rec.c.writeMessage('text', 'before close');
    rec.c.writeClose(4001, 'srv');
    const ev = await page.evaluate((id) => T.closed(id), s.id);
    t.same(ev, { code: 4001, reason: 'srv', wasClean: true, closeEvents: 1, errors: 0 }, "CloseEvent 4001 'srv', clean");
    t.same(await page.evaluate((id) => T.socks[id].messages, s.id), ['before close'], 'the message written before the close arrived');
    t.equal(await srv.closed(rec), null, 'server onClose(null): we started, the browser answered');
    t.same(rec.closeFrames, [[4001, 'srv']], "close handler: the browser's answer (Chromium echoes code and reason)");
    t.same(rec.closeInfo, { code: 4001, reason: 'srv', wasClean: true, initiator: 'local', error: null });
  });

  t.test('server closeWithError(e): CloseEvent 1006, not clean', OPTS, async (t) => {
    const s = await open(['chat']);
    const rec = s.rec;
    const e = new Error('kicked');
    rec.c.closeWithError(e);
    const { errors, ...ev } = await page.evaluate((id) => T.closed(id), s.id);
    // Whether an error event precedes it is the browser's business (Chromium
    // fires none for a TCP close without a close frame): not asserted.
    t.same(ev, { code: 1006, reason: '', wasClean: false, closeEvents: 1 }, 'CloseEvent 1006, not clean');
    t.comment(`error events before the close event: ${errors}`);
    t.equal(await srv.closed(rec), e, 'server onClose got e itself');
    t.same(rec.closeFrames, []);
    t.same(rec.closeInfo, { code: 1006, reason: '', wasClean: false, initiator: 'local', error: e });
  });

  t.test('teardown checks', OPTS, async (t) => {
    t.same(pageErrors, [], 'no uncaught error in the page');
    await until(() => srv.conns.every((r) => r.closes.length > 0), 5000, 'every server connection closed');
    t.ok(handshakes.every((h) => h.origin === origin), 'every handshake came from the page');
    t.equal(handshakes.length, srv.conns.length, 'one onOpen per handshake');
    t.ok(httpRequests.includes('GET /'), `plain HTTP requests went to httpHandler (${httpRequests.join(', ')})`);
    await within(context.close(), 10000, 'the browser to close');
    await srv.finish(t);
  });
}
