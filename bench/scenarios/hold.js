// hold: N idle WebSocket connections held with periodic pings (every pong required): the server's
// RSS per connection and the connect time. ws-hold with the C server as a floor among the
// defaults; the generator, the phases and the table are the same (see ws-hold.js).
import wsHold from './ws-hold.js';

export default {
  ...wsHold,
  name: 'hold',
  summary: 'N idle WebSocket connections with periodic pings: RSS per connection, connect time',
  defaultServers: ['netloop', 'ws', 'c'],
  title: (o) => `hold: ${o.conns.toLocaleString('en-US')} idle WebSocket connections, a ping every ${o['ping-interval']} s each`,
};
