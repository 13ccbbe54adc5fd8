// echo: closed-loop echo throughput over a grid: connections x messages in flight x payload size
// (x message type for WebSocket). One case per cell; every server that speaks the protocol runs
// every cell. Each connection keeps `inflight` messages in flight; every echoed byte is checked.
// The C server is the ceiling: the generator drives it harder than any other server.
// --tls: the same grid over TLS (wss:// for ws) against the peers that speak TLS themselves.
import {
  echoArgs, int, protoLabel, protoOption, ratioFor, serversFor, sizeLabel, threadsOption, tlsCase, tlsOptions, tlsRatioFor, tlsServersFor,
} from './common.js';

export default {
  name: 'echo',
  summary: 'echo throughput: connections x in flight x payload (64 B-64 KiB), binary and text',
  defaultServers: (o) => (o.tls ? tlsServersFor(o.proto) : serversFor(o.proto)),
  options: {
    proto: protoOption,
    conns: { type: 'list', default: '100', min: 1, help: 'connections (a list: 1,100,1000)' },
    inflight: { type: 'list', default: '4', min: 1, help: 'messages in flight per connection (a list)' },
    size: { type: 'list', default: '64,1024,16384,65536', min: 1, help: 'payload bytes (a list)' },
    'msg-type': { type: 'list', default: 'binary,text', choices: ['binary', 'text'], help: 'ws message types (a list; text is printable ASCII)' },
    duration: { default: 3, min: 0.1, help: 'measured seconds per run' },
    warmup: { default: 1, min: 0, help: 'seconds from all connected to measuring' },
    threads: threadsOption,
    ...tlsOptions,
  },
  commonDefaults: { runs: 3 },
  title: (o) => `echo (${protoLabel(o.proto, o.tls)}${o.tls ? `, ${o['tls-key-type']} key` : ''}): ${o.conns.join('/')} conns x ${o.inflight.join('/')} in flight x ${o.size.map(sizeLabel).join('/')}${o.proto === 'ws' ? `, ${o['msg-type'].join(' and ')}` : ''}`,
  cases(o) {
    const out = [];
    const types = o.proto === 'ws' ? o['msg-type'] : ['binary'];
    const proto = protoLabel(o.proto, o.tls);
    for (const msgType of types) {
      for (const size of o.size) {
        for (const conns of o.conns) {
          for (const inflight of o.inflight) {
            out.push({
              id: `${proto}${o.proto === 'ws' ? `-${msgType}` : ''}-${size}B-c${conns}-w${inflight}`,
              label: `${proto}${o.proto === 'ws' ? ` ${msgType}` : ''}, ${sizeLabel(size)}, ${int(conns)} conns x ${inflight} in flight`,
              kind: 'echo',
              proto: o.proto,
              conns,
              ratioAgainst: o.tls ? tlsRatioFor(o.proto) : ratioFor(o.proto),
              ...tlsCase(o),
              loadgenArgs: echoArgs({ proto: o.proto, msgType, conns, inflight, size, duration: o.duration, warmup: o.warmup, threads: o.threads, tls: o.tls }),
              timeoutS: 30 + o.warmup + o.duration + 30,
            });
          }
        }
      }
    }
    return out;
  },
};
