// `npm start` (`netloop demo`) without a browser: the command it runs, the page over plain HTTP,
// and the page's WebSocket protocol (chat, names, figures, the close lab, leaving) spoken by the
// `ws` package's client, so that a failure reads as a protocol message rather than a screenshot.
// test/demo-chromium.test.js drives the page itself. Real sockets on loopback; the server is a
// child process, stopped with SIGINT and waited for.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { until } from './helpers/engine.js';

t.setTimeout(60000);
const root = fileURLToPath(new URL('..', import.meta.url));
const NET_CLOSED = 'NetClosedError "use of closed network connection"';

function request(port, method, path = '/') {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A page's WebSocket, as the `ws` client: every message parsed and kept; next() waits for one. */
async function member(url, name, headers = {}) {
  const ws = new WebSocket(`${url}?name=${encodeURIComponent(name)}`, { headers });
  const m = { ws, got: [], closed: null };
  ws.on('message', (data, isBinary) => m.got.push(isBinary ? { type: 'binary' } : JSON.parse(data.toString())));
  ws.on('close', (code, reason) => (m.closed = { code, reason: reason.toString() }));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  let seen = 0;
  /** The next message of `type` (after the last one next() returned) for which pred holds. */
  m.next = async (type, pred = () => true, ms = 8000) => {
    let found;
    await until(() => (found = m.got.slice(seen).find((x) => x.type === type && pred(x))) !== undefined, ms, `a "${type}" message for ${name}`);
    seen = m.got.indexOf(found) + 1;
    return found;
  };
  m.send = (msg) => ws.send(JSON.stringify(msg));
  return m;
}

t.test('npm start runs netloop demo on 127.0.0.1:8080', async (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  t.equal(pkg.scripts.start, 'node dist/cli/main.js demo --host 127.0.0.1 --port 8080');
});

t.test('netloop demo: the page over HTTP, chat, figures, the close lab, leaving', async (t) => {
  // npm start's own command on a free port (8080 may be taken on a shared machine), with one
  // reader thread: the first page gets it, the second the poller.
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  const [node, ...args] = pkg.scripts.start.split(' ');
  t.equal(node, 'node');
  const portArg = args.indexOf('--port');
  args[portArg + 1] = '0';
  const p = spawn(process.execPath, [...args, '--mode', 'mixed', '--max-blocking', '1'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const r = { out: '', err: '', code: undefined };
  p.stdout.setEncoding('utf8').on('data', (d) => (r.out += d));
  p.stderr.setEncoding('utf8').on('data', (d) => (r.err += d));
  const exited = new Promise((resolve) => p.on('exit', (code) => resolve((r.code = code))));
  t.teardown(async () => {
    if (r.code === undefined) p.kill('SIGKILL');
    await exited;
  });
  await until(() => /Open .* in a browser/.test(r.out) || r.code !== undefined, 10000, 'the demo to print its URL');
  const m = /^netloop demo listening on (http:\/\/127\.0\.0\.1:(\d+)\/) \(WebSocket (ws:\/\/127\.0\.0\.1:\d+\/ws), I\/O mode mixed, reader threads for 1 page\(s\), the poller beyond\)$/m.exec(r.out);
  if (!t.ok(m, 'prints the page URL and the WebSocket URL', { out: r.out, err: r.err })) return;
  const [, pageUrl, portText, wsUrl] = m;
  const port = Number(portText);
  t.match(r.out, `Open ${pageUrl} in a browser`);

  await t.test('GET / is the page; other paths 404, other methods 405', async (t) => {
    const page = await request(port, 'GET', '/');
    t.equal(page.status, 200);
    t.equal(page.headers['content-type'], 'text/html; charset=utf-8');
    t.match(page.headers['content-security-policy'], "default-src 'none'", 'the page may load nothing from elsewhere');
    t.match(page.body, '<title>netloop demo</title>');
    for (const id of ['log', 'send-form', 'fig-conns', 'fig-messages', 'fig-queued', 'fig-rss', 'lab-form', 'lab-table']) t.match(page.body, `id="${id}"`, `has #${id}`);
    t.notMatch(page.body, /(src|href)="https?:/, 'no external resource');
    t.equal((await request(port, 'GET', '/?x=1')).status, 200, 'a query is still the page');
    const head = await request(port, 'HEAD', '/');
    t.equal(head.status, 200);
    t.equal(head.body, '');
    t.equal((await request(port, 'GET', '/favicon.ico')).status, 404);
    const post = await request(port, 'POST', '/');
    t.equal(post.status, 405);
    t.equal(post.headers.allow, 'GET, HEAD');
  });

  await t.test('upgrades: only /ws, only from the page\'s own origin', async (t) => {
    const refused = (url, headers) =>
      new Promise((resolve) => {
        const ws = new WebSocket(url, { headers });
        ws.on('unexpected-response', (_req, res) => {
          resolve(res.statusCode);
          ws.terminate();
        });
        ws.on('open', () => resolve('open'));
        ws.on('error', () => {});
      });
    t.equal(await refused(`ws://127.0.0.1:${port}/other`), 404);
    t.equal(await refused(wsUrl, { Origin: 'http://elsewhere.example' }), 403);
    const same = await member(wsUrl, 'same-origin', { Origin: `http://127.0.0.1:${port}` });
    await same.next('hello');
    same.ws.close(1000);
    await until(() => same.closed !== null, 5000, 'the close');
  });

  const alice = await member(wsUrl, 'alice');
  const hello = await alice.next('hello');
  t.match(hello, { name: 'alice', ioMode: 'mixed', maxBlockingOnline: 1, conn: 'blocking' }, 'the first page has the reader thread');
  t.ok(hello.events.includes('peer sends close 1000') && hello.events.includes('read deadline expired'), 'the lab offers the rows of the contract');
  t.same(hello.columns.map((c) => c.name), ['non-blocking', 'blocking', 'mixed, under N', 'mixed, over N']);
  t.equal(hello.featured.length, 6);

  const bob = await member(wsUrl, 'bob');
  t.match(await bob.next('hello'), { name: 'bob', conn: 'nonblocking' }, 'the second page, past maxBlockingOnline, the poller');
  t.match(await alice.next('joined', (j) => j.name === 'bob'), { conn: 'nonblocking', online: 2 }, 'alice sees bob join');

  await t.test('chat: broadcast to every page, history for newcomers, names', async (t) => {
    bob.send({ type: 'chat', text: '  hello alice  ' });
    const seen = await alice.next('chat');
    t.match(seen, { from: 'bob', text: 'hello alice' }, 'alice gets bob\'s line, trimmed');
    t.match(await bob.next('chat'), { from: 'bob', text: 'hello alice' }, 'and bob his own');
    t.type(seen.at, 'number');
    alice.send({ type: 'name', name: 'Alice\u202e\n' });
    t.match(await bob.next('renamed'), { from: 'alice', to: 'Alice' }, 'a rename is told to everyone, control characters removed');
    alice.send({ type: 'chat', text: 'x'.repeat(600) });
    t.equal((await bob.next('chat')).text.length, 500, 'a line is cut at 500 characters');
    const carol = await member(wsUrl, '');
    const ch = await carol.next('hello');
    t.match(ch.name, /^guest-\d+$/, 'no name: a guest name');
    t.same(ch.history.map((l) => l.from), ['bob', 'Alice'], 'the newcomer gets the lines so far');
    carol.ws.close(1000);
    await alice.next('left', (l) => l.name === ch.name);
    alice.send({ type: 'dance' });
    t.match(await alice.next('error'), { message: 'unknown type "dance"' });
    alice.ws.send('not json');
    t.match(await alice.next('error'), { message: 'expected a JSON object with a type' });
  });

  await t.test('figures: every second, connections per I/O mode', async (t) => {
    const a = await alice.next('stats');
    const b = await alice.next('stats');
    t.ok(b.at > a.at, 'a second report, later');
    t.match(b, { online: 2, blocking: 1, nonblocking: 1, queuedBytes: 0 });
    t.ok(b.rss > 1 << 20 && b.heapUsed > 0, 'memory figures');
    t.ok(b.messagesOutPerSec >= 2, `messages out per second counted (${b.messagesOutPerSec})`);
  });

  await t.test('the close lab: two rows of the contract in the three modes', async (t) => {
    alice.send({ type: 'lab', id: 7, events: ['read deadline expired', 'peer sends close 1000'], modes: ['nonblocking', 'blocking', 'mixed'] });
    t.match(await alice.next('lab-queued'), { id: 7, ahead: 0 });
    const rows = [await alice.next('lab-row'), await alice.next('lab-row')];
    t.match(await alice.next('lab-done', () => true, 20000), { id: 7 });
    t.same(rows.map((x) => x.row.event), ['peer sends close 1000', 'read deadline expired'], 'in the contract\'s order');
    const onClose = (row) => row.columns.map((c) => c.onClose.observed);
    // DESIGN.md's table: columns non-blocking, blocking, mixed under N (a thread), over N (the poller).
    t.same(onClose(rows[0].row), ['null', NET_CLOSED, NET_CLOSED, 'null']);
    t.same(onClose(rows[1].row), ['TimeoutError "read timeout"', 'TimeoutError "i/o timeout"', 'TimeoutError "i/o timeout"', 'TimeoutError "read timeout"']);
    for (const c of rows[0].row.columns) t.match(c, { handler: { observed: '(1000, "bye")', ok: true }, info: { observed: '1000 clean peer', ok: true }, wire: { observed: 'close 1000, FIN', ok: true } }, c.column);
    for (const c of rows[1].row.columns) t.match(c, { handler: { observed: 'not called', ok: true }, info: { observed: '1006 network', ok: true } }, c.column);
    t.ok(rows.every((x) => x.row.columns.every((c) => c.onClose.ok)), 'every onClose cell is the contract\'s');

    alice.send({ type: 'lab', id: 8, events: ['TCP reset'], modes: ['blocking'] });
    const only = await alice.next('lab-row', (x) => x.id === 8);
    t.same(only.row.columns.map((c) => [c.column, c.onClose.observed]), [['blocking', 'SysError ECONNRESET']], 'one mode asked, one column played');
    await alice.next('lab-done', (x) => x.id === 8, 20000);

    // Runs are played one at a time with four at most waiting: a sixth asked at once is refused.
    for (let id = 20; id < 26; id++) alice.send({ type: 'lab', id, events: ['TCP reset'], modes: ['nonblocking'] });
    const ahead = [];
    for (let id = 20; id < 25; id++) ahead.push((await alice.next('lab-queued', (x) => x.id === id)).ahead);
    t.same(ahead, [0, 1, 2, 3, 4], 'each told how many runs are ahead of it');
    t.match(await alice.next('lab-error', (x) => x.id === 25), { message: 'the lab is busy: try again in a few seconds' });
    await alice.next('lab-done', (x) => x.id === 24, 20000);

    alice.send({ type: 'lab', id: 9, events: ['no such row'], modes: ['blocking'] });
    t.match(await alice.next('lab-error'), { id: 9, message: 'unknown event "no such row"' });
    alice.send({ type: 'lab', id: 10, events: ['TCP reset'], modes: ['threads'] });
    t.match(await alice.next('lab-error'), { id: 10, message: 'unknown mode "threads"' });
  });

  await t.test('leaving: the others see who left and what onClose got', async (t) => {
    bob.ws.close(1000, 'bye');
    // bob was read by the poller: a peer's 1000 reaches onClose as null (DESIGN.md).
    t.match(await alice.next('left', (l) => l.name === 'bob'), { conn: 'nonblocking', online: 1, onClose: 'null', closeInfo: { code: 1000, wasClean: true, initiator: 'peer' } });
    t.match(await alice.next('stats'), { online: 1, blocking: 1, nonblocking: 0 });
  });

  p.kill('SIGINT');
  await until(() => alice.closed !== null, 8000, 'alice to be closed by the stop');
  t.equal(alice.closed.code, 1001, 'stopping says 1001 (going away) to the pages');
  t.equal(await exited, 0, 'exits 0 on SIGINT');
  t.match(r.out, 'netloop demo stopped');
  t.equal(r.err, '', 'nothing on stderr');
});

t.test('netloop demo: a port in use is a clear error', async (t) => {
  const taken = http.createServer();
  await new Promise((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const port = taken.address().port;
  const p = spawn(process.execPath, ['dist/cli/main.js', 'demo', '--port', String(port)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  p.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const code = await new Promise((resolve) => p.on('exit', resolve));
  t.equal(code, 1);
  t.match(err, `netloop demo: cannot listen on 127.0.0.1:${port}`);
  t.match(err, 'try --port 0');
});
