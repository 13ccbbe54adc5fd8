// churn: connections per second through the whole life of a short connection. Each of `conns`
// slots loops: connect, (WebSocket upgrade,) one message echoed and checked, close (ws: a close
// frame, the server's answer and its FIN; tcp: our FIN, then the server's), and again.
// Source addresses: the connections taken in turn from `source-ips` (default 16 addresses,
// 127.0.1.1-16), so closed connections waiting out TIME_WAIT never exhaust one address's ports.
import { int, protoOption, serversFor, sizeLabel, sourceIps, sourceIpsPattern, threadsOption } from './common.js';

export default {
  name: 'churn',
  summary: 'connections per second through handshake, one message, and close',
  defaultServers: (o) => serversFor(o.proto),
  options: {
    proto: protoOption,
    conns: { default: 50, min: 1, integer: true, help: 'connections cycling at once' },
    size: { default: 64, min: 1, integer: true, help: 'payload bytes of the one message' },
    'msg-type': { type: 'string', default: 'binary', choices: ['binary', 'text'], help: 'ws message type' },
    duration: { default: 5, min: 0.1, help: 'measured seconds per run' },
    warmup: { default: 1, min: 0, help: 'seconds of churn before measuring' },
    'source-ips': { type: 'string', default: 'auto:16', pattern: sourceIpsPattern, help: 'local addresses to connect from (a list, or auto:N for 127.0.1.1..N; empty: the kernel picks)' },
    threads: threadsOption,
  },
  commonDefaults: { runs: 3 },
  title: (o) => `churn (${o.proto}): ${int(o.conns)} connections at a time, connect + ${sizeLabel(o.size)} message + close`,
  cases: (o) => [{
    id: `churn-${o.proto}`,
    label: `${int(o.conns)} at a time, ${sizeLabel(o.size)}`,
    kind: 'churn',
    proto: o.proto,
    conns: o.conns,
    loadgenArgs: [
      '--churn', '--proto', o.proto, ...(o.proto === 'ws' ? ['--msg-type', o['msg-type']] : []),
      '--conns', String(o.conns), '--size', String(o.size), '--duration', String(o.duration), '--warmup', String(o.warmup),
      '--threads', String(o.threads), '--connect-concurrency', String(o.conns),
      ...(o['source-ips'] ? ['--source-ips', sourceIps(o['source-ips']).join(',')] : []),
    ],
    timeoutS: o.warmup + o.duration + 60,
    pauseS: 1, // the teardown of tens of thousands of closed connections
  }],
};
