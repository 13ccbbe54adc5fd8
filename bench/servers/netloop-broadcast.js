// netloop's broadcast server: every WebSocket message received is sent to every open connection
// (the sender included), framed once.
//
//   node bench/servers/netloop-broadcast.js --host 127.0.0.1 --port P [--mode nonblocking|blocking|mixed] [--max-blocking N]
//
// The frame is built once per message with frame() from websocket/sender (server frames are not
// masked, so the same [header, payload] pair is valid on every connection) and queued on each
// connection's transport with writev: no per-connection framing, no copy of the payload in JS.
// WebSocketConn has no public "write these pre-framed bytes" call yet, so this reaches for its
// transport (`_raw`, a plain Conn); examples/chat.js instead calls writeMessage() per member,
// which frames per connection. --mode sets the Engine's ioMode and --max-blocking its
// maxBlockingOnline (omitted: the Engine's defaults).
// Prints "listening HOST:PORT" when ready; exits on SIGINT/SIGTERM.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    mode: { type: 'string' },
    'max-blocking': { type: 'string' },
  },
});

// The same build the `netloop` server runs (dist/ next to the CLI the harness uses).
const distDir = process.env.NETLOOP_BENCH_DIST
  ? path.resolve(process.env.NETLOOP_BENCH_DIST)
  : path.join(path.dirname(path.dirname(path.dirname(new URL(import.meta.url).pathname))), 'dist');
const { Engine, Upgrader } = await import(pathToFileURL(path.join(distDir, 'index.js')).href);
const { frame } = await import(pathToFileURL(path.join(distDir, 'websocket', 'sender.js')).href);

const OPCODE = { text: 0x1, binary: 0x2 };
const members = new Set();
const upgrader = new Upgrader({});
upgrader.onOpen((c) => members.add(c));
upgrader.onClose((c) => members.delete(c));
upgrader.onMessage((_from, type, data) => {
  const frames = frame(OPCODE[type], data); // encoded once for every member
  for (const c of members) if (!c.closed) c._raw.writev(frames);
});

const options = { addrs: [`${values.host}:${values.port}`], upgrader };
if (values.mode !== undefined) {
  if (!['nonblocking', 'blocking', 'mixed'].includes(values.mode)) {
    console.error(`netloop-broadcast: --mode ${values.mode}: expected nonblocking, blocking or mixed`);
    process.exit(2);
  }
  options.ioMode = values.mode;
}
if (values['max-blocking'] !== undefined) options.maxBlockingOnline = Number(values['max-blocking']);
const engine = new Engine(options);
try {
  await engine.start();
} catch (err) {
  console.error(`netloop-broadcast: ${err.message}`);
  process.exit(1);
}
process.stdout.write(`listening ${engine.addresses().join(', ')} (netloop broadcast${values.mode ? `, ${values.mode}` : ''})\n`);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    void engine.stop().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
