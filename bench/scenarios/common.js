// Pieces the scenarios share: default servers per protocol, the load generator's echo arguments,
// and source addresses.

// The peers for a protocol: netloop, the npm/Node baseline, and the C ceiling.
export const serversFor = (proto) => (proto === 'tcp' ? ['netloop', 'net', 'c'] : ['netloop', 'uws', 'ws', 'c']);
export const ratioFor = (proto) => (proto === 'tcp' ? ['net', 'c'] : ['uws', 'ws', 'c']);

export const protoOption = { type: 'string', default: 'ws', choices: ['ws', 'tcp'], help: 'ws: WebSocket frames; tcp: raw bytes' };
export const threadsOption = { default: 1, min: 1, integer: true, help: 'load generator threads (all on its CPUs when pinned)' };

// "auto:N" -> 127.0.1.1 ... 127.0.1.N: every 127.x.y.z is a local address on Linux, and each
// source address has its own ~28,000 ephemeral ports towards the server.
export function sourceIps(spec) {
  if (!spec) return [];
  const m = /^auto:(\d+)$/.exec(spec);
  if (!m) return spec.split(',');
  const n = Math.max(1, Math.min(254 * 254, Number(m[1])));
  return Array.from({ length: n }, (_, i) => `127.0.${1 + Math.floor(i / 254)}.${1 + (i % 254)}`);
}
export const sourceIpsPattern = /^$|^auto:\d+$|^\d+\.\d+\.\d+\.\d+(,\d+\.\d+\.\d+\.\d+)*$/;

// Closed-loop or fixed-rate echo arguments.
export function echoArgs({ proto, msgType, conns, inflight, size, duration, warmup, threads, rate }) {
  return [
    '--proto', proto,
    ...(proto === 'ws' ? ['--msg-type', msgType] : []),
    '--conns', String(conns),
    '--inflight', String(inflight),
    '--size', String(size),
    '--duration', String(duration),
    '--warmup', String(warmup),
    '--threads', String(threads),
    '--connect-timeout', '30',
    ...(rate ? ['--rate', String(rate)] : []),
  ];
}

export const sizeLabel = (b) => (b >= 1024 && b % 1024 === 0 ? `${b / 1024} KiB` : `${b} B`);
export const int = (x) => x.toLocaleString('en-US');
