// `new Engine({ workers: N })`: N supervised worker processes, each running
// test/fixtures/pid-echo.js (which greets every connection with its pid) and
// its own engine on one port with SO_REUSEPORT. The test process is the
// primary. Checked with real clients (Node's net, the ws package): both
// workers serve, port 0 works, a killed worker is reported and restarted
// while the port keeps serving, stop() closes WebSockets with 1001 and
// leaves no process behind, a worker that cannot listen fails start(); and
// the CLI's `netloop echo --workers 2`.
import t from 'tap';
import net from 'node:net';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { Engine, SysError } from '../dist/index.js';
import { fdCount, sleep, until } from './helpers/engine.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/pid-echo.js', import.meta.url));
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

/** Whether a process exists and is not a zombie. */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const portOf = (addr) => Number(addr.split(':').pop());

function portIsFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (e) => resolve(e.code));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A supervised engine whose workers run the fixture; events recorded. */
function supervised(t, proto = 'tcp', supervisor = {}) {
  const ev = { listening: [], exits: [] };
  const engine = new Engine({
    addrs: ['127.0.0.1:0'],
    workers: 2,
    supervisor: {
      script: FIXTURE,
      args: [proto],
      execArgv: [],
      stopTimeout: 8000,
      onWorkerListening: (w) => ev.listening.push(w),
      onWorkerExit: (w) => ev.exits.push(w),
      ...supervisor,
    },
  });
  t.teardown(() => engine.stop());
  return { engine, ev };
}

/** A net client: reads the greeting "pid <n>\n", sends msg, checks the echo, ends. */
function tcpOnce(port, msg) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const r = { pid: 0, echo: '', error: null };
    let buf = '';
    s.setEncoding('latin1');
    s.on('data', (d) => {
      buf += d;
      if (r.pid === 0 && buf.includes('\n')) {
        const nl = buf.indexOf('\n');
        r.pid = Number(buf.slice(4, nl));
        buf = buf.slice(nl + 1);
        s.write(msg);
      }
      if (r.pid !== 0 && buf.length >= msg.length) {
        r.echo = buf;
        s.end();
      }
    });
    s.on('error', (e) => (r.error = e.code));
    s.on('close', () => resolve(r));
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
  });
}

/** A ws client: resolves once greeted, with the worker's pid; messages and the close are recorded. */
function wsClient(port) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    ws.st = { pid: 0, messages: [], close: null };
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? data : data.toString();
      if (ws.st.pid === 0) {
        ws.st.pid = Number(String(text).slice(4));
        resolve(ws);
      } else ws.st.messages.push(text);
    });
    ws.on('close', (code, reason) => (ws.st.close = { code, reason: reason.toString() }));
    ws.on('error', reject);
  });
}

t.test('two worker processes share one port chosen by the OS; both serve; stop() leaves nothing', async (t) => {
  const fdsBefore = fdCount();
  const { engine, ev } = supervised(t);
  t.equal(engine.role, 'primary', 'the engine in this process is the primary');
  t.equal(engine.running, false, 'not running before start()');
  await engine.start();
  t.equal(engine.running, true, 'running after start()');
  const addrs = engine.addresses();
  t.equal(addrs.length, 1, 'one address');
  const port = portOf(addrs[0]);
  t.not(port, 0, `port 0 became a concrete port (${addrs[0]})`);
  t.equal(ev.listening.length, 2, 'onWorkerListening for both workers when start() resolves');
  t.same(ev.listening.map((w) => w.addrs), [addrs, addrs], 'both listen on the same address');
  const pids = ev.listening.map((w) => w.pid).sort();
  t.equal(new Set(pids).size, 2, 'in two processes');
  t.notOk(pids.includes(process.pid), 'neither of them the primary');
  await t.rejects(engine.dial(addrs[0]), /primary/, 'dial() from the primary is refused');

  const N = 40;
  const results = await Promise.all(Array.from({ length: N }, (_, i) => tcpOnce(port, `hello ${i} ${'x'.repeat(i * 50)}`)));
  t.ok(results.every((r, i) => r.error === null && r.echo === `hello ${i} ${'x'.repeat(i * 50)}`), `all ${N} clients got their exact echo`);
  const seen = new Set(results.map((r) => r.pid));
  t.same([...seen].sort(), pids, `the connections reached both worker processes (${results.filter((r) => r.pid === pids[0]).length} + ${results.filter((r) => r.pid === pids[1]).length})`);

  const ws = await engine.workerStats();
  t.same(ws.map((w) => w.pid).sort(), pids, 'workerStats() answers for both workers');
  t.equal(ws.reduce((a, w) => a + w.accepted, 0), N, `their accepted counts add up to ${N}`);
  for (const w of ws) {
    t.equal(w.accepted, results.filter((r) => r.pid === w.pid).length, `worker ${w.id} counted the connections that greeted with its pid`);
  }
  t.equal(engine.stats().accepted, N, 'stats() in the primary sums the workers');

  await engine.stop();
  t.equal(engine.running, false, 'stopped');
  t.same(ev.exits.map((e) => [e.reason, e.code, e.restartIn]), [['stopped', 0, null], ['stopped', 0, null]], 'both workers stopped as asked and exited with code 0');
  t.same(pids.filter(alive), [], 'no worker process is left');
  t.equal(await portIsFree(port), true, 'the port is free');
  t.equal(engine.stats().accepted, N, 'stats() keeps the final counts');
  t.equal(engine.stats().online, 0, 'nothing online');
  t.equal(fdCount(), fdsBefore, 'no descriptor left behind in the primary');
});

t.test('WebSocket clients (ws) reach both workers; stop() closes them with 1001', async (t) => {
  const { engine, ev } = supervised(t, 'ws');
  await engine.start();
  const port = portOf(engine.addresses()[0]);
  const pids = ev.listening.map((w) => w.pid).sort();
  const clients = await Promise.all(Array.from({ length: 24 }, () => wsClient(port)));
  t.same([...new Set(clients.map((c) => c.st.pid))].sort(), pids, 'greeted by both worker processes');
  clients.forEach((c, i) => c.send(`msg ${i}`));
  await until(() => clients.every((c) => c.st.messages.length === 1), 5000, 'the echoes');
  t.ok(clients.every((c, i) => c.st.messages[0] === `msg ${i}`), 'every message echoed');
  t.equal((await engine.workerStats()).reduce((a, w) => a + w.online, 0), 24, 'workerStats(): 24 online');

  await engine.stop();
  await until(() => clients.every((c) => c.st.close !== null), 5000, 'the clients to see the close');
  t.same([...new Set(clients.map((c) => c.st.close.code))], [1001], 'every client got close 1001 (going away)');
  t.same(ev.exits.map((e) => e.reason), ['stopped', 'stopped'], 'both workers stopped');
  t.same(pids.filter(alive), [], 'no worker process is left');
});

t.test('a worker killed with SIGKILL is reported and restarted; the port keeps serving', async (t) => {
  // 300 ms before the restart: time enough to see the survivor serve alone.
  const { engine, ev } = supervised(t, 'tcp', { restartDelay: 300 });
  await engine.start();
  const port = portOf(engine.addresses()[0]);
  const [victim, survivor] = ev.listening;
  const held = await tcpOnce(port, 'warm up');
  t.ok(held.pid === victim.pid || held.pid === survivor.pid, 'served before the kill');

  process.kill(victim.pid, 'SIGKILL');
  await until(() => ev.exits.length === 1, 5000, 'onWorkerExit');
  const exit = ev.exits[0];
  t.match(exit, { id: victim.id, pid: victim.pid, code: null, signal: 'SIGKILL', reason: 'crashed', restartIn: 300 }, 'reported: killed by SIGKILL, restarting in 300 ms');
  const during = await Promise.all(Array.from({ length: 10 }, (_, i) => tcpOnce(port, `during ${i}`)));
  t.ok(during.every((r, i) => r.error === null && r.pid === survivor.pid && r.echo === `during ${i}`), 'meanwhile the survivor serves every connection');

  await until(() => ev.listening.length === 3, 5000, 'the restarted worker to listen');
  const reborn = ev.listening[2];
  t.match(reborn, { id: victim.id, restarts: 1 }, 'the worker was restarted with the same id');
  t.not(reborn.pid, victim.pid, `in a new process (${reborn.pid})`);
  t.notOk(alive(victim.pid), 'the killed process is gone (reaped)');
  const pids = new Set();
  const errors = [];
  for (let i = 0; i < 200 && pids.size < 2; i++) {
    const r = await tcpOnce(port, `after ${i}`);
    if (r.error !== null || r.echo !== `after ${i}`) errors.push(r.error ?? r.echo);
    pids.add(r.pid);
  }
  t.same(errors, [], 'every connection echoed');
  t.same([...pids].sort(), [survivor.pid, reborn.pid].sort(), 'afterwards both the survivor and the new worker serve');
  const ws = await engine.workerStats();
  t.same(ws.map((w) => [w.id, w.restarts]).sort(), [[1, 1], [2, 0]].sort(), 'workerStats() shows the restart');

  await engine.stop();
  t.same([victim.pid, survivor.pid, reborn.pid].filter(alive), [], 'stop() leaves no process behind');
  t.equal(ev.exits.length, 3, 'three exits reported in all');
});

t.test('a worker that keeps dying is restarted with a growing delay', async (t) => {
  const { engine, ev } = supervised(t, 'crashy');
  await engine.start();
  await t.rejects(
    new Engine({ addrs: ['127.0.0.1:0'], workers: 1, supervisor: { script: FIXTURE } }).start(),
    /another Engine with `workers` is running/,
    'one supervised engine per process at a time',
  );
  await until(() => ev.exits.length === 3, 8000, 'three deaths');
  t.same(ev.exits.map((e) => [e.id, e.code, e.reason, e.restartIn]), [
    [1, 3, 'crashed', 100],
    [1, 3, 'crashed', 200],
    [1, 3, 'crashed', 400],
  ], 'worker 1 exited with code 3 each time; the restart delay doubled');
  const survivor = ev.listening.find((w) => w.id === 2);
  t.ok(alive(survivor.pid), 'worker 2 was not disturbed');
  await engine.stop(); // during the pending restart
  const pids = [...new Set([...ev.listening, ...ev.exits].map((w) => w.pid))];
  await sleep(500);
  t.equal(ev.listening.filter((w) => w.id === 1).length, 3, 'no restart after stop()');
  t.same(pids.filter(alive), [], 'no worker process is left');
});

t.test('stop() while the workers start: start() rejects, nothing is left', async (t) => {
  const { engine, ev } = supervised(t);
  const starting = engine.start();
  await sleep(20);
  await engine.stop();
  await t.rejects(starting, /stop\(\) was called while the workers were starting/, 'start() rejected');
  t.equal(engine.running, false, 'not running');
  t.same(ev.exits.map((e) => e.pid).filter(alive), [], 'no worker process is left');
  t.equal(ev.exits.length, 1, 'the one forked worker (port 0: the first one alone) exited');
});

t.test('a worker that cannot listen fails start() with its error and leaves nothing', async (t) => {
  const blocker = net.createServer();
  await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => blocker.close());
  const port = blocker.address().port;
  const exits = [];
  const engine = new Engine({
    addrs: [`127.0.0.1:${port}`],
    workers: 2,
    supervisor: { script: FIXTURE, args: ['tcp'], execArgv: [], onWorkerExit: (w) => exits.push(w) },
  });
  const err = await engine.start().then(() => null, (e) => e);
  t.ok(err instanceof SysError, `start() rejected with a SysError (${err})`);
  t.equal(err?.code, 'EADDRINUSE', 'EADDRINUSE');
  t.equal(engine.running, false, 'not running');
  t.ok(exits.length === 2 && exits.some((e) => e.reason === 'start-failed'), 'both workers exited, one reported start-failed');
  t.same(exits.map((e) => e.pid).filter(alive), [], 'no worker process is left');
  await engine.stop();
});

t.test('misuse', async (t) => {
  t.throws(() => new Engine({ addrs: ['unix:/tmp/x.sock'], workers: 2 }), TypeError, 'a Unix socket cannot be shared');
  t.throws(() => new Engine({ workers: -1 }), TypeError, 'workers must be a count');
  t.throws(() => new Engine({ workers: 1.5 }), TypeError, 'an integer');
  t.throws(() => new Engine({ supervisor: {} }), TypeError, 'supervisor without workers');
  t.throws(() => new Engine({ workers: 2, supervisor: { restartDelay: -1 } }), TypeError, 'bad restartDelay');
  t.throws(() => new Engine({ workers: 2, supervisor: { onWorkerExit: 1 } }), TypeError, 'bad callback');
  t.equal(new Engine({ workers: 0 }).role, 'standalone', 'workers: 0 is a plain engine');
});

function runCli(args) {
  const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  p.st = { out: '', err: '', exit: undefined };
  p.stdout.on('data', (d) => (p.st.out += d));
  p.stderr.on('data', (d) => (p.st.err += d));
  p.on('exit', (code, signal) => (p.st.exit = { code, signal }));
  return p;
}

async function cliListening(t, p) {
  t.teardown(() => p.st.exit === undefined && p.kill('SIGKILL'));
  await until(() => /listening on/.test(p.st.out) || p.st.exit !== undefined, 10000, 'the CLI to listen');
  const m = /listening on 127\.0\.0\.1:(\d+) \(2 worker processes, pids (\d+), (\d+)\)/.exec(p.st.out);
  t.ok(m, `the CLI printed its address and its workers (${p.st.out.trim()} ${p.st.err.trim()})`);
  return { port: Number(m[1]), pids: [Number(m[2]), Number(m[3])] };
}

t.test('CLI: netloop echo --workers 2 --port 0, stopped by SIGTERM', async (t) => {
  const p = runCli(['echo', '--workers', '2', '--port', '0']);
  const { port, pids } = await cliListening(t, p);
  t.not(port, 0, 'a concrete port');
  t.ok(pids.every(alive), 'both workers run');
  const echoes = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port });
        let got = '';
        s.on('connect', () => s.write(`cli ${i}`));
        s.on('data', (d) => {
          got += d;
          if (got.length >= `cli ${i}`.length) s.end();
        });
        s.on('error', () => {});
        s.on('close', () => resolve(got));
      }),
    ),
  );
  t.same(echoes, Array.from({ length: 8 }, (_, i) => `cli ${i}`), 'it echoes');
  p.kill('SIGTERM');
  await until(() => p.st.exit !== undefined, 10000, 'the CLI to exit');
  t.same(p.st.exit, { code: 0, signal: null }, 'the CLI exited with code 0');
  t.match(p.st.out, /stopped \(SIGTERM\): 8 connections/, 'and printed the workers\' final counts');
  t.equal(p.st.err, '', 'nothing on stderr');
  await until(() => !pids.some(alive), 5000, 'the workers to be gone');
  t.pass('no worker process is left');
  t.equal(await portIsFree(port), true, 'the port is free');
});

t.test('CLI: a killed worker is reported on stderr; workers end when the primary is killed', async (t) => {
  const p = runCli(['echo', '--workers', '2', '--port', '0']);
  const { port, pids } = await cliListening(t, p);
  process.kill(pids[0], 'SIGKILL');
  await until(() => /restarted \(pid \d+\)/.test(p.st.err), 5000, 'the restart report');
  t.match(p.st.err, new RegExp(`worker 1 \\(pid ${pids[0]}\\) was killed by SIGKILL; restarting in 100 ms\\n`), 'the death reported');
  const reborn = Number(/restarted \(pid (\d+)\)/.exec(p.st.err)[1]);
  t.ok(alive(reborn), `the new worker runs (${reborn})`);
  // An orphaned worker serves no one: when its primary dies, it stops.
  p.kill('SIGKILL');
  await until(() => p.st.exit !== undefined, 5000, 'the primary to die');
  await until(() => ![pids[1], reborn].some(alive), 8000, 'the orphaned workers to end');
  t.pass('the workers ended by themselves');
  await sleep(10);
  t.equal(await portIsFree(port), true, 'the port is free');
});
