// fanout: topics. One publisher, N subscribers, every message delivered to every subscriber
// (the publisher among them) through the server's topics: netloop's Upgrader.publish in one
// engine (netloop), the same across 6 worker processes whose primary relays publishes
// (netloop-workers), --redis-servers netloop servers (worker processes, each its own
// netloop/redis adapter) sharing one Redis (netloop-redis), and uWebSockets.js's app.publish in
// one process (uws). The generator is the
// native load generator's broadcast mode (bench/native/loadgen/mode_broadcast.cc): at most
// `inflight` messages on their way to everyone at once, every delivery checked byte for byte and
// counted, publish-to-deliver latency per delivery (p50/p99) and to the last subscriber.
//
// Past one process (more than harness/hold-levels.js's PER_PROCESS_CONNS subscribers, e.g. 100,000):
// the generator forks subscriber-only processes (loadgen --processes, at most SUBSCRIBERS_PER_PROCESS
// each, one source address 127.0.1.x per process's worth), which share the publisher's slots
// through shared memory, so the loop stays closed and every delivery is still checked and counted.
// A server in one process (netloop's one engine, uWS.js) cannot hold that many here (20,000 open
// files per process): those rows are reported as impossible, and the servers with worker
// processes must have enough of them to stay under the limit with room for SO_REUSEPORT's uneven spread.
import broadcast from './broadcast.js';
import path from 'node:path';
import { benchDir } from '../harness/paths.js';
import { int, sizeLabel, sourceIps } from './common.js';
import { PER_PROCESS_CONNS } from '../harness/hold-levels.js';

// ~12,500 connections per generator process and source address keeps connects fast.
const SUBSCRIBERS_PER_PROCESS = Math.min(12500, PER_PROCESS_CONNS);
// A server process should hold at most 90% of the 20,000 open files a process may have here
// (SO_REUSEPORT spreads the connections over the worker processes unevenly).
const SERVER_PROCESS_CONNS = 18000;
const ONE_PROCESS = ['netloop', 'uws'];
// Socket.IO rooms in one process and across 3 processes sharing a Redis: a case of their own
// (protocol socketio), with bench/socketio-broadcast-loadgen.js as its generator (JavaScript:
// socket.io-client subscribers over a few child processes). Not run past one process's worth.
const SOCKETIO = ['socketio-rooms', 'socketio-redis'];

const pastOneProcess = (o) => o.conns > PER_PROCESS_CONNS;

export default {
  ...broadcast,
  name: 'fanout',
  summary: 'topics: one publisher to N subscribers (netloop, netloop across 6 workers, 3 netloop servers sharing a Redis, uWS.js; Socket.IO rooms in one process and across 3 processes sharing a Redis): deliveries/s, publish-to-deliver p50/p99',
  defaultServers: (o) =>
    pastOneProcess(o) ? ['netloop-workers', 'netloop-redis'] : ['netloop', 'netloop-workers', 'netloop-redis', 'uws', ...SOCKETIO],
  options: {
    ...broadcast.options,
    conns: { ...broadcast.options.conns, help: `subscribers (the publisher among them); past ${int(PER_PROCESS_CONNS)} the generator runs as several processes and only servers with worker processes can take part` },
    'server-workers': { default: 6, min: 1, integer: true, help: 'worker processes of netloop-workers' },
    'redis-servers': { default: 3, min: 1, integer: true, help: 'netloop servers (processes) sharing one Redis in netloop-redis' },
  },
  title: (o) => `fanout: 1 publisher to ${int(o.conns)} subscribers, ${sizeLabel(o.size)} ${o['msg-type']}, ${o.inflight} in flight`,
  overview: (cases) => cases[0].impossibleNote ?? '',
  cases: (o) => {
    const processes = pastOneProcess(o) ? Math.ceil(o.conns / SUBSCRIBERS_PER_PROCESS) : 1;
    const most = Math.min(SERVER_PROCESS_CONNS, PER_PROCESS_CONNS);
    for (const [flag, what] of [['server-workers', 'netloop-workers'], ['redis-servers', 'netloop-redis']]) {
      if (pastOneProcess(o) && o.conns / o[flag] > most) {
        throw new Error(`fanout --conns ${o.conns}: ${what} needs --${flag} ${Math.ceil(o.conns / most)} at least (${int(most)} connections per server process: 20,000 open files, with room for SO_REUSEPORT's uneven spread)`);
      }
    }
    return broadcast.cases(o).map((c) => {
      const args = [...c.loadgenArgs];
      if (processes > 1) {
        args.push('--processes', String(processes));
        if (!o['source-ips']) args.push('--source-ips', sourceIps(`auto:${processes}`).join(','));
      }
      return {
        ...c,
        id: 'fanout',
        label: `${int(o.conns)} subscribers, ${sizeLabel(o.size)}`,
        ratioAgainst: pastOneProcess(o) ? ['netloop-workers'] : ['uws'],
        loadgenArgs: args,
        // a server in one process cannot take part (bench/harness/matrix.js serves())
        manyServerProcesses: pastOneProcess(o),
        impossibleNote: pastOneProcess(o)
          ? `Not run, impossible on this machine: ${ONE_PROCESS.join(' and ')} (one server process) at ${int(o.conns)} subscribers: a process may open 20,000 files here, so one process cannot hold them. The generator ran as ${processes} processes (one publisher, the rest subscribers only). Not run: ${SOCKETIO.join(' and ')} (Socket.IO's generator is JavaScript and measured at 1,000 subscribers).`
          : undefined,
        timeoutS: c.timeoutS + (processes > 1 ? 60 : 0),
      };
    }).concat(pastOneProcess(o) ? [] : [{
      id: 'fanout-socketio',
      label: `Socket.IO rooms, ${int(o.conns)} subscribers, ${sizeLabel(o.size)} (JSON event)`,
      kind: 'broadcast',
      proto: 'socketio',
      role: 'broadcast',
      conns: o.conns,
      ratioAgainst: ['socketio-rooms'],
      generator: path.join(benchDir, 'socketio-broadcast-loadgen.js'),
      loadgenArgs: [
        '--conns', String(o.conns), '--inflight', String(o.inflight), '--size', String(o.size),
        '--duration', String(o.duration), '--warmup', String(o.warmup), '--connect-timeout', '60',
      ],
      timeoutS: 90 + o.warmup + o.duration,
    }]);
  },
};
