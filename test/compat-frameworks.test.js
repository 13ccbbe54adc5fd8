// Express 5 and Fastify 5 sharing their port with netloop/ws ({ server }):
// the application's routes answer while WebSockets upgrade on the same
// port and are then served by the engine, in every I/O mode.
import t from 'tap';
import express from 'express';
import Fastify from 'fastify';
import WS from 'ws';
import { WebSocketServer } from 'netloop/ws';
import { MODES, closeHttp, closeNetloopWss, next, portOf, until } from './helpers/compat.js';

const OPTS = { timeout: 30000 };

const frameworks = {
  async express() {
    const app = express();
    app.use(express.json());
    app.get('/api/hello', (req, res) => res.json({ hello: req.query.name }));
    app.post('/api/sum', (req, res) => res.json({ sum: req.body.reduce((a, b) => a + b, 0) }));
    const server = app.listen(0, '127.0.0.1');
    await next(server, 'listening');
    return { server, close: () => closeHttp(server) };
  },
  async fastify() {
    const app = Fastify();
    app.get('/api/hello', async (req) => ({ hello: req.query.name }));
    app.post('/api/sum', async (req) => ({ sum: req.body.reduce((a, b) => a + b, 0) }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { server: app.server, close: () => app.close() };
  },
};

for (const [name, make] of Object.entries(frameworks)) {
  for (const mode of MODES) {
    t.test(`${name} and netloop/ws on one port (${mode.name})`, OPTS, async (t) => {
      const app = await make();
      const wss = new WebSocketServer({ server: app.server, path: '/ws', netloop: { engine: mode.engine } });
      const modes = [];
      wss.on('connection', (ws, req) => {
        modes.push(ws.netloopConn.ioMode);
        ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `${req.url}: ${data}`, { binary: isBinary }));
      });
      const base = `http://127.0.0.1:${portOf(app.server)}`;
      t.same(wss.address(), app.server.address(), "address() is the application server's");

      // Two WebSockets open, the routes answer in between.
      const a = new WS(`${base.replace('http', 'ws')}/ws?a`);
      const b = new WS(`${base.replace('http', 'ws')}/ws?b`);
      await Promise.all([next(a, 'open'), next(b, 'open')]);
      t.same(await (await fetch(`${base}/api/hello?name=ann`)).json(), { hello: 'ann' }, 'GET route while upgraded');
      a.send('one');
      t.equal((await next(a, 'message'))[0].toString(), '/ws?a: one');
      const sum = await fetch(`${base}/api/sum`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[1,2,3]' });
      t.same(await sum.json(), { sum: 6 }, 'POST route with a body');
      b.send(Buffer.from([7, 7]));
      t.same([...(await next(b, 'message'))[0]], [7, 7]);
      const expected = mode.name === 'mixed' ? ['blocking', 'nonblocking'] : [mode.engine.ioMode, mode.engine.ioMode];
      t.same(modes.sort(), expected.sort(), 'each connection served in the mode asked for');

      // Upgrades elsewhere are ws's 400; the routes still answer afterwards.
      const other = new WS(`${base.replace('http', 'ws')}/elsewhere`);
      other.on('error', () => {});
      t.equal((await next(other, 'unexpected-response'))[1].statusCode, 400);
      other.terminate();
      t.same(await (await fetch(`${base}/api/hello?name=bob`)).json(), { hello: 'bob' });

      const closes = [next(a, 'close'), next(b, 'close')];
      a.close(1000, 'done');
      b.close(1001);
      t.same((await Promise.all(closes)).map(([code]) => code), [1000, 1001]);
      await closeNetloopWss(wss);
      await app.close();
      await until(() => !app.server.listening, 5000, 'the application server closed');
    });
  }
}
