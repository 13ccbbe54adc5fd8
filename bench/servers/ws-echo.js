// The `ws` package's WebSocket echo server: the npm baseline netloop's WebSocket is compared
// against.
//
//   node bench/servers/ws-echo.js --host 127.0.0.1 --port P [--compression]
//
// ws 8 with bufferutil installed (ws then masks and unmasks natively; the banner says whether it
// was found). perMessageDeflate is off unless --compression (the load generator offers no
// extension, so compression is never negotiated with it either way). Each message is echoed with
// its own type: ws.send(data, { binary: isBinary }). Text is not re-validated on the way out
// (ws validated it on the way in). Prints "listening HOST:PORT" when ready; exits on
// SIGINT/SIGTERM.
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    compression: { type: 'boolean', default: false },
  },
});

const require = createRequire(import.meta.url);
let bufferutil = 'bufferutil';
try {
  require.resolve('bufferutil');
  if (process.env.WS_NO_BUFFER_UTIL) bufferutil = 'bufferutil disabled by WS_NO_BUFFER_UTIL';
} catch {
  bufferutil = 'no bufferutil (pure JS masking)';
}

const wss = new WebSocketServer({
  host: values.host,
  port: Number(values.port),
  perMessageDeflate: values.compression,
});

wss.on('connection', (ws) => {
  ws.on('error', () => {}); // protocol errors and resets are the client's business; 'close' follows
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});
wss.on('error', (err) => {
  console.error(`ws-echo: ${err.message}`);
  process.exit(1);
});
wss.on('listening', () => {
  const { port } = wss.address();
  process.stdout.write(`listening ${values.host}:${port} (ws, ${bufferutil}, compression ${values.compression ? 'on' : 'off'})\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
