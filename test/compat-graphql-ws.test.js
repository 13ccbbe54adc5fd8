// graphql-ws's useServer on netloop/ws, with graphql-ws's own createClient
// (over the npm ws client, and over netloop/ws's client): a query, a
// subscription streamed to its end, an error result, a refused subprotocol
// and the server's dispose; in every I/O mode.
import t from 'tap';
import WS from 'ws';
import { GraphQLObjectType, GraphQLSchema, GraphQLString, GraphQLInt } from 'graphql';
import { createClient } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer, WebSocket } from 'netloop/ws';
import { MODES, next, portOf, until } from './helpers/compat.js';

const OPTS = { timeout: 30000 };

const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: 'Query',
    fields: {
      hello: { type: GraphQLString, args: { name: { type: GraphQLString } }, resolve: (_, { name }) => `hello ${name}` },
      boom: {
        type: GraphQLString,
        resolve: () => {
          throw new Error('boom');
        },
      },
    },
  }),
  subscription: new GraphQLObjectType({
    name: 'Subscription',
    fields: {
      countdown: {
        type: GraphQLInt,
        args: { from: { type: GraphQLInt } },
        subscribe: async function* (_, { from }) {
          for (let i = from; i >= 0; i--) {
            await new Promise((r) => setTimeout(r, 5));
            yield { countdown: i };
          }
        },
      },
    },
  }),
});

/** Runs one operation to its end, collecting every result. */
function run(client, payload) {
  return new Promise((resolve, reject) => {
    const results = [];
    client.subscribe(payload, { next: (r) => results.push(r), error: reject, complete: () => resolve(results) });
  });
}

const clients = [
  { name: "ws's WebSocket", impl: WS },
  { name: "netloop/ws's WebSocket", impl: WebSocket },
];

for (const mode of MODES) {
  for (const impl of clients) {
    t.test(`graphql-ws on netloop/ws (${mode.name}), client on ${impl.name}`, OPTS, async (t) => {
      const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', path: '/graphql', netloop: { engine: mode.engine } });
      await next(wss, 'listening');
      const server = useServer({ schema }, wss);
      const url = `ws://127.0.0.1:${portOf(wss)}/graphql`;
      const closes = [];
      const client = createClient({ url, webSocketImpl: impl.impl, retryAttempts: 0, lazy: false, on: { closed: (e) => closes.push(e.code) } });

      t.same(await run(client, { query: '{ hello(name: "netloop") }' }), [{ data: { hello: 'hello netloop' } }], 'a query');
      const counted = await run(client, { query: 'subscription { countdown(from: 3) }' });
      t.same(counted.map((r) => r.data.countdown), [3, 2, 1, 0], 'a subscription, every event, in order');
      const failed = await run(client, { query: '{ boom }' });
      t.equal(failed[0].errors[0].message, 'boom', 'a resolver error is a result, not a broken connection');
      await until(() => wss.clients.size === 1, 5000, 'one connection for all three');
      const [sws] = wss.clients;
      t.equal(sws.protocol, 'graphql-transport-ws', "useServer's handleProtocols chose the subprotocol");

      // A client offering another subprotocol only: accepted without one, then
      // closed 4406 by graphql-ws. (The ws client would give up on the missing
      // subprotocol itself; netloop/ws's, like browsers, carries on.)
      const wrong = new WebSocket(url, ['not-graphql']);
      const [code] = await next(wrong, 'close');
      t.equal(code, 4406, 'Subprotocol not acceptable');

      await client.dispose();
      await until(() => closes.length === 1, 5000, 'the client closed');
      t.equal(closes[0], 1000);
      await server.dispose(); // closes wss: 'close' once the connections are gone
      await until(() => !wss.netloopEngine.running, 8000, 'the engine to stop');
    });
  }
}
