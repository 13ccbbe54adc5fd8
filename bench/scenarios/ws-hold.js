// ws-hold: memory per idle WebSocket connection. The generator (its own process, pinned apart
// from the server) samples the server's RSS, opens `conns` connections (at most
// `connect-concurrency` connecting or upgrading at once), waits until all are upgraded, lets the
// server settle, samples RSS again, then holds them for `duration` seconds, pinging each every
// `ping-interval` seconds (every pong required), and samples a last time. One server at a time,
// a fresh server per run. rss_per_conn = (RSS idle - RSS before) / connections upgraded.
// Pings per second the server is asked to answer at most, by default. A lone ping costs about
// 20 us of server CPU on this VM whoever answers it (19 us for the C server, 24 for netloop, 28
// for ws: `hold` reports it as "server CPU us per pong"), mostly the kernel's loopback work and a
// wake-up per ping; 20,000 a second keeps the server's core well under half busy, so a pong
// that comes after the next ping means a stall, not a saturated core.
const MAX_PINGS_PER_S = 20000;

/** The ping interval in seconds: --ping-interval, or by default 1 s, longer past 20,000 connections. */
export function pingInterval(o) {
  return o['ping-interval'] >= 0 ? o['ping-interval'] : Math.max(1, Math.ceil(o.conns / MAX_PINGS_PER_S));
}

export default {
  name: 'ws-hold',
  summary: 'RSS per idle WebSocket connection and connect time, 15,000 connections',
  proto: 'ws',
  kind: 'hold',
  defaultServers: ['netloop', 'ws'],
  commonDefaults: { runs: 3 },
  pauseS: 1, // after each run, once the server's sockets are gone: the kernel's deferred teardown
  options: {
    conns: { default: 15000, min: 1, integer: true, help: 'connections held (one process holds about 19,900 with a 20,000 fd limit)' },
    duration: { default: 5, min: 0.1, help: 'seconds held after the idle sample' },
    // 3 s: netloop gives back the memory of the connection burst 1 s after it (EngineOptions.
    // releaseMemoryAfterBurst) and V8's collection then takes up to a second or so.
    settle: { default: 3, min: 0, help: 'seconds between all upgraded and the idle RSS sample' },
    'ping-interval': {
      default: -1,
      min: -1,
      help: `seconds between pings on each connection during the hold (0: none; -1: 1 s, or longer so that at most ${MAX_PINGS_PER_S.toLocaleString('en-US')} pings a second go out: 5 s for 100,000)`,
    },
    'connect-concurrency': { default: 500, min: 1, integer: true, help: 'connects + handshakes in progress at once' },
    'connect-timeout': { default: 60, min: 1, help: 'seconds for all connections to be upgraded' },
    'source-ips': { type: 'string', default: '', pattern: /^$|^\d+\.\d+\.\d+\.\d+(,\d+\.\d+\.\d+\.\d+)*$/, help: 'local addresses to spread connections over, e.g. 127.0.0.1,127.0.0.2 (default: the kernel picks)' },
    threads: { default: 1, min: 1, integer: true, help: 'load generator threads' },
  },
  title: (o) => `ws-hold: ${o.conns.toLocaleString('en-US')} idle connections`,
  loadgenArgs: (o) => [
    '--hold',
    '--proto', 'ws',
    '--conns', String(o.conns),
    '--duration', String(o.duration),
    '--settle', String(o.settle),
    '--ping-interval', String(pingInterval(o)),
    '--connect-concurrency', String(o['connect-concurrency']),
    '--connect-timeout', String(o['connect-timeout']),
    '--threads', String(o.threads),
    ...(o['source-ips'] ? ['--source-ips', o['source-ips']] : []),
  ],
  timeoutS: (o) => o['connect-timeout'] + o.settle + o.duration + 5 + 30,
};
