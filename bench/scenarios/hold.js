// hold: N idle WebSocket connections held with periodic pings (every pong required): the server's
// RSS per connection and the connect time. ws-hold with the C server as a floor among the
// defaults; the generator, the phases and the table are the same (see ws-hold.js).
import wsHold, { pingInterval } from './ws-hold.js';
import { PER_PROCESS_CONNS } from '../harness/scale.js';

export default {
  ...wsHold,
  name: 'hold',
  summary: 'N idle WebSocket connections with periodic pings: RSS per connection, connect time',
  // Past one process's open files only a server that runs as several processes on one port can
  // take part (harness/scale.js): netloop with --workers.
  defaultServers: (o) => (o.conns > PER_PROCESS_CONNS ? ['netloop'] : ['netloop', 'uws', 'ws', 'c']),
  options: {
    ...wsHold.options,
    conns: {
      ...wsHold.options.conns,
      help: `connections held; past ${PER_PROCESS_CONNS.toLocaleString('en-US')} (open files per process) the server runs as worker processes (netloop --workers) and the generator as several processes with their own source addresses`,
    },
  },
  title: (o) => `hold: ${o.conns.toLocaleString('en-US')} idle WebSocket connections, a ping every ${pingInterval(o)} s each`,
};
