// The I/O modes from the command line: `netloop compare` (every row of the
// close contract, observed against each mode and checked), and
// `netloop echo --proto ws --mode M --log-close` watched with the `ws`
// package's client.
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { runCli } from './helpers/cli.js';
import { until } from './helpers/engine.js';

t.setTimeout(60000);

const run = runCli;

t.test('netloop compare: the observed table matches the contract in every mode', async (t) => {
  const r = run(['compare']);
  const code = await r.exited;
  t.equal(code, 0, `exit 0 (stderr: ${r.err.slice(-300)})`);
  t.match(r.out, /Every cell matches the contract\./);
  t.notMatch(r.out, /✗/, 'no cell marked');
  const rows = r.out.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| event'));
  t.equal(rows.length, 25, 'every row of the contract was played, the TLS rows included');
  const cells = (event) => rows.find((l) => l.startsWith(`| ${event} |`))?.split(' | ');
  // Observed cells, spot-checked against the table in DESIGN.md.
  t.same(cells('peer sends close 1000')?.slice(1, 5), ['null', 'NetClosedError "use of closed network connection"', 'NetClosedError "use of closed network connection"', 'null']);
  t.same(cells('peer sends close 1000 and FIN at once')?.slice(1, 5), ['null', 'EOFError "EOF"', 'EOFError "EOF"', 'null']);
  t.same(cells('read deadline expired')?.slice(1, 3), ['TimeoutError "read timeout"', 'TimeoutError "i/o timeout"']);
  t.equal(cells('TCP reset')?.[1], 'SysError ECONNRESET');
  t.equal(cells('server closeAndClean(e)')?.[6], 'RST');
  // The TLS rows (docs/tls.md's contract), in every mode column: onClose x4, handler, wire, closeInfo.
  const every = (v) => [v, v, v, v];
  const never = (code) => `never opened: onTLSError(TLSHandshakeError ${code})`;
  const row = (event) => cells(event)?.slice(1, 8).map((c) => c.replace(/ \|$/, ''));
  t.same(row('TLS: peer sends close 1000, then close_notify'), ['null', 'NetClosedError "use of closed network connection"', 'NetClosedError "use of closed network connection"', 'null', '(1000, "bye")', 'close 1000, FIN', '1000 clean peer']);
  t.same(row('TLS: FIN without close_notify (truncation)'), [...every('TLSTruncationError ERR_TLS_TRUNCATED'), 'not called', 'FIN', '1006 network']);
  t.same(row('TLS: a bad record after the handshake'), [...every('TLSError ERR_TLS_PROTOCOL'), 'not called', 'alert, FIN', '1006 network']);
  t.same(row('TLS: the handshake fails (no common version)'), [...every(never('ERR_TLS_HANDSHAKE')), 'not called', 'alert', '-']);
  t.same(row('TLS: not TLS at all (plain HTTP)'), [...every(never('ERR_TLS_HANDSHAKE')), 'not called', 'FIN', '-']);
  t.same(row('TLS: the handshake times out (200 ms here)'), [...every(never('ERR_TLS_HANDSHAKE_TIMEOUT')), 'not called', 'FIN', '-']);
});

t.test('compare --tls-cert/--tls-key: the TLS rows with the given certificate', async (t) => {
  const { certs } = await import('./helpers/certs.js');
  const c = certs();
  const { compareModes, CLOSE_EVENTS } = await import('../dist/cli/index.js');
  const events = CLOSE_EVENTS.filter((e) => e.startsWith('TLS: '));
  t.equal(events.length, 6);
  const rows = await compareModes(undefined, { events, modes: ['nonblocking'], tls: c.server });
  t.same(rows.map((r) => r.event), events);
  t.same(rows.filter((r) => [...r.onClose, r.handler, r.wire, r.info].some((x) => !x.ok)).map((r) => r.event), [], 'every cell as the contract says');
  const bad = run(['compare', '--tls-cert', `${c.dir}/server.crt`]);
  t.equal(await bad.exited, 2, '--tls-cert without --tls-key');
  t.match(bad.err, /--tls-cert and --tls-key go together/);
});

async function listening(r) {
  await until(() => /listening on /.test(r.out) || r.code !== undefined, 10000, 'the server to listen');
  const m = /listening on ([\d.]+:\d+)/.exec(r.out);
  if (m === null) throw new Error(`no address: ${r.out} ${r.err}`);
  return m[1];
}

const lines = (r) =>
  r.out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));

async function wsClient(addr) {
  const ws = new WebSocket(`ws://${addr}/`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

t.test('netloop echo --proto ws --mode blocking --log-close: one JSON line per close', async (t) => {
  const r = run(['echo', '--proto', 'ws', '--port', '0', '--mode', 'blocking', '--log-close']);
  t.teardown(() => r.p.kill('SIGKILL'));
  const addr = await listening(r);
  const a = await wsClient(addr);
  a.send('hello');
  const echoed = await new Promise((resolve) => a.once('message', (d, isBinary) => resolve([d.toString(), isBinary])));
  t.same(echoed, ['hello', false], 'echoed as text');
  a.close(1000, 'bye');
  await new Promise((resolve) => a.once('close', resolve));
  await until(() => lines(r).length === 1, 5000, 'the first log line');
  const first = lines(r)[0];
  t.match(first, {
    mode: 'blocking',
    onClose: { class: 'NetClosedError', code: 'NETLOOP_CLOSED', message: 'use of closed network connection' },
    closeHandler: { code: 1000, reason: 'bye' },
    closeInfo: { code: 1000, reason: 'bye', wasClean: true, initiator: 'peer' },
  });
  t.ok(!Number.isNaN(Date.parse(first.time)), 'a timestamp');
  const b = await wsClient(addr);
  b.terminate(); // TCP closed without a close frame
  await until(() => lines(r).length === 2, 5000, 'the second log line');
  const second = lines(r)[1];
  t.ok(['EOFError', 'SysError'].includes(second.onClose.class), `a dropped connection: ${second.onClose.class}`);
  t.equal(second.closeHandler, null, 'no close frame, no close handler call');
  t.match(second.closeInfo, { code: 1006, wasClean: false, initiator: 'network' });
  r.p.kill('SIGTERM');
  t.equal(await r.exited, 0, 'a clean stop on SIGTERM');
});

t.test('netloop echo --mode mixed --max-blocking 1: the first connection blocking, the next non-blocking', async (t) => {
  const r = run(['echo', '--proto', 'ws', '--port', '0', '--mode', 'mixed', '--max-blocking', '1', '--log-close']);
  t.teardown(() => r.p.kill('SIGKILL'));
  const addr = await listening(r);
  const a = await wsClient(addr);
  const b = await wsClient(addr);
  b.close(1000);
  await until(() => lines(r).length === 1, 5000, 'b closed');
  a.close(1000);
  await until(() => lines(r).length === 2, 5000, 'a closed');
  const [lb, la] = lines(r);
  t.match(lb, { mode: 'nonblocking', onClose: null, closeHandler: { code: 1000 } });
  t.match(la, { mode: 'blocking', onClose: { class: 'NetClosedError' }, closeHandler: { code: 1000 } });
  r.p.kill('SIGTERM');
  t.equal(await r.exited, 0);
});

t.test('netloop echo --proto tcp --mode blocking --log-close', async (t) => {
  const r = run(['echo', '--proto', 'tcp', '--port', '0', '--mode', 'blocking', '--log-close']);
  t.teardown(() => r.p.kill('SIGKILL'));
  const addr = await listening(r);
  const net = await import('node:net');
  const [host, port] = addr.split(':');
  const s = net.connect(Number(port), host);
  await new Promise((resolve) => s.once('connect', resolve));
  s.end();
  await until(() => lines(r).length === 1, 5000, 'the log line');
  t.match(lines(r)[0], { mode: 'blocking', onClose: { class: 'EOFError', message: 'EOF' }, closeHandler: null });
  t.notOk('closeInfo' in lines(r)[0], 'no closeInfo for raw TCP');
  r.p.kill('SIGTERM');
  t.equal(await r.exited, 0);
});

t.test('netloop echo --mode: a wrong value is refused with exit 2', async (t) => {
  const r = run(['echo', '--mode', 'threads']);
  t.equal(await r.exited, 2);
  t.match(r.err, /--mode threads: expected nonblocking, blocking or mixed/);
});

t.test('examples/mode-comparison.ts (compiled to dist/examples/) prints the same verdict', async (t) => {
  const file = fileURLToPath(new URL('../dist/examples/mode-comparison.js', import.meta.url));
  const p = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  const code = await new Promise((resolve) => p.on('exit', resolve));
  t.equal(code, 0);
  t.match(out, /25 rows in \d+ ms; every cell matches the contract/);
});
