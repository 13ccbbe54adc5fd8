// A Socket.IO 4 echo server: every 'echo' event is acknowledged with its payload.
//
//   node bench/servers/socketio-echo.js --host 127.0.0.1 --port P [--engine ws|netloop] [--mode M]
//
// --engine ws: engine.io's default wsEngine (the `ws` package, with bufferutil);
// --engine netloop: netloop/ws's WebSocketServer as wsEngine (in --mode's I/O mode).
// Everything else (Socket.IO, engine.io, the parser, the handler) is the same program.
// Prints "listening HOST:PORT" when ready; exits on SIGINT/SIGTERM.
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Server } from 'socket.io';
import { WebSocketServer } from 'netloop/ws';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    engine: { type: 'string', default: 'ws' },
    mode: { type: 'string', default: 'nonblocking' },
  },
});
if (values.engine !== 'ws' && values.engine !== 'netloop') {
  console.error('socketio-echo: --engine must be ws or netloop');
  process.exit(2);
}

// engine.io constructs the wsEngine itself: the I/O mode comes in through a subclass.
class NetloopEngine extends WebSocketServer {
  constructor(options) {
    super({ ...options, netloop: { engine: { ioMode: values.mode } } });
  }
}

const httpServer = http.createServer();
const io = new Server(httpServer, { ...(values.engine === 'netloop' ? { wsEngine: NetloopEngine } : {}), transports: ['websocket'] });
io.on('connection', (socket) => {
  socket.on('echo', (payload, ack) => ack(payload));
});
httpServer.on('error', (err) => {
  console.error(`socketio-echo: ${err.message}`);
  process.exit(1);
});
httpServer.listen(Number(values.port), values.host, () => {
  const { port } = httpServer.address();
  process.stdout.write(`listening ${values.host}:${port} (socket.io, wsEngine ${values.engine === 'netloop' ? `netloop/ws ${values.mode}` : 'ws'})\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
