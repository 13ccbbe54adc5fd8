// The server under attack, in a process of its own (started by
// test/helpers/attack.js with fork()), so that the attack tests can read its
// RSS, descriptors and threads from /proc/<pid> without counting the
// attackers' own sockets and buffers, and so that a crash under attack shows
// up as an exit instead of taking the test down with it.
//
// argv[2] is JSON: { ioMode, maxBlockingOnline?, upgrader: UpgraderOptions,
// engine: EngineOptions, throwOn?: string }. It echoes every message; a text
// message equal to throwOn makes onMessage throw (the throwing-handler case).
//
// IPC, child -> parent:
//   { type: 'listening', port }
//   { type: 'open', id, remote, ioMode }
//   { type: 'close', id, remote, ioMode, err: { name, message, code, closeCode } | null, info }
//   { type: 'reply', seq, ... } answering a request
// parent -> child: { seq, cmd: 'sample' } -> rss, fds, threads, cpu (process.cpuUsage()),
// stats (engine.stats()), opens, closes, uncaught; { seq, cmd: 'stop' } stops the engine.
import fs from 'node:fs';
import { Engine, Upgrader } from '../../dist/index.js';

const config = JSON.parse(process.argv[2]);

// The engine fails the connection whose handler threw, then rethrows the
// exception to the process (README): counted here instead of ending the
// server, so that the test can check it arrived exactly once.
let uncaught = 0;
process.on('uncaughtException', () => {
  uncaught++;
});

const statusField = (name) => {
  const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : null;
};

const up = new Upgrader(config.upgrader ?? {});
let nextId = 0;
let opens = 0;
let closes = 0;
const ids = new Map();

up.onOpen((c) => {
  const id = nextId++;
  opens++;
  // The address is asked for now: once closed, the socket has none to tell.
  const remote = c.remoteAddr;
  ids.set(c, { id, remote });
  process.send({ type: 'open', id, remote, ioMode: c.ioMode });
});
up.onMessage((c, type, data) => {
  if (config.throwOn !== undefined && type === 'text' && data.toString() === config.throwOn) throw new Error(`thrown on ${config.throwOn}`);
  if (!c.closed) c.writeMessage(type, data);
});
up.onClose((c, err) => {
  closes++;
  const info = c.closeInfo === null ? null : { code: c.closeInfo.code, reason: c.closeInfo.reason, wasClean: c.closeInfo.wasClean, initiator: c.closeInfo.initiator };
  const e = err === null ? null : { name: err.name, message: err.message, code: err.code, closeCode: err.closeCode };
  process.send({ type: 'close', ...ids.get(c), ioMode: c.ioMode, err: e, info });
  ids.delete(c);
});

const modeOptions = { ioMode: config.ioMode ?? 'nonblocking', ...(config.maxBlockingOnline ? { maxBlockingOnline: config.maxBlockingOnline } : {}) };
const engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader: up, ...modeOptions, ...config.engine });
await engine.start();
const addr = engine.addresses()[0];

process.on('message', async (m) => {
  if (m.cmd === 'sample') {
    process.send({
      type: 'reply',
      seq: m.seq,
      rss: statusField('VmRSS') * 1024,
      threads: statusField('Threads'),
      fds: fs.readdirSync('/proc/self/fd').length,
      cpu: process.cpuUsage(),
      stats: engine.stats(),
      opens,
      closes,
      uncaught,
    });
  } else if (m.cmd === 'stop') {
    await engine.stop();
    process.send({ type: 'reply', seq: m.seq });
    process.exit(0);
  }
});
// The parent went away without a stop: do not outlive it.
process.on('disconnect', () => {
  engine.stop().finally(() => process.exit(0));
});

process.send({ type: 'listening', port: Number(addr.slice(addr.lastIndexOf(':') + 1)) });
