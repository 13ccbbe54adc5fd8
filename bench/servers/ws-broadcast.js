// The `ws` package's broadcast server: every message received is sent to every open client (the
// sender included), the way ws's README broadcasts.
//
//   node bench/servers/ws-broadcast.js --host 127.0.0.1 --port P [--preframed]
//
// Default: client.send(data, { binary }) per client, ws's documented idiom; ws then builds a
// small header per client and writes the payload without copying it (cork + writev).
// --preframed: the frame is built once with Sender.frame() and written to each
// client's socket, the closest ws gets to netloop's encode-once (it uses ws internals: the
// socket and the sender's ordering are bypassed, acceptable here as nothing else is sent).
// Same setup as ws-echo.js: ws 8 with bufferutil, no compression. Prints "listening HOST:PORT"
// when ready; exits on SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import WebSocket, { Sender, WebSocketServer } from 'ws';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    preframed: { type: 'boolean', default: false },
  },
});

const wss = new WebSocketServer({ host: values.host, port: Number(values.port), perMessageDeflate: false, clientTracking: true });

wss.on('connection', (ws) => {
  ws.on('error', () => {}); // resets are the client's business; 'close' follows
  ws.on('message', (data, isBinary) => {
    if (values.preframed) {
      const list = Sender.frame(data, { fin: true, rsv1: false, opcode: isBinary ? 2 : 1, mask: false, readOnly: true });
      for (const c of wss.clients) {
        if (c.readyState !== WebSocket.OPEN) continue;
        const s = c._socket;
        s.cork();
        for (const b of list) s.write(b);
        s.uncork();
      }
      return;
    }
    for (const c of wss.clients) if (c.readyState === WebSocket.OPEN) c.send(data, { binary: isBinary });
  });
});
wss.on('error', (err) => {
  console.error(`ws-broadcast: ${err.message}`);
  process.exit(1);
});
wss.on('listening', () => {
  const { port } = wss.address();
  process.stdout.write(`listening ${values.host}:${port} (ws broadcast${values.preframed ? ', preframed' : ''})\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
