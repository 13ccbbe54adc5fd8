#!/usr/bin/env node
// Server memory under two memory attacks (issue 8), in one I/O mode:
//
//   never-reading  20 clients send 64 KiB binary messages to a WebSocket echo
//                  as fast as the server takes them and never read the
//                  echoes, for --seconds; then they disconnect.
//   stalled        60 clients each send a frame header declaring 16 MiB - 1
//                  bytes and --stalled-bytes of its payload, then stall.
//
// The server is a WebSocket echo (Engine + Upgrader, defaults unless a flag
// says otherwise) in a child process; its RSS (/proc/<pid>/status VmRSS) is
// sampled every 50 ms. Prints the baseline, the peak during the attack and
// the RSS 1, 3 and 5 s after the attackers left, as JSON and as a line.
//
//   node bench/attacks/memory.js --attack never-reading --mode nonblocking
//   node bench/attacks/memory.js --attack stalled --mode blocking
//   node bench/attacks/memory.js --dist /path/to/older/checkout/dist/index.js   (before/after)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    attack: { type: 'string', default: 'never-reading' },
    mode: { type: 'string', default: 'nonblocking' },
    seconds: { type: 'string', default: '5' },
    clients: { type: 'string' },
    'stalled-bytes': { type: 'string', default: String(64 * 1024) },
    'server-options': { type: 'string', default: '{}' },
    server: { type: 'boolean', default: false },
    // Another build's dist/index.js (a checkout of an older commit): before/after figures.
    dist: { type: 'string' },
  },
});

function rssOf(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const MiB = 1024 * 1024;

function frameHeader(opcode, len) {
  const key = Buffer.from([1, 2, 3, 4]);
  let head;
  if (len < 126) head = Buffer.from([0x80 | opcode, 0x80 | len]);
  else if (len < 0x10000) head = Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, key]);
}

function upgrade(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(
        'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
    });
    let head = Buffer.alloc(0);
    const onData = (d) => {
      head = Buffer.concat([head, d]);
      if (head.includes('\r\n\r\n')) {
        s.off('data', onData);
        if (!head.toString('latin1').startsWith('HTTP/1.1 101')) reject(new Error('no 101'));
        else resolve(s);
      }
    };
    s.on('data', onData);
    s.on('error', () => {});
    s.once('error', reject);
  });
}

async function attack() {
  const self = fileURLToPath(import.meta.url);
  const serverArgs = [self, '--server', '--mode', args.mode, '--server-options', args['server-options']];
  if (args.dist !== undefined) serverArgs.push('--dist', args.dist);
  const child = spawn(process.execPath, serverArgs, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { port } = await new Promise((resolve) => child.once('message', resolve));
  await sleep(500);
  const baseline = rssOf(child.pid);
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssOf(child.pid));
  }, 50);
  const socks = [];
  let sentBytes = 0;
  if (args.attack === 'never-reading') {
    const n = Number(args.clients ?? 20);
    const payload = Buffer.alloc(64 * 1024, 0x61); // masked with key 1,2,3,4: the bytes do not matter
    const frame = Buffer.concat([frameHeader(2, payload.length), payload]);
    for (let i = 0; i < n; i++) {
      const s = await upgrade(port);
      s.pause(); // never reads
      socks.push(s);
      const pump = () => {
        while (!s.destroyed && s.write(frame)) sentBytes += frame.length;
        if (!s.destroyed) s.once('drain', pump);
      };
      pump();
    }
    await sleep(Number(args.seconds) * 1000);
  } else if (args.attack === 'stalled') {
    const n = Number(args.clients ?? 60);
    const partial = Buffer.alloc(Number(args['stalled-bytes']), 0x62);
    for (let i = 0; i < n; i++) {
      const s = await upgrade(port);
      s.write(Buffer.concat([frameHeader(2, 16 * MiB - 1), partial]));
      sentBytes += partial.length;
      socks.push(s);
    }
    await sleep(Number(args.seconds) * 1000);
  } else {
    throw new Error(`--attack ${args.attack}: never-reading or stalled`);
  }
  child.send('stats');
  const { stats } = await new Promise((resolve) => child.once('message', resolve));
  const peakDuring = peak;
  for (const s of socks) s.destroy();
  const after = {};
  const t0 = Date.now();
  for (const at of [1000, 3000, 5000]) {
    await sleep(at - (Date.now() - t0));
    after[`${at / 1000}s`] = rssOf(child.pid);
  }
  clearInterval(sampler);
  child.send('stop');
  await new Promise((resolve) => child.once('exit', resolve));
  const mib = (b) => (b / MiB).toFixed(1);
  const result = {
    attack: args.attack,
    mode: args.mode,
    serverOptions: JSON.parse(args['server-options']),
    baselineRss: baseline,
    peakRss: peakDuring,
    afterRss: after,
    sentBytes,
    serverStatsAtEnd: { queuedBytes: stats.queuedBytes, heldBytes: stats.heldBytes, readPaused: stats.readPaused, online: stats.online },
  };
  console.log(JSON.stringify(result));
  console.log(
    `${args.attack} ${args.mode}: RSS baseline ${mib(baseline)} MiB, peak ${mib(peakDuring)} MiB, ` +
      `after 1/3/5 s ${mib(after['1s'])}/${mib(after['3s'])}/${mib(after['5s'])} MiB ` +
      `(queued ${mib(stats.queuedBytes)} MiB, held ${mib(stats.heldBytes)} MiB, paused ${stats.readPaused})`,
  );
}

if (args.server) {
  // The server under attack: a plain WebSocket echo.
  const dist = args.dist !== undefined ? pathToFileURL(args.dist).href : '../../dist/index.js';
  const { Engine, Upgrader } = await import(dist);
  const up = new Upgrader({});
  up.onMessage((c, type, data) => {
    if (!c.closed) c.writeMessage(type, data);
  });
  const engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader: up, ioMode: args.mode, ...JSON.parse(args['server-options']) });
  await engine.start();
  process.send({ port: Number(engine.addresses()[0].split(':').pop()) });
  process.on('message', (m) => {
    if (m === 'stats') process.send({ stats: engine.stats() });
    if (m === 'stop') engine.stop().then(() => process.exit(0));
  });
} else {
  await attack();
}
