// netloop mounted on Node's http server: the WebSocket echo of the CLI, but
// the port is an http.Server's and every upgrade is taken over with
// upgrader.handleUpgrade(req, socket, head). Measures what the adoption path
// costs against netloop's own listener (the `netloop` server): after the
// handshake the connection is the engine's, so the echo should match it.
//
//   node bench/servers/netloop-http-echo.js --host 127.0.0.1 --port P [--mode nonblocking|blocking|mixed]
//
// Each message is echoed with its own type. Prints "listening HOST:PORT" when
// ready; exits on SIGINT/SIGTERM.
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Engine, Upgrader } from '../../dist/index.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    mode: { type: 'string', default: 'nonblocking' },
  },
});

const upgrader = new Upgrader();
upgrader.onMessage((c, type, data) => {
  if (!c.closed) c.writeMessage(type, data);
});
const engine = new Engine({ upgrader, ioMode: values.mode });
await engine.start();
const server = http.createServer((req, res) => res.end('netloop behind http.Server\n'));
server.on('upgrade', (req, socket, head) => {
  upgrader.handleUpgrade(req, socket, head).catch(() => socket.destroy());
});
server.listen(Number(values.port), values.host, () => {
  const a = server.address();
  console.log(`listening ${a.address}:${a.port}`);
});
const stop = () => {
  server.close();
  engine.stop().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
