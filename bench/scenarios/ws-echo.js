// ws-echo: WebSocket (RFC 6455) echo. Each of `conns` connections upgrades (the generator checks
// Sec-WebSocket-Accept), then keeps `inflight` messages of `size` bytes in flight, one masked frame
// each with a fresh mask; every echo is checked for its opcode, its length and every byte.
// Servers: anything in servers/index.js that serves 'ws'. The same table as tcp-echo.
export default {
  name: 'ws-echo',
  summary: 'WebSocket echo, closed loop, masked frames, every echo verified',
  proto: 'ws',
  kind: 'echo',
  defaultServers: ['netloop', 'ws', 'c'],
  ratioAgainst: ['ws', 'c'],
  options: {
    conns: { default: 100, min: 1, integer: true, help: 'connections' },
    inflight: { default: 4, min: 1, integer: true, help: 'messages in flight per connection' },
    size: { default: 64, min: 1, integer: true, help: 'message payload size in bytes' },
    'msg-type': { type: 'string', default: 'binary', choices: ['binary', 'text'], help: 'message type (text: printable ASCII)' },
    duration: { default: 5, min: 0.1, help: 'measured seconds per run' },
    warmup: { default: 1, min: 0, help: 'seconds from all upgraded to measuring' },
    threads: { default: 1, min: 1, integer: true, help: 'load generator threads (all on its CPU when pinned)' },
  },
  title: (o) => `ws-echo: ${o.conns} conns, ${o.inflight} in flight, ${o.size} B ${o['msg-type']}`,
  loadgenArgs: (o) => [
    '--proto', 'ws',
    '--msg-type', o['msg-type'],
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
