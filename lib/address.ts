// Address strings of the public API: "host:port", "[v6]:port", ":port" (all
// IPv4 interfaces) and "unix:/path" (a Unix domain socket).
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/** An address string, parsed: a TCP host and port, or a Unix socket path. */
export type ParsedAddress =
  | {
      /** TCP. */
      kind: 'inet';
      /** A host name or numeric address; '0.0.0.0' for ":port". */
      host: string;
      /** 0..65535; 0 lets the system choose when listening. */
      port: number;
    }
  | {
      /** A Unix domain socket. */
      kind: 'unix';
      /** Its path. */
      path: string;
    };

/** Parses an address string; throws TypeError with the reason when it is not one. */
export function parseAddress(addr: unknown): ParsedAddress {
  if (typeof addr !== 'string') {
    throw new TypeError(`address must be a string like "127.0.0.1:8080" or "unix:/path", got ${typeof addr}`);
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(addr);
  if (scheme !== null) {
    // A URL where a listen or dial address belongs (ws://, http://, tcp://):
    // the scheme and path mean nothing here, say what would.
    let hint = '';
    try {
      const u = new URL(addr);
      if (u.host !== '') hint = `, e.g. "${u.port === '' ? `${u.host}:PORT` : u.host}"`;
    } catch {
      // not even a URL: no example
    }
    throw new TypeError(`address "${addr}": addresses are host:port without a scheme (${scheme[1]}://) or path${hint}${/^wss?$/i.test(scheme[1]!) ? "; a ws:// URL is dialed with dial() from 'netloop'" : ''}`);
  }
  if (addr.startsWith('unix:')) {
    const path = addr.slice(5);
    if (path.length === 0) throw new TypeError(`address "${addr}": the unix socket path is empty`);
    if (path.includes('\0')) throw new TypeError(`address "${addr}": the unix socket path contains a NUL byte`);
    return { kind: 'unix', path };
  }
  let host: string;
  let portText: string;
  if (addr.startsWith('[')) {
    const end = addr.indexOf(']');
    if (end < 0 || addr[end + 1] !== ':') throw new TypeError(`address "${addr}": expected "[ipv6]:port"`);
    host = addr.slice(1, end);
    portText = addr.slice(end + 2);
    if (isIP(host) !== 6) throw new TypeError(`address "${addr}": "${host}" is not an IPv6 address`);
  } else {
    const colon = addr.lastIndexOf(':');
    if (colon < 0) throw new TypeError(`address "${addr}": missing ":port"`);
    host = addr.slice(0, colon);
    portText = addr.slice(colon + 1);
    if (host.includes(':')) throw new TypeError(`address "${addr}": write IPv6 addresses as "[${host}]:port"`);
    if (host === '') host = '0.0.0.0';
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new TypeError(`address "${addr}": port must be an integer from 0 to 65535`);
  }
  return { kind: 'inet', host, port: Number(portText) };
}

/** Resolves a host name to a numeric address (the native layer does no lookups). */
export async function resolveHost(host: string): Promise<string> {
  if (isIP(host) !== 0) return host;
  const { address } = await lookup(host);
  return address;
}

/** The address string of a family ('IPv4', 'IPv6', 'unix'), host and port. */
export function formatAddress(family: string, host: string, port: number): string {
  if (family === 'unix') return `unix:${host}`;
  return family === 'IPv6' ? `[${host}]:${port}` : `${host}:${port}`;
}
