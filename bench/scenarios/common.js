// Pieces the scenarios share: default servers per protocol, the load generator's echo arguments,
// source addresses, and TLS.
import { benchCertificate, KEY_TYPES } from '../harness/tls.js';

// The peers for a protocol: netloop, the npm/Node baseline, and the C ceiling.
export const serversFor = (proto) => (proto === 'tcp' ? ['netloop', 'net', 'c'] : ['netloop', 'uws', 'ws', 'c']);
export const ratioFor = (proto) => (proto === 'tcp' ? ['net', 'c'] : ['uws', 'ws', 'c']);

// --tls: the peers that speak TLS themselves. ws: ws on Node's https, uWS.js's SSLApp (BoringSSL);
// tcp: Node's tls module. The C server has no TLS (no ceiling here).
export const tlsServersFor = (proto) => (proto === 'tcp' ? ['netloop', 'net'] : ['netloop', 'ws', 'uws-ssl']);
export const tlsRatioFor = (proto) => (proto === 'tcp' ? ['net'] : ['ws', 'uws-ssl']);
// The flags of a scenario that runs over TLS, and what a case carries: the certificate (made once
// per run, harness/tls.js) and the load generator's flag.
export const tlsOptions = {
  tls: { type: 'boolean', default: false, help: 'over TLS (wss:// for ws): the servers get a certificate made for the run, the generator speaks TLS (OpenSSL)' },
  'tls-key-type': { type: 'string', default: 'ec', choices: KEY_TYPES, help: 'with --tls: the certificate\'s key, ECDSA P-256 or RSA 2048' },
};
export const tlsCase = (o) => (o.tls ? { tls: benchCertificate(o['tls-key-type']) } : {});
export const protoLabel = (proto, tls) => (tls ? (proto === 'ws' ? 'wss' : 'tls') : proto);

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
export function echoArgs({ proto, msgType, conns, inflight, size, duration, warmup, threads, rate, tls }) {
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
    ...(tls ? ['--tls'] : []),
  ];
}

export const sizeLabel = (b) => (b >= 1024 && b % 1024 === 0 ? `${b / 1024} KiB` : `${b} B`);
export const int = (x) => x.toLocaleString('en-US');
