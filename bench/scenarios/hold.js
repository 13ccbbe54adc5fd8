// hold: N idle WebSocket connections held with periodic pings (every pong required). Memory per
// connection is a slope: the server's RSS is sampled at two or more held levels (--levels) and
// the bytes per connection are the growth between them, fixed costs reported apart, with the
// kernel's side (TCP buffer pages, slab caches) beside it (harness/hold-levels.js). The C server
// is the floor among the defaults; uWS.js takes part where it loads.
import wsHold, { pingInterval } from './ws-hold.js';
import { PER_PROCESS_CONNS, holdLevels, workersFor } from '../harness/hold-levels.js';

const levelsOf = (o) => holdLevels(o.conns, o.levels ? o.levels.split(',').map(Number) : []);

export default {
  ...wsHold,
  name: 'hold',
  summary: 'N idle WebSocket connections with periodic pings: RSS per connection as a slope over held levels, kernel memory, connect time',
  // Past one process's open files only a server that runs as several processes on one port can
  // take part: netloop with --workers.
  defaultServers: (o) => (o.conns > PER_PROCESS_CONNS ? ['netloop'] : ['netloop', 'uws', 'ws', 'c']),
  options: {
    ...wsHold.options,
    conns: {
      ...wsHold.options.conns,
      help: `connections held; past ${PER_PROCESS_CONNS.toLocaleString('en-US')} (open files per process) the server runs as worker processes (netloop --workers) and the generator as several processes, each from its own two source addresses`,
    },
    levels: {
      type: 'string',
      default: '',
      pattern: /^$|^\d+(,\d+)*$/,
      help: 'held totals at which the server is sampled before --conns, e.g. 2000,9000 (default: a third and two thirds of --conns); RSS per connection is the slope over them',
    },
  },
  title: (o) => `hold: ${o.conns.toLocaleString('en-US')} idle WebSocket connections (sampled at ${levelsOf(o).map((n) => n.toLocaleString('en-US')).join(', ')}), a ping every ${pingInterval(o)} s each`,
  cases: (o) => [
    {
      id: 'hold',
      label: `hold ${o.conns.toLocaleString('en-US')}`,
      kind: 'hold',
      proto: 'ws',
      role: 'echo',
      conns: o.conns,
      levels: levelsOf(o),
      workers: workersFor(o.conns),
      loadgenArgs: wsHold.loadgenArgs(o),
      // Every level connects within --connect-timeout; then the settle, the hold and the teardown.
      timeoutS: (levelsOf(o).length + 1) * (o['connect-timeout'] + o.settle) + o.duration + 60,
      pauseS: wsHold.pauseS,
    },
  ],
};
