// socketio: a Socket.IO 4 echo (an acknowledged emit per round trip) with its default wsEngine
// (ws) and with netloop/ws as wsEngine, in the same run. Same server program, same clients: the
// generator is bench/socketio-loadgen.js (socket.io-client instances in one child process,
// pinned to the generator's CPU), which prints the native generator's echo fields.
import path from 'node:path';
import { benchDir } from '../harness/paths.js';
import { int, sizeLabel } from './common.js';

export default {
  name: 'socketio',
  summary: 'Socket.IO echo (emit + ack): default wsEngine (ws) vs netloop/ws, socket.io-client load',
  defaultServers: () => ['socketio-ws', 'socketio-netloop'],
  options: {
    conns: { type: 'list', default: '100', min: 1, help: 'socket.io-client connections (a list)' },
    inflight: { type: 'list', default: '4', min: 1, help: 'acknowledged emits in flight per connection (a list)' },
    size: { type: 'list', default: '64,4096', min: 1, help: 'payload characters (a list)' },
    duration: { default: 3, min: 0.1, help: 'measured seconds per run' },
    warmup: { default: 1, min: 0, help: 'seconds from all connected to measuring' },
  },
  commonDefaults: { runs: 3 },
  title: (o) => `socket.io echo: ${o.conns.join('/')} conns x ${o.inflight.join('/')} in flight x ${o.size.map(sizeLabel).join('/')}`,
  cases(o) {
    const out = [];
    for (const size of o.size) {
      for (const conns of o.conns) {
        for (const inflight of o.inflight) {
          out.push({
            id: `socketio-${size}B-c${conns}-w${inflight}`,
            label: `socket.io, ${sizeLabel(size)}, ${int(conns)} conns x ${inflight} in flight`,
            kind: 'echo',
            proto: 'socketio',
            conns,
            ratioAgainst: ['socketio-ws'],
            generator: path.join(benchDir, 'socketio-loadgen.js'),
            loadgenArgs: ['--conns', String(conns), '--inflight', String(inflight), '--size', String(size), '--duration', String(o.duration), '--warmup', String(o.warmup)],
            timeoutS: 60 + o.warmup + o.duration,
          });
        }
      }
    }
    return out;
  },
};
