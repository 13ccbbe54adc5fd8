// Socket.IO 4 with netloop/ws as its wsEngine, driven by socket.io-client:
// WebSocket only, and long-polling upgraded to WebSocket; acks, binary,
// broadcast, and both sides' disconnect reasons; in every I/O mode.
import t from 'tap';
import http from 'node:http';
import { Server } from 'socket.io';
import { io as ioClient } from 'socket.io-client';
import { WebSocketServer, WebSocket } from 'netloop/ws';
import { MODES, closeHttp, next, portOf, until } from './helpers/compat.js';

const OPTS = { timeout: 30000 };

/** engine.io constructs its wsEngine itself: the I/O mode comes in through a subclass. */
function engineFor(mode) {
  return class extends WebSocketServer {
    constructor(options) {
      super({ ...options, netloop: { engine: mode.engine } });
    }
  };
}

async function start(t, mode) {
  const httpServer = http.createServer();
  const io = new Server(httpServer, { wsEngine: engineFor(mode), pingInterval: 200, pingTimeout: 2000 });
  const seen = { disconnects: [] };
  io.on('connection', (socket) => {
    socket.on('echo', (payload, ack) => ack(payload));
    socket.on('shout', (text) => io.emit('heard', text));
    socket.on('disconnect', (reason) => seen.disconnects.push(reason));
  });
  httpServer.listen(0, '127.0.0.1');
  await next(httpServer, 'listening');
  const wss = io.engine.ws;
  t.teardown(async () => {
    await new Promise((resolve) => io.close(() => resolve()));
    await closeHttp(httpServer);
    await until(() => !wss.netloopEngine.running, 8000, 'the engine to stop');
  });
  return { io, wss, seen, url: `http://127.0.0.1:${portOf(httpServer)}` };
}

async function connect(url, options) {
  const c = ioClient(url, { reconnection: false, ...options });
  await next(c, 'connect');
  return c;
}

/** The server side of a client's connection, once its transport is a WebSocket. */
async function serverSocketOf(io, client) {
  await until(() => io.sockets.sockets.get(client.id)?.conn.transport.name === 'websocket', 8000, 'the websocket transport');
  return io.sockets.sockets.get(client.id);
}

for (const mode of MODES) {
  t.test(`socket.io over netloop/ws, websocket only (${mode.name})`, OPTS, async (t) => {
    const { io, wss, seen, url } = await start(t, mode);
    t.ok(wss instanceof WebSocketServer, "engine.io built netloop/ws's server");
    const a = await connect(url, { transports: ['websocket'] });
    const b = await connect(url, { transports: ['websocket'] });
    const sa = await serverSocketOf(io, a);
    const ws = sa.conn.transport.socket;
    t.ok(ws instanceof WebSocket, 'the transport holds a netloop/ws WebSocket');
    t.ok(ws.netloopConn !== null, 'served by the engine');
    t.equal(ws.netloopConn.ioMode, mode.engine.ioMode === 'mixed' ? 'blocking' : mode.engine.ioMode, 'in the I/O mode asked for');

    t.same(await a.emitWithAck('echo', { n: 1, s: 'héllo' }), { n: 1, s: 'héllo' }, 'an ack round trip');
    const bin = await a.emitWithAck('echo', Buffer.from([0, 1, 2, 255]));
    t.same([...Buffer.from(bin)], [0, 1, 2, 255], 'binary attachments');
    const big = 'x'.repeat(200_000);
    t.equal(await a.emitWithAck('echo', big), big, 'a large message');

    const heardA = next(a, 'heard');
    const heardB = next(b, 'heard');
    b.emit('shout', 'to all');
    t.same([(await heardA)[0], (await heardB)[0]], ['to all', 'to all'], 'broadcast');

    // Heartbeats go through (pingInterval 200 ms): still connected after several.
    await new Promise((r) => setTimeout(r, 700));
    t.ok(a.connected && b.connected, 'alive after heartbeats');

    // Disconnect reasons, both ways.
    const aGone = next(a, 'disconnect');
    sa.disconnect(true);
    t.equal((await aGone)[0], 'io server disconnect');
    b.disconnect();
    await until(() => seen.disconnects.length === 2, 5000, 'server disconnects');
    t.same(seen.disconnects.sort(), ['client namespace disconnect', 'server namespace disconnect']);
  });

  t.test(`socket.io: long-polling, then the upgrade to netloop/ws (${mode.name})`, OPTS, async (t) => {
    const { io, seen, url } = await start(t, mode);
    const c = ioClient(url, { reconnection: false }); // polling first, as socket.io-client does by default
    const transports = [];
    c.io.on('open', () => {
      transports.push(c.io.engine.transport.name);
      c.io.engine.on('upgrade', (transport) => transports.push(transport.name));
    });
    await next(c, 'connect');
    const s = await serverSocketOf(io, c);
    await until(() => transports.length === 2, 5000, 'the upgrade');
    t.same(transports, ['polling', 'websocket'], 'long-polling, then upgraded');
    t.ok(s.conn.transport.socket instanceof WebSocket);
    t.same(await c.emitWithAck('echo', [1, 'two', { three: 3 }]), [1, 'two', { three: 3 }]);
    // The client's transport drops (no close frame): the server sees a transport close.
    c.io.engine.transport.ws._socket.destroy();
    await until(() => seen.disconnects.length === 1, 5000, 'server disconnect');
    t.equal(seen.disconnects[0], 'transport close');
    c.close();
  });
}
