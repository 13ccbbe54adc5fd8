// latency: open loop. Each connection sends `rate` messages a second on a fixed schedule (the
// connections staggered evenly over the period), whatever the echoes do; latency runs from when a
// message was due to the read that completed its echo, so a server that falls behind cannot hide
// it (no coordinated omission). Reports p50/p90/p99/p99.9 and max, and the generator's own send
// lag. `inflight` caps the messages outstanding per connection (a due message beyond it waits,
// and its latency keeps counting).
import { echoArgs, int, protoOption, serversFor, sizeLabel, threadsOption } from './common.js';

export default {
  name: 'latency',
  summary: 'latency at a fixed message rate per connection: p50/p90/p99/p99.9 and max',
  defaultServers: (o) => serversFor(o.proto),
  options: {
    proto: protoOption,
    conns: { default: 100, min: 1, integer: true, help: 'connections' },
    rate: { default: 100, min: 0.1, help: 'messages per second per connection' },
    size: { default: 64, min: 1, integer: true, help: 'payload bytes' },
    'msg-type': { type: 'string', default: 'binary', choices: ['binary', 'text'], help: 'ws message type' },
    inflight: { default: 64, min: 1, integer: true, help: 'most messages outstanding per connection' },
    duration: { default: 5, min: 0.1, help: 'measured seconds per run' },
    warmup: { default: 1, min: 0, help: 'seconds of schedule before measuring' },
    threads: threadsOption,
  },
  commonDefaults: { runs: 3 },
  title: (o) => `latency (${o.proto}): ${int(o.conns)} conns x ${o.rate} msg/s = ${int(o.conns * o.rate)} msg/s, ${sizeLabel(o.size)}`,
  cases: (o) => [{
    id: `latency-${o.proto}`,
    label: `${int(o.conns)} conns x ${o.rate} msg/s, ${sizeLabel(o.size)}`,
    kind: 'latency',
    proto: o.proto,
    conns: o.conns,
    loadgenArgs: echoArgs({ proto: o.proto, msgType: o['msg-type'], conns: o.conns, inflight: o.inflight, size: o.size, duration: o.duration, warmup: o.warmup, threads: o.threads, rate: o.rate }),
    timeoutS: 30 + o.warmup + o.duration + 30,
  }],
};
