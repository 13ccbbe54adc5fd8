// uWebSockets.js's broadcast server, with its own topics: every connection subscribes to one
// topic at open, and each message received is published to it with app.publish() (the sender
// included), as netloop-broadcast.js does with Upgrader.publish(). uWS.js is installed on demand
// (bench/peers/uws.js). No compression; uWS.js's backpressure limit raised to 64 MiB, netloop's
// maxWriteBufferSize, so that neither drops a slow subscriber sooner than the other.
//
//   node bench/servers/uws-broadcast.js --host 127.0.0.1 --port P
//
// Prints "listening HOST:PORT" when ready; exits on SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { loadUws } from '../peers/uws.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
  },
});

let uWS;
try {
  uWS = loadUws({ install: false });
} catch (err) {
  console.error(`uws-broadcast: ${err.message}`);
  process.exit(1);
}

const app = uWS.App().ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 120,
  open: (ws) => ws.subscribe('all'),
  message: (_ws, message, isBinary) => {
    app.publish('all', message, isBinary);
  },
});

app.listen(values.host, Number(values.port), (token) => {
  if (!token) {
    console.error(`uws-broadcast: cannot listen on ${values.host}:${values.port}`);
    process.exit(1);
  }
  process.stdout.write(`listening ${values.host}:${uWS.us_socket_local_port(token)} (uWS.js topics)\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    app.close?.();
    process.exit(0);
  });
}
