// Topics (lib/topics/hub.ts, lib/websocket/topics.ts): subscribe, publish,
// framed once, on real loopback sockets with the `ws` client, undici's
// WebSocket and raw peers that show the bytes on the wire. Reruns itself in
// the blocking and mixed I/O modes (NETLOOP_TEST_IO_MODE, read by
// test/helpers/ws-peer.js), as test/websocket-modes.test.js does for the
// older suites, in this file's own time budget. Exact delivery counts and order, the publisher
// excluded, compression per subscriber, a subscriber that never reads
// (closed, or skipped), order behind a message being compressed or sent in
// fragments, unsubscription on every close path, raw TCP topics, the
// adapter contract, and the limits.
import t from 'tap';
import net from 'node:net';
import zlib from 'node:zlib';
import WebSocket from 'ws';
import { WebSocket as UndiciWebSocket } from 'undici';
import { Engine, Upgrader, OverflowError, dial } from '../dist/index.js';
import { fileURLToPath } from 'node:url';
import { Peer, parseFrames, sleep, startServer, testIoMode, until } from './helpers/ws-peer.js';

if (process.env.NETLOOP_TEST_IO_MODE === undefined) {
  for (const mode of ['blocking', 'mixed']) {
    t.spawn(process.execPath, [fileURLToPath(import.meta.url)], { env: { ...process.env, NETLOOP_TEST_IO_MODE: mode } }, `topics (${mode})`);
  }
}

/** A ws client that records every message as [type, string]. */
async function wsClient(t, addr, options = {}, path = '') {
  const ws = new WebSocket(`ws://${addr}/${path}`, options);
  ws.got = [];
  ws.on('message', (data, isBinary) => ws.got.push([isBinary ? 'binary' : 'text', data.toString()]));
  ws.on('error', () => {});
  t.teardown(() => ws.terminate());
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

/** An undici WebSocket that records every message as [type, string]. */
async function undiciClient(t, addr) {
  const ws = new UndiciWebSocket(`ws://${addr}/`);
  ws.binaryType = 'arraybuffer';
  ws.got = [];
  ws.addEventListener('message', (ev) =>
    ws.got.push(typeof ev.data === 'string' ? ['text', ev.data] : ['binary', Buffer.from(ev.data).toString()]),
  );
  t.teardown(() => ws.close());
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve, { once: true });
    ws.addEventListener('error', (ev) => reject(ev.error ?? new Error('undici error')), { once: true });
  });
  return ws;
}

/** A permessage-deflate payload inflated as a peer does (the tail appended, RFC 7692 §7.2.2). */
function inflateMessage(payload) {
  return zlib.inflateRawSync(Buffer.concat([payload, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
}

/** A server whose connections subscribe to the topics their path names (/a,b) and publish what they send ("topic:payload"). */
async function topicServer(t, upgraderOptions = {}, engine = {}) {
  return startServer(t, upgraderOptions, {
    engine,
    onOpen: (c) => {
      const list = c.path.slice(1);
      if (list !== '') for (const topic of list.split(',')) c.subscribe(topic);
    },
    onMessage: (c, type, data) => {
      const text = data.toString();
      const i = text.indexOf(':');
      c.publish(text.slice(0, i), type === 'text' ? text.slice(i + 1) : data.subarray(i + 1), type);
    },
  });
}

t.test('publish reaches every subscriber once, in order; a connection publishing skips itself', async (t) => {
  const s = await topicServer(t);
  const none = await wsClient(t, s.addr); // subscribed to nothing
  const subs = [];
  for (const path of ['news', 'news,sport', 'sport']) {
    const ws = new WebSocket(`ws://${s.addr}/${path}`);
    ws.got = [];
    ws.on('message', (d, bin) => ws.got.push([bin ? 'binary' : 'text', d.toString()]));
    t.teardown(() => ws.terminate());
    await new Promise((r) => ws.once('open', r));
    subs.push(ws);
  }
  const und = await undiciClient(t, s.addr); // subscribes below, from the server side
  await until(() => s.recs.length === 5, 3000, 'five connections');
  s.recs[4].conn.subscribe('news');
  t.equal(s.up.numSubscribers('news'), 3, 'numSubscribers(news)');
  t.equal(s.up.numSubscribers('sport'), 2, 'numSubscribers(sport)');
  t.equal(s.up.numSubscribers('nothing'), 0, 'numSubscribers of an unknown topic');
  t.same(s.recs[2].conn.topics.sort(), ['news', 'sport'], 'ws.topics');
  t.ok(s.recs[2].conn.isSubscribed('sport'), 'isSubscribed');
  t.notOk(s.recs[0].conn.isSubscribed('news'), 'not subscribed');

  for (let i = 0; i < 50; i++) t.equal(s.up.publish('news', `n${i}`), 3, 'queued for 3 subscribers');
  t.equal(s.up.publish('sport', Buffer.from('s0')), 2, 'bytes: binary by default');
  // From a connection: news,sport publishes to news (the others only).
  subs[1].send('news:from-b');
  await until(() => subs[0].got.length === 51 && und.got.length === 51 && subs[1].got.length === 51, 3000, 'deliveries');
  await sleep(50);
  const expected = Array.from({ length: 50 }, (_, i) => ['text', `n${i}`]);
  t.same(subs[0].got, [...expected, ['text', 'from-b']], 'news subscriber: every message once, in order');
  t.same(und.got, [...expected, ['text', 'from-b']], 'undici subscriber: the same');
  t.same(subs[1].got, [...expected, ['binary', 's0']], 'the publisher did not get its own publish');
  t.same(subs[2].got, [['binary', 's0']], 'sport only');
  t.same(none.got, [], 'a connection without topics gets nothing');

  // unsubscribe
  t.equal(s.recs[1].conn.unsubscribe('news'), true, 'unsubscribe');
  t.equal(s.recs[1].conn.unsubscribe('news'), false, 'unsubscribe twice');
  t.equal(s.up.numSubscribers('news'), 2, 'one fewer');
  t.equal(s.up.publish('news', 'after'), 2, 'two left');
  await until(() => und.got.length === 52, 3000, 'after');
  await sleep(30);
  t.equal(subs[0].got.length, 51, 'the unsubscribed connection got nothing more');
});

t.test('compression: one compressed frame for no-context-takeover subscribers, plain for the others', async (t) => {
  const s = await topicServer(t, { compression: { threshold: 64 } });
  const offer = (ext) => (ext === undefined ? [] : [['Sec-WebSocket-Extensions', ext]]);
  const peers = [];
  for (const ext of ['permessage-deflate; server_no_context_takeover', 'permessage-deflate; server_no_context_takeover; server_max_window_bits=10', 'permessage-deflate', undefined]) {
    peers.push(await Peer.open(t, s.addr, { path: '/t', headers: offer(ext) }));
  }
  const viaWs = await wsClient(t, s.addr, { perMessageDeflate: { serverNoContextTakeover: true } });
  await until(() => s.recs.length === 5, 3000, 'five connections');
  s.recs[4].conn.subscribe('t');
  const big = 'compress me '.repeat(400); // 4,800 bytes
  const small = 'tiny';
  for (let i = 0; i < 2; i++) s.up.publish('t', big);
  s.up.publish('t', small);
  const inflate = (p) => inflateMessage(p).toString();
  for (const [i, p] of peers.entries()) {
    await until(() => parseFrames(p.rx).frames.length === 3, 3000, `three frames on peer ${i}`);
    const { frames, rest } = parseFrames(p.rx);
    t.equal(rest, 0, `peer ${i}: whole frames`);
    const compressed = i < 2;
    t.same(
      frames.map((f) => f.rsv1),
      [compressed, compressed, false],
      `peer ${i}: RSV1 ${compressed ? 'on the large messages' : 'never (context takeover or no extension)'}`,
    );
    t.same(
      frames.map((f) => (f.rsv1 ? inflate(f.payload) : f.payload.toString())),
      [big, big, small],
      `peer ${i}: the payloads`,
    );
    if (compressed) t.ok(frames[0].len < big.length / 4, `peer ${i}: compressed ${big.length} to ${frames[0].len} bytes`);
  }
  await until(() => viaWs.got.length === 3, 3000, 'ws (permessage-deflate, no context takeover) got all three');
  t.same(viaWs.got, [['text', big], ['text', big], ['text', small]], 'ws inflated them');
});

t.test('a published frame waits behind a message being compressed and behind a fragmented message', async (t) => {
  const s = await topicServer(t, { compression: { threshold: 0 } });
  const peer = await Peer.open(t, s.addr, { path: '/t', headers: [['Sec-WebSocket-Extensions', 'permessage-deflate']] });
  const rec = await s.rec(peer);
  // 8 MiB of incompressible-ish text: compressed over several loop turns.
  const big = Buffer.alloc(8 << 20);
  for (let i = 0; i < big.length; i++) big[i] = 97 + ((i * 2654435761) >>> 27);
  rec.conn.writeMessage('binary', big);
  t.equal(s.up.publish('t', 'after-big'), 1, 'published while compressing');
  rec.conn.writeFrame('text', 'frag-1 ', false);
  t.equal(s.up.publish('t', 'after-fragments'), 1, 'published while a fragmented message is open');
  rec.conn.writeFrame('text', 'frag-2', true);
  await until(() => parseFrames(peer.rx).frames.length === 5, 10000, 'five frames');
  const { frames } = parseFrames(peer.rx);
  t.same(
    frames.map((f) => [f.opcode, f.fin]),
    [
      [2, true],
      [1, true],
      [1, false],
      [0, true],
      [1, true],
    ],
    'the compressed message, the publish, the two fragments, then the publish made between them',
  );
  t.ok(inflateMessage(frames[0].payload).equals(big), 'the big message whole');
  t.same(
    frames.slice(1).map((f) => f.payload.toString()),
    ['after-big', 'frag-1 ', 'frag-2', 'after-fragments'],
    'payloads in order',
  );
});

/** A raw peer that upgrades, subscribes through its path, and never reads again. */
async function neverReader(t, addr, path) {
  const sock = net.connect({ host: addr.split(':')[0], port: Number(addr.split(':')[1]) });
  t.teardown(() => sock.destroy());
  sock.on('error', () => {});
  await new Promise((r) => sock.once('connect', r));
  sock.write(
    `GET /${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await new Promise((r) => sock.once('data', r));
  sock.pause(); // from now on, nothing is read: the kernel buffers fill
  return sock;
}

/** Publishes `chunk` `n` times, 20 per timer turn, so that the kernel and the queues see a stream. */
async function publishPaced(up, topic, chunk, n) {
  for (let sent = 0; sent < n; ) {
    for (let i = 0; i < 20 && sent < n; i++, sent++) up.publish(topic, chunk);
    await sleep(2);
  }
}

t.test("a subscriber that never reads: 'close' (the engine's maxWriteBufferSize) while the others receive everything", async (t) => {
  const s = await topicServer(t, {}, { maxWriteBufferSize: 512 * 1024 });
  const stalled = await neverReader(t, s.addr, 'feed');
  const good = [await wsClient(t, s.addr, {}, 'feed'), await wsClient(t, s.addr, {}, 'feed')];
  await until(() => s.recs.length === 3, 3000, 'three connections');
  const stalledRec = await s.rec({ sock: stalled });
  const chunk = Buffer.alloc(16 * 1024, 120);
  const N = 400; // 6.4 MB to each: far past the stalled peer's kernel buffers and its 512 KiB queue
  await publishPaced(s.up, 'feed', chunk, N);
  await until(() => good.every((g) => g.got.length === N), 15000, 'every message at both readers');
  await until(() => stalledRec.closes.length === 1, 5000, 'the never-reader closed');
  t.ok(stalledRec.closes[0].err instanceof OverflowError, `the never-reader got OverflowError (${stalledRec.closes[0].err?.name})`);
  t.equal(s.up.numSubscribers('feed'), 2, 'and left the topic');
  t.ok(good.every((g) => g.got.every(([, d]) => d.length === chunk.length)), 'the readers got whole messages');
});

t.test("a subscriber that never reads: 'skip' keeps it open and counts what it missed", async (t) => {
  const s = await topicServer(t, { topics: { slowSubscriber: 'skip', skipAbove: 64 * 1024 } }, { maxWriteBufferSize: 512 * 1024 });
  const stalled = await neverReader(t, s.addr, 'feed');
  const good = await wsClient(t, s.addr, {}, 'feed');
  await until(() => s.recs.length === 2, 3000, 'two connections');
  const stalledRec = await s.rec({ sock: stalled });
  const chunk = Buffer.alloc(16 * 1024, 121);
  const N = 400;
  await publishPaced(s.up, 'feed', chunk, N);
  await until(() => good.got.length === N, 15000, 'every message at the reader');
  await sleep(100);
  t.equal(stalledRec.closes.length, 0, 'the never-reader is still open');
  t.equal(s.up.numSubscribers('feed'), 2, 'and subscribed');
  const skipped = s.engine.stats().writesSkipped;
  t.ok(skipped > 0 && skipped < N, `it missed ${skipped} of ${N} (the rest sit in its kernel buffers and its queue)`);
  t.ok(s.engine.stats().queuedBytes <= 64 * 1024 + 2 * (16 * 1024 + 4) * 20, `its queue stayed near the mark (${s.engine.stats().queuedBytes} bytes)`);
});

t.test('every close path leaves the topics', async (t) => {
  const s = await topicServer(t);
  const paths = ['client-close', 'client-terminate', 'writeClose', 'closeWithError', 'closeAndClean', 'protocol-error'];
  const clients = [];
  for (let i = 0; i < paths.length; i++) clients.push(await wsClient(t, s.addr));
  await until(() => s.recs.length === paths.length, 3000, 'connections');
  const topicsSeenInOnClose = [];
  for (const [i, rec] of s.recs.entries()) {
    rec.conn.subscribe('all');
    rec.conn.subscribe(`only-${i}`);
  }
  s.up.onClose((c) => topicsSeenInOnClose.push(c.topics.length));
  t.equal(s.up.numSubscribers('all'), paths.length, 'all subscribed');
  clients[0].close(1000);
  clients[1].terminate();
  s.recs[2].conn.writeClose(1000);
  s.recs[3].conn.closeWithError(new Error('bye'));
  s.recs[4].conn.closeAndClean(new Error('reset'));
  clients[5]._socket.write(Buffer.from([0x83, 0x80, 0, 0, 0, 0])); // reserved opcode: 1002
  await until(() => topicsSeenInOnClose.length === paths.length, 5000, 'every onClose');
  t.same(topicsSeenInOnClose, paths.map(() => 2), 'onClose still sees the topics');
  t.equal(s.up.numSubscribers('all'), 0, 'nobody left on the shared topic');
  for (let i = 0; i < paths.length; i++) t.equal(s.up.numSubscribers(`only-${i}`), 0, `${paths[i]}: left its own topic`);
  t.same(s.recs.map((r) => r.conn.topics), paths.map(() => []), 'topics empty after onClose');

  // The engine stopping: 1001, and the topics are left.
  const last = await wsClient(t, s.addr);
  await until(() => s.recs.length === paths.length + 1, 3000, 'one more');
  s.recs.at(-1).conn.subscribe('all');
  await s.engine.stop();
  t.equal(s.up.numSubscribers('all'), 0, 'engine stop: left');
  t.equal(last.readyState === WebSocket.OPEN, false, 'the client was closed');
});

t.test('raw TCP topics: Conn.subscribe, Engine.publish, Conn.publish, the close', async (t) => {
  const opened = [];
  const closedTopics = [];
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    ...testIoMode(),
    onOpen: (c) => {
      opened.push(c);
      c.subscribe('ticks');
    },
    onData: (c, data) => c.publish('ticks', Buffer.from(data)),
    onClose: (c) => closedTopics.push(c.topics),
  });
  await engine.start();
  t.teardown(() => engine.stop());
  const [host, port] = engine.addresses()[0].split(':');
  const socks = [];
  for (let i = 0; i < 3; i++) {
    const s = net.connect({ host, port: Number(port) });
    s.got = '';
    s.setEncoding('latin1');
    s.on('data', (d) => (s.got += d));
    t.teardown(() => s.destroy());
    socks.push(s);
  }
  await until(() => opened.length === 3, 3000, 'three connections');
  t.equal(engine.numSubscribers('ticks'), 3, 'three subscribers');
  t.equal(engine.publish('ticks', 'A'), 3, 'engine.publish');
  const big = Buffer.alloc(100_000, 66); // a large one: shared by reference
  engine.publish('ticks', big);
  await until(() => socks.every((s) => s.got.length === 100_001), 3000, 'both messages');
  socks[0].write('C');
  await until(() => socks[1].got.length === 100_002 && socks[2].got.length === 100_002, 3000, 'C at the others');
  await sleep(30);
  t.equal(socks[0].got.length, 100_001, 'the publishing connection skipped');
  t.ok(socks.every((s) => s.got.startsWith('AB') && s.got.slice(1, 100_001) === big.toString('latin1')), 'in order, whole');
  t.ok(socks[1].got.endsWith('C') && socks[2].got.endsWith('C'), 'C last');
  socks[0].destroy();
  await until(() => closedTopics.length === 1, 3000, 'onClose');
  t.same(closedTopics[0], ['ticks'], 'onClose still sees its topics');
  t.equal(engine.numSubscribers('ticks'), 2, 'and then left');
});

t.test('the adapter contract: first/last subscriber, publishes out and in, origin, a throwing adapter', async (t) => {
  // Two servers in this process joined by a tiny in-memory bus: a real
  // adapter (not a stand-in for one), the simplest the interface allows.
  const calls = [];
  const bus = new Set();
  function busAdapter(name, { deliverLater = false, throwOn } = {}) {
    const self = {
      name,
      deliver: undefined,
      topics: new Set(),
      attach(deliver) {
        calls.push([name, 'attach']);
        self.deliver = deliver;
        bus.add(self);
      },
      subscribe(topic) {
        calls.push([name, 'subscribe', topic]);
        if (throwOn === 'subscribe') throw new Error('adapter down');
        self.topics.add(topic);
      },
      unsubscribe(topic) {
        calls.push([name, 'unsubscribe', topic]);
        self.topics.delete(topic);
      },
      publish(topic, data, type, origin) {
        if (throwOn === 'publish') throw new Error('adapter down');
        for (const other of bus) {
          if (other === self && !deliverLater) continue;
          if (!other.topics.has(topic)) continue;
          const o = other === self ? origin : undefined;
          setImmediate(() => other.deliver(topic, Buffer.from(data), type, o));
        }
        return deliverLater;
      },
      async close() {
        calls.push([name, 'close']);
        bus.delete(self);
      },
    };
    return self;
  }
  const errors = [];
  const one = await topicServer(t, { pubsub: busAdapter('one') });
  const two = await topicServer(t, { pubsub: busAdapter('two', { deliverLater: true }) });
  const three = await topicServer(t, { pubsub: busAdapter('three', { throwOn: 'subscribe' }), topics: { onPubSubError: (err, during) => errors.push([during, err.message]) } });
  const a = await wsClient(t, one.addr);
  const b1 = await wsClient(t, two.addr);
  const b2 = await wsClient(t, two.addr);
  const c = await wsClient(t, three.addr);
  await until(() => one.recs.length === 1 && two.recs.length === 2 && three.recs.length === 1, 3000, 'connections');
  one.recs[0].conn.subscribe('x');
  two.recs[0].conn.subscribe('x');
  two.recs[1].conn.subscribe('x');
  three.recs[0].conn.subscribe('x');
  t.same(
    calls.filter(([, op]) => op === 'subscribe'),
    [
      ['one', 'subscribe', 'x'],
      ['two', 'subscribe', 'x'],
      ['three', 'subscribe', 'x'],
    ],
    'subscribe() once per topic per server, at its first subscriber',
  );
  t.same(errors, [['subscribe', 'adapter down']], "the throwing adapter's error reported, the server goes on");
  t.equal(three.up.numSubscribers('x'), 1, 'the local subscription holds');

  t.equal(one.up.publish('x', 'from-one'), 1, 'publish on one: delivered locally now (adapter returned false)');
  t.equal(two.up.publish('x', 'from-two'), 0, 'publish on two: the adapter delivers it (returned true)');
  b1.send('x:from-b1'); // two: excluded by origin, through the adapter's round trip
  await until(() => a.got.length === 3 && b1.got.length === 2 && b2.got.length === 3, 3000, 'deliveries');
  await sleep(50);
  t.same(a.got.map(([, d]) => d).sort(), ['from-b1', 'from-one', 'from-two'], 'one: its own and both of two');
  t.same(b2.got.map(([, d]) => d).sort(), ['from-b1', 'from-one', 'from-two'], 'two: every message once');
  t.same(b1.got.map(([, d]) => d).sort(), ['from-one', 'from-two'], 'the publisher on two skipped via origin');
  t.same(c.got.map(([, d]) => d), [], 'three never subscribed on the bus: nothing from elsewhere');

  // three's adapter throws on publish too: still delivered locally.
  const four = await topicServer(t, { pubsub: busAdapter('four', { throwOn: 'publish' }), topics: { onPubSubError: (err, during) => errors.push([during, err.message]) } });
  const d = await wsClient(t, four.addr);
  await until(() => four.recs.length === 1, 3000, 'connection');
  four.recs[0].conn.subscribe('y');
  t.equal(four.up.publish('y', 'local'), 1, 'a throwing publish still delivers locally');
  await until(() => d.got.length === 1, 3000, 'local delivery');
  t.same(errors.at(-1), ['publish', 'adapter down'], 'reported');

  // The last subscriber leaving unsubscribes; the engine stopping closes the adapter.
  two.recs[0].conn.unsubscribe('x');
  t.notOk(calls.some(([n, op]) => n === 'two' && op === 'unsubscribe'), 'not while one subscriber is left');
  two.recs[1].conn.unsubscribe('x');
  t.ok(calls.some(([n, op, topic]) => n === 'two' && op === 'unsubscribe' && topic === 'x'), 'unsubscribe() when the last one left');
  await two.engine.stop();
  t.ok(calls.some(([n, op]) => n === 'two' && op === 'close'), 'close() when the engine stopped');
});

t.test('limits and misuse', async (t) => {
  const s = await topicServer(t, { topics: { maxTopicLength: 8, maxTopicsPerConnection: 3 } });
  await wsClient(t, s.addr);
  await until(() => s.recs.length === 1, 3000, 'connection');
  const c = s.recs[0].conn;
  t.throws(() => c.subscribe(''), RangeError, 'empty topic');
  t.throws(() => c.subscribe('123456789'), /1 to 8 characters/, 'too long');
  t.throws(() => c.subscribe(42), TypeError, 'not a string');
  t.throws(() => s.up.publish(null, 'x'), TypeError, 'publish: topic not a string');
  t.throws(() => s.up.publish('a', 42), TypeError, 'publish: data not bytes');
  t.throws(() => s.up.publish('a', 'x', 'json'), TypeError, 'publish: bad type');
  t.ok(c.subscribe('a') && c.subscribe('b') && c.subscribe('c'), 'three topics');
  t.equal(c.subscribe('a'), false, 'again: false');
  t.throws(() => c.subscribe('d'), /at most 3 topics/, 'a fourth: RangeError');
  t.throws(() => new Upgrader({ topics: { slowSubscriber: 'drop' } }), /'close' or 'skip'/, 'bad policy');
  t.throws(() => new Upgrader({ topics: { maxTopicLenght: 3 } }), /did you mean 'maxTopicLength'/, 'unknown option');
  t.throws(() => new Upgrader({ pubsub: {} }), /PubSubAdapter/, 'not an adapter');
  t.throws(() => new Engine({ pubsub: { publish() {} } }), /PubSubAdapter/, 'not an adapter (engine)');
  // A client's connection has no topics.
  const client = await dial(`ws://${s.addr}/`);
  t.teardown(() => client.closeAndClean());
  t.throws(() => client.subscribe('a'), /topics are a server's/, 'client connections cannot subscribe');
});
