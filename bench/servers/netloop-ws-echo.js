// netloop/ws's WebSocket echo server: the code of ws-echo.js with the import changed, so that
// the `ws` package and netloop's ws-compatible API are compared on the same program.
//
//   node bench/servers/netloop-ws-echo.js --host 127.0.0.1 --port P [--mode nonblocking|blocking|mixed]
//
// `{ port }`: netloop/ws's own http.Server parses the handshake, the engine serves the
// connection from then on. perMessageDeflate off, as in ws-echo.js. Each message is echoed with
// its own type. Prints "listening HOST:PORT" when ready; exits on SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'netloop/ws';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    mode: { type: 'string', default: 'nonblocking' },
  },
});

const wss = new WebSocketServer({ host: values.host, port: Number(values.port), perMessageDeflate: false, netloop: { engine: { ioMode: values.mode } } });

wss.on('connection', (ws) => {
  ws.on('error', () => {}); // protocol errors are the client's business; 'close' follows
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});
wss.on('error', (err) => {
  console.error(`netloop-ws-echo: ${err.message}`);
  process.exit(1);
});
wss.on('listening', () => {
  const { port } = wss.address();
  process.stdout.write(`listening ${values.host}:${port} (netloop/ws, ${values.mode}, compression off)\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
