// broadcast: N WebSocket connections; connection 0 publishes, the server sends every message to
// every connection (the publisher too), framed once; every connection checks every message.
// At most `inflight` messages are on their way to everyone at once: the next is published when
// the oldest has reached all N (a closed loop, so the server's rate is measured, not its queue).
// Servers: those with a broadcast role (netloop: bench/servers/netloop-broadcast.js; ws:
// bench/servers/ws-broadcast.js).
import { int, sizeLabel, sourceIps, sourceIpsPattern, threadsOption } from './common.js';

export default {
  name: 'broadcast',
  summary: 'one message to N subscribers (frames encoded once): deliveries per second',
  defaultServers: ['netloop', 'ws'],
  options: {
    conns: { default: 1000, min: 2, integer: true, help: 'connections (subscribers, the publisher among them)' },
    inflight: { default: 4, min: 1, integer: true, help: 'broadcasts on their way at once' },
    size: { default: 64, min: 1, integer: true, help: 'payload bytes' },
    'msg-type': { type: 'string', default: 'binary', choices: ['binary', 'text'], help: 'message type' },
    duration: { default: 5, min: 0.1, help: 'measured seconds per run' },
    warmup: { default: 1, min: 0, help: 'seconds from all upgraded to measuring' },
    'connect-concurrency': { default: 500, min: 1, integer: true, help: 'connects + handshakes in progress at once' },
    'source-ips': { type: 'string', default: '', pattern: sourceIpsPattern, help: 'local addresses to connect from (a list, or auto:N for 127.0.1.1..N)' },
    threads: { ...threadsOption, default: 2, help: 'load generator threads (receiving is most of its work)' },
  },
  commonDefaults: { runs: 3 },
  title: (o) => `broadcast: 1 publisher to ${int(o.conns)} connections, ${sizeLabel(o.size)} ${o['msg-type']}, ${o.inflight} in flight`,
  cases: (o) => [{
    id: 'broadcast',
    label: `${int(o.conns)} subscribers, ${sizeLabel(o.size)}`,
    kind: 'broadcast',
    proto: 'ws',
    role: 'broadcast',
    conns: o.conns,
    ratioAgainst: ['ws'],
    loadgenArgs: [
      '--broadcast', '--proto', 'ws', '--msg-type', o['msg-type'],
      '--conns', String(o.conns), '--inflight', String(o.inflight), '--size', String(o.size),
      '--duration', String(o.duration), '--warmup', String(o.warmup), '--threads', String(o.threads),
      '--connect-concurrency', String(o['connect-concurrency']), '--connect-timeout', '60',
      ...(o['source-ips'] ? ['--source-ips', sourceIps(o['source-ips']).join(',')] : []),
    ],
    timeoutS: 60 + o.warmup + o.duration + 30,
  }],
};
