// tcp-echo: raw TCP echo. Each of `conns` connections keeps `inflight` messages of `size` bytes in
// flight; every echoed byte is checked. Servers: anything in servers/index.js that serves 'tcp'.
//
// A scenario module says what it measures; the harness (run.js, harness/) does the rest:
//   name, summary, proto, defaultServers
//   kind           'echo' (throughput table) or 'hold' (memory per idle connection table)
//   options        scenario flags: { name: { default, min, integer, help } } (numbers), or
//                  { type: 'string', default, choices | pattern, help } (strings)
//   commonDefaults optional defaults for common flags (e.g. { runs: 3 })
//   ratioAgainst   echo: the servers the throughput ratios are against
//   title(o)       the report's heading
//   loadgenArgs(o) the netloop-loadgen arguments for parsed options o (host, port, pid are added)
//   timeoutS(o)    how long the load generator may take before it is killed
//   pauseS         optional seconds to wait after each run (after its sockets are released)

export default {
  name: 'tcp-echo',
  summary: 'raw TCP echo, closed loop, every byte verified',
  proto: 'tcp',
  kind: 'echo',
  defaultServers: ['netloop', 'net', 'c'],
  ratioAgainst: ['net', 'c'],
  options: {
    conns: { default: 100, min: 1, integer: true, help: 'connections' },
    inflight: { default: 4, min: 1, integer: true, help: 'messages in flight per connection' },
    size: { default: 64, min: 1, integer: true, help: 'message size in bytes' },
    duration: { default: 5, min: 0.1, help: 'measured seconds per run' },
    warmup: { default: 1, min: 0, help: 'seconds from all connected to measuring' },
    threads: { default: 1, min: 1, integer: true, help: 'load generator threads (all on its CPU when pinned)' },
  },
  title: (o) => `tcp-echo: ${o.conns} conns, ${o.inflight} in flight, ${o.size} B`,
  loadgenArgs: (o) => [
    '--proto', 'tcp',
    '--conns', String(o.conns),
    '--inflight', String(o.inflight),
    '--size', String(o.size),
    '--duration', String(o.duration),
    '--warmup', String(o.warmup),
    '--threads', String(o.threads),
    '--connect-timeout', '30',
  ],
  timeoutS: (o) => 30 + o.warmup + o.duration + 30,
};
