// Node's own `net` echo server: the baseline netloop is compared against.
//
//   node bench/servers/net-echo.js --host 127.0.0.1 --port P [--tls-cert F --tls-key F]
//
// With --tls-cert and --tls-key it is Node's `tls` module instead (tls.createServer, the same
// handler on each secure connection): the baseline of raw TCP over TLS.
// Writes each chunk straight back from the 'data' handler. On this machine that measured level with
// socket.pipe(socket), 2-3% ahead (within run-to-run noise); --pipe selects pipe() to compare.
// Backpressure: when write() reports a full buffer the socket pauses until 'drain', which is what
// pipe() would do. Prints "listening HOST:PORT" when ready; exits on SIGINT/SIGTERM.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    pipe: { type: 'boolean', default: false }, // compare the two idioms: --pipe uses socket.pipe(socket)
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
  },
});

const usePipe = values.pipe;

function onConnection(socket) {
  socket.setNoDelay(true);
  socket.on('error', () => {}); // resets are the client's business; 'close' follows
  if (usePipe) {
    socket.pipe(socket);
    return;
  }
  const resume = () => socket.resume();
  socket.on('data', (chunk) => {
    if (!socket.write(chunk)) {
      socket.pause();
      socket.once('drain', resume);
    }
  });
}

const secure = values['tls-cert'] !== undefined || values['tls-key'] !== undefined;
const server = secure
  ? tls.createServer({ cert: readFileSync(values['tls-cert']), key: readFileSync(values['tls-key']), noDelay: true }, onConnection)
  : net.createServer({ noDelay: true }, onConnection);
server.on('error', (err) => {
  console.error(`net-echo: ${err.message}`);
  process.exit(1);
});
server.listen(Number(values.port), values.host, () => {
  const { port } = server.address();
  process.stdout.write(`listening ${values.host}:${port}${secure ? ' (tls)' : ''}\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
