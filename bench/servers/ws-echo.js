// The `ws` package's WebSocket echo server: the npm baseline netloop's WebSocket is compared
// against.
//
//   node bench/servers/ws-echo.js --host 127.0.0.1 --port P [--compression] [--tls-cert F --tls-key F]
//
// With --tls-cert and --tls-key, ws rides on Node's https server (wss://), as a ws user without a
// terminating proxy deploys it.
// ws 8 with bufferutil installed (ws then masks and unmasks natively; the banner says whether it
// was found). perMessageDeflate is off unless --compression (the load generator offers no
// extension, so compression is never negotiated with it either way). Each message is echoed with
// its own type: ws.send(data, { binary: isBinary }). Text is not re-validated on the way out
// (ws validated it on the way in). Prints "listening HOST:PORT" when ready; exits on
// SIGINT/SIGTERM.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    compression: { type: 'boolean', default: false },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
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

const secure = values['tls-cert'] !== undefined || values['tls-key'] !== undefined;
const httpsServer = secure ? https.createServer({ cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']) }) : null;
const wss = new WebSocketServer({
  ...(httpsServer ? { server: httpsServer } : { host: values.host, port: Number(values.port) }),
  perMessageDeflate: values.compression,
});

wss.on('connection', (ws) => {
  ws.on('error', () => {}); // protocol errors and resets are the client's business; 'close' follows
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});
const listener = httpsServer ?? wss;
listener.on('error', (err) => {
  console.error(`ws-echo: ${err.message}`);
  process.exit(1);
});
listener.on('listening', () => {
  const { port } = listener.address();
  process.stdout.write(`listening ${values.host}:${port} (ws${secure ? ' on https' : ''}, ${bufferutil}, compression ${values.compression ? 'on' : 'off'})\n`);
});
httpsServer?.listen(Number(values.port), values.host);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
