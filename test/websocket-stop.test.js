// engine.stop() with an Upgrader: every WebSocket gets close 1001, the
// engine waits for the answers (closeTimeout at most), and meanwhile it
// accepts no new connection. The peer is Node's own `net` socket.
import t from 'tap';
import net from 'node:net';
import { hex, sclose, cclose, Peer, startServer, closedOnce, until } from './helpers/ws-peer.js';

t.test('stop(): 1001 to a silent peer, no new connection accepted while waiting, onClose null', { timeout: 15000 }, async (t) => {
  const s = await startServer(t, { closeTimeout: 1500 });
  const peer = await Peer.open(t, s.addr, { allowHalfOpen: true });
  const rec = await s.rec(peer);
  const [host, port] = [s.addr.slice(0, s.addr.lastIndexOf(':')), Number(s.addr.slice(s.addr.lastIndexOf(':') + 1))];

  const started = Date.now();
  const stopped = s.engine.stop();
  await peer.waitRx(4); // the close frame
  t.equal(hex(peer.rx), hex(sclose(1001)), 'close 1001 on the wire');

  // The peer never answers: the engine is waiting for it. A newcomer now is refused.
  const refused = await new Promise((resolve) => {
    const sock = net.connect({ host, port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(null);
    });
    sock.once('error', (err) => resolve(err));
  });
  t.equal(refused?.code, 'ECONNREFUSED', 'a connection attempt during the goodbye is refused');

  await stopped;
  const waited = Date.now() - started;
  t.ok(waited >= 1300 && waited < 6000, `stop() waited for the closing handshake about closeTimeout (${waited} ms)`);
  const { err, info } = await closedOnce(t, rec);
  t.equal(err, null, 'onClose receives null when the engine stops (the contract)');
  t.equal(info.initiator, 'local');
  t.equal(info.wasClean, false, 'no close frame came back');
});

t.test('stop(): the peer answers 1001, the close handler gets it, stop() does not wait for the timeout', { timeout: 15000 }, async (t) => {
  const s = await startServer(t, { closeTimeout: 4000 });
  const peer = await Peer.open(t, s.addr);
  const rec = await s.rec(peer);
  const started = Date.now();
  const stopped = s.engine.stop();
  await peer.waitRx(4);
  peer.write(cclose(1001, 'bye'));
  await stopped;
  t.ok(Date.now() - started < 3000, 'stop() resolved once the handshake completed');
  const { err, info } = await closedOnce(t, rec);
  t.equal(err, null);
  t.same(rec.handler, [[1001, 'bye']], "the close handler got the peer's reply");
  t.same({ code: info.code, reason: info.reason, wasClean: info.wasClean, initiator: info.initiator }, { code: 1001, reason: 'bye', wasClean: true, initiator: 'local' });
  await until(() => peer.closed, 3000, 'the TCP connection closed');
});
