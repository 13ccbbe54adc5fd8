// churn: connections per second through the whole life of a short connection. Each of `conns`
// slots loops: connect, (WebSocket upgrade,) one message echoed and checked, close (ws: a close
// frame, the server's answer and its FIN; tcp: our FIN, then the server's), and again.
// Source addresses: the connections taken in turn from `source-ips` (default 16 addresses,
// 127.0.1.1-16), so closed connections waiting out TIME_WAIT never exhaust one address's ports.
// --tls: every cycle also does a TLS handshake, in two cases: full (no session offered) and
// resumed (each slot offers the session ticket of its last cycle; tls_resumed says how many the
// server took).
import {
  int, protoLabel, protoOption, serversFor, sizeLabel, sourceIps, sourceIpsPattern, threadsOption, tlsCase, tlsOptions, tlsServersFor,
} from './common.js';

export default {
  name: 'churn',
  summary: 'connections per second through handshake, one message, and close',
  defaultServers: (o) => (o.tls ? tlsServersFor(o.proto) : serversFor(o.proto)),
  options: {
    proto: protoOption,
    conns: { default: 50, min: 1, integer: true, help: 'connections cycling at once' },
    size: { default: 64, min: 1, integer: true, help: 'payload bytes of the one message' },
    'msg-type': { type: 'string', default: 'binary', choices: ['binary', 'text'], help: 'ws message type' },
    duration: { default: 5, min: 0.1, help: 'measured seconds per run' },
    warmup: { default: 1, min: 0, help: 'seconds of churn before measuring' },
    'source-ips': { type: 'string', default: 'auto:16', pattern: sourceIpsPattern, help: 'local addresses to connect from (a list, or auto:N for 127.0.1.1..N; empty: the kernel picks)' },
    threads: threadsOption,
    ...tlsOptions,
  },
  commonDefaults: { runs: 3 },
  title: (o) =>
    `churn (${protoLabel(o.proto, o.tls)}${o.tls ? `, ${o['tls-key-type']} key` : ''}): ${int(o.conns)} connections at a time, connect + ` +
    `${o.tls ? 'TLS handshake + ' : ''}${sizeLabel(o.size)} message + close`,
  cases: (o) => (o.tls ? [false, true] : [null]).map((resume) => ({
    id: `churn-${protoLabel(o.proto, o.tls)}${resume === null ? '' : resume ? '-resumed' : '-full'}`,
    label: `${int(o.conns)} at a time, ${sizeLabel(o.size)}${resume === null ? '' : resume ? ', resumed TLS handshakes' : ', full TLS handshakes'}`,
    kind: 'churn',
    proto: o.proto,
    conns: o.conns,
    ...tlsCase(o),
    loadgenArgs: [
      ...(resume === null ? [] : resume ? ['--tls', '--tls-resume'] : ['--tls']),
      '--churn', '--proto', o.proto, ...(o.proto === 'ws' ? ['--msg-type', o['msg-type']] : []),
      '--conns', String(o.conns), '--size', String(o.size), '--duration', String(o.duration), '--warmup', String(o.warmup),
      '--threads', String(o.threads), '--connect-concurrency', String(o.conns),
      ...(o['source-ips'] ? ['--source-ips', sourceIps(o['source-ips']).join(',')] : []),
    ],
    timeoutS: o.warmup + o.duration + 60,
    pauseS: 1, // the teardown of tens of thousands of closed connections
  })),
};
