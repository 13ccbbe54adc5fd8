// 10,000 concurrent connections, opened and closed, with no descriptor left
// behind. The clients are Node's own net sockets in a child process: server
// and clients in one process would pass the 20,000 descriptor limit.
import t from 'tap';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Engine, EOFError, NetClosedError } from '../dist/index.js';
import { fdCount, sleep } from './helpers/engine.js';

const N = 10000;

async function until(cond, ms, what) {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

// The client process. Opens N connections with at most PARALLEL connects in
// flight (so that the listen backlog never overflows), retrying refused, reset
// or timed-out connects a bounded number of times; each connection sends a
// line and checks its exact echo. All N stay open until the parent says "go"
// on stdin. Then, in mode "client-close", every socket ends its side and
// waits for the server's FIN; in mode "server-close" the server closes them
// and every socket must see 'end'. Progress goes to stdout as JSON lines.
const CHILD = String.raw`
import net from 'node:net';
const port = Number(process.env.PORT);
const N = Number(process.env.N);
const MODE = process.env.MODE;
const PARALLEL = 500;
const RETRY = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'ECONNRESET']);
const send = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const sockets = [];
const errors = [];
let retries = 0;

function open(i, attempt) {
  return new Promise((resolve, reject) => {
    const msg = 'hello ' + i + '\n';
    const s = net.connect({ port, host: '127.0.0.1' });
    let got = '';
    let echoed = false;
    s.st = { ended: false, error: null, closed: false };
    s.setEncoding('latin1');
    s.on('connect', () => s.write(msg));
    s.on('data', (d) => {
      got += d;
      if (!echoed && got.length >= msg.length) {
        echoed = true;
        if (got === msg) resolve(s);
        else reject(new Error('connection ' + i + ': bad echo ' + JSON.stringify(got)));
      }
    });
    s.on('end', () => (s.st.ended = true));
    s.on('close', () => (s.st.closed = true));
    s.on('error', (e) => {
      s.st.error = e.code ?? e.message;
      if (echoed) return;
      s.destroy();
      if (RETRY.has(e.code) && attempt < 5) {
        retries++;
        setTimeout(() => open(i, attempt + 1).then(resolve, reject), 20 * (attempt + 1));
      } else {
        reject(new Error('connection ' + i + ': ' + (e.code ?? e.message)));
      }
    });
  });
}

let next = 0;
async function worker() {
  while (next < N) {
    const i = next++;
    try {
      sockets[i] = await open(i, 0);
    } catch (e) {
      errors.push(e.message);
    }
  }
}

const t0 = Date.now();
await Promise.all(Array.from({ length: PARALLEL }, worker));
const open_ = sockets.filter(Boolean);
send({ type: 'ready', opened: open_.length, errors: errors.slice(0, 5), errorCount: errors.length, retries, ms: Date.now() - t0 });

await new Promise((resolve) => process.stdin.once('data', resolve));
process.stdin.pause();
const t1 = Date.now();
if (MODE === 'client-close') for (const s of open_) s.end();
const deadline = Date.now() + 15000;
while (open_.some((s) => !s.st.closed) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
const report = { type: 'done', closed: 0, ended: 0, errors: {}, ms: Date.now() - t1 };
for (const s of open_) {
  if (s.st.closed) report.closed++;
  if (s.st.ended) report.ended++;
  if (s.st.error) report.errors[s.st.error] = (report.errors[s.st.error] ?? 0) + 1;
  s.destroy();
}
send(report);
`;

function runChild(port, mode, onReady) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
    env: { ...process.env, PORT: String(port), N: String(N), MODE: mode, NODE_OPTIONS: '' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const messages = [];
  let stderr = '';
  let buf = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const m = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      messages.push(m);
      if (m.type === 'ready') onReady(m, () => child.stdin.end('go\n'));
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return { child, messages, exited, stderr: () => stderr };
}

function withTimeout(promise, ms, what, onTimeout) {
  let timer;
  return Promise.race([
    promise,
    new Promise((resolve, reject) => {
      timer = setTimeout(() => {
        onTimeout?.();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// libuv creates some descriptors once, on first use (the signal pipe that
// child processes need): spawn one child before counting anything.
t.before(async () => {
  const c = spawn(process.execPath, ['-e', '0'], { stdio: ['pipe', 'pipe', 'pipe'] });
  await new Promise((resolve) => c.on('close', resolve));
});

for (const mode of ['client-close', 'server-close']) {
  t.test(`${N} concurrent connections, ${mode === 'client-close' ? 'the clients close' : 'the server closes'}: no descriptor left behind`, async (t) => {
    const opens = [];
    const closes = new Map();
    let closeErrs = { null: 0, EOFError: 0, other: [] };
    let writeInCloseOk = 0;
    let echoed = 0;
    let peakOnline = 0;
    const fdsBefore = fdCount();
    const engine = new Engine({
      addrs: ['127.0.0.1:0'],
      backlog: 4096,
      onOpen: (conn) => opens.push(conn),
      onData(conn, data) {
        echoed += data.length;
        conn.write(data);
      },
      onClose(conn, err) {
        closes.set(conn, (closes.get(conn) ?? 0) + 1);
        if (err === null) closeErrs.null++;
        else if (err instanceof EOFError) closeErrs.EOFError++;
        else if (closeErrs.other.length < 5) closeErrs.other.push(String(err));
        try {
          conn.write('late');
        } catch (e) {
          if (e instanceof NetClosedError) writeInCloseOk++;
        }
      },
    });
    await engine.start();
    const port = Number(engine.addresses()[0].split(':').pop());
    let ready;
    const run = runChild(port, mode, (m, go) => {
      ready = m;
      peakOnline = engine.stats().online;
      if (mode === 'server-close') for (const conn of opens) conn.close();
      go();
    });
    t.teardown(() => {
      run.child.kill('SIGKILL');
      return engine.stop();
    });
    const exit = await withTimeout(run.exited, 35000, 'the client process', () => run.child.kill('SIGKILL'));
    const done = run.messages.find((m) => m.type === 'done');
    t.equal(exit.code, 0, `the client process exited cleanly ${run.stderr().slice(0, 500)}`);
    t.ok(ready, 'the client process reported its connections');
    t.equal(ready?.opened, N, `the child opened and echo-checked ${N} connections (${ready?.retries} connect retries, ` +
      `${ready?.ms} ms, errors ${JSON.stringify(ready?.errors)})`);
    t.equal(peakOnline, N, `all ${N} were online at once`);
    t.equal(done?.closed, N, `every client socket closed (${done?.ms} ms)`);
    t.equal(done?.ended, N, `every client saw the server's FIN (errors ${JSON.stringify(done?.errors)})`);

    await until(() => closes.size === N, 10000, `${N} onClose calls`).catch((e) => t.fail(e.message));
    t.equal(opens.length, N, `onOpen called ${N} times`);
    t.equal(closes.size, N, `onClose called for ${N} connections`);
    t.ok([...closes.values()].every((n) => n === 1), 'onClose called exactly once per connection');
    if (mode === 'client-close') {
      t.equal(closeErrs.EOFError, N, `every onClose got EOFError (others: ${closeErrs.other.join('; ')})`);
    } else {
      t.equal(closeErrs.null, N, `every onClose got null (others: ${closeErrs.other.join('; ')})`);
    }
    t.equal(writeInCloseOk, N, 'conn.write() inside onClose throws NetClosedError');
    const st = engine.stats();
    t.equal(st.online, 0, 'stats().online back to 0');
    t.equal(st.accepted, N, 'stats().accepted');
    t.equal(st.closed, N, 'stats().closed');
    t.equal(st.rejected, 0, 'stats().rejected 0');
    t.equal(st.queuedBytes, 0, 'stats().queuedBytes 0');
    t.equal(echoed, st.bytesIn, 'every byte read was delivered');
    t.equal(st.bytesOut, st.bytesIn, 'and echoed');
    await withTimeout(engine.stop(), 5000, 'stop()');
    t.equal(fdCount(), fdsBefore, 'no descriptor left behind');
  });
}
