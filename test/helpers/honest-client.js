// The honest connection of the attack tests, in a process of its own so that
// its latency measures the server under attack and not the attackers' event
// loop (the test process opens, writes and resets thousands of sockets).
//
// argv: url, everyMs. A `ws` client sends a 32-byte message every everyMs,
// one at a time, and checks each echo byte for byte. IPC: sends
// { type: 'open' } once connected (or { type: 'error', message }); on
// { cmd: 'stop' } it finishes the echo on its way (after MIN_ECHOES at least), closes (1000) and sends
// { type: 'result', count, lat: [ms...], errors, closed, closeCode }.
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

const [url, everyArg] = process.argv.slice(2);
const everyMs = Number(everyArg);
const ws = new WebSocket(url, { perMessageDeflate: false });
const r = { count: 0, lat: [], errors: [], closed: false, closeCode: null };
let sentAt = 0;
let expect = null;
let running = true;
let timer = null;
let onIdle = null;

function send() {
  timer = null;
  if (!running || r.closed) return;
  expect = Buffer.alloc(32, r.count & 0xff);
  expect.writeUInt32BE(r.count, 0);
  sentAt = performance.now();
  ws.send(expect);
}

ws.once('open', () => {
  process.send({ type: 'open' });
  send();
});
ws.on('error', (e) => {
  r.errors.push(e.message);
  if (ws.readyState === WebSocket.CONNECTING) process.send({ type: 'error', message: e.message });
});
ws.on('close', (code) => {
  r.closed = true;
  r.closeCode = code;
  onIdle?.();
});
ws.on('message', (data) => {
  if (expect === null || !Buffer.from(data).equals(expect)) r.errors.push(`unexpected echo #${r.count}`);
  r.lat.push(performance.now() - sentAt);
  r.count++;
  expect = null;
  if (running) timer = setTimeout(send, everyMs);
  else onIdle?.();
});

// Echoes that make a latency figure worth reading: an attack over in a fraction of a second
// (the server ahead of it) still gets them, the stop waits for them (5 s at most).
const MIN_ECHOES = 5;

process.on('message', async (m) => {
  if (m.cmd !== 'stop') return;
  if (r.count < MIN_ECHOES && !r.closed) {
    await new Promise((resolve) => {
      const poll = setInterval(() => {
        if (r.count >= MIN_ECHOES || r.closed) done();
      }, everyMs);
      const limit = setTimeout(done, 5000);
      function done() {
        clearInterval(poll);
        clearTimeout(limit);
        resolve();
      }
    });
  }
  running = false;
  if (timer !== null) clearTimeout(timer);
  const closedBefore = r.closed;
  // An echo still on its way is waited for (5 s at most) so that its latency is not lost.
  if (expect !== null && !r.closed) {
    await new Promise((resolve) => {
      onIdle = resolve;
      setTimeout(() => {
        r.errors.push('the last echo did not come back within 5 s');
        resolve();
      }, 5000).unref();
    });
  }
  if (!r.closed) {
    ws.close(1000);
    await new Promise((resolve) => {
      onIdle = resolve;
      setTimeout(() => {
        ws.terminate();
        resolve();
      }, 5000).unref();
    });
  }
  process.send({ type: 'result', ...r, closed: closedBefore }, () => process.exit(0));
});
process.on('disconnect', () => process.exit(0));
