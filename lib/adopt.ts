// Taking a connection over from Node: the edge between a net.Socket (libuv's
// handle) and the engine's slot table. Used by Engine.adopt() for raw TCP and
// Upgrader.handleUpgrade() for WebSocket upgrades that Node's http server
// parsed.
//
// The order matters: libuv must stop reading first (bytes it read after we
// looked would be lost to us), then the bytes it already read are taken from
// the stream's buffer, then the descriptor is duplicated natively, and only
// then is Node's socket destroyed, which closes Node's copy of the
// descriptor. The kernel socket lives on in our duplicate, so the peer sees
// nothing of the hand-over: no FIN, no RST.
import { Buffer } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { RequestHead } from './http/request-parser.js';

/** What detach() took from Node's socket. */
export interface Detached {
  fd: number;
  /** `head`, then the bytes Node had read but nobody consumed: the connection's first input. */
  bytes: Buffer;
}

interface NodeHandle {
  fd?: number;
  readStop?: () => number;
}

/**
 * Why a socket cannot be taken over, or undefined if it can. A TLS socket's
 * descriptor carries ciphertext that only Node's TLS state can read.
 */
export function whyNotAdoptable(socket: unknown): string | undefined {
  if (!(socket instanceof Socket)) return 'not a net.Socket';
  if ((socket as { encrypted?: boolean }).encrypted === true) return 'a TLS socket (https): its descriptor carries ciphertext only Node can read';
  if (socket.destroyed) return 'the socket is destroyed';
  // Node has read the peer's FIN already: the kernel will not say it again.
  if ((socket as { _readableState?: { ended?: boolean } })._readableState?.ended === true) return 'the peer has closed its side already';
  const handle = (socket as unknown as { _handle?: NodeHandle | null })._handle;
  if (handle === null || handle === undefined || typeof handle.fd !== 'number' || handle.fd < 0) return 'the socket has no descriptor (not a TCP or Unix socket of this process)';
  return undefined;
}

/**
 * Whether a socket that cannot be taken over can still be served through
 * its Node stream (stream-transport.ts): a live net.Socket (TLS included).
 */
export function canServeAsStream(socket: unknown): boolean {
  // Connected: it has a peer (a socket that never connected has none, yet says 'open').
  if (!(socket instanceof Socket) || socket.destroyed || socket.readyState !== 'open' || socket.remoteAddress === undefined) return false;
  return (socket as { _readableState?: { ended?: boolean } })._readableState?.ended !== true;
}

/** Stops Node reading `socket` and takes what it read; the socket stays Node's until release(). */
export function detach(socket: Socket, head: Buffer): Detached {
  const handle = (socket as unknown as { _handle: NodeHandle })._handle;
  handle.readStop?.();
  const parts: Buffer[] = head.length > 0 ? [head] : [];
  // Bytes libuv read but that were not consumed yet (the http server leaves
  // what followed the request head in `head`; anything read after it waits
  // in the stream's buffer).
  for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
    parts.push(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
  }
  return { fd: handle.fd!, bytes: parts.length === 1 ? parts[0]! : Buffer.concat(parts) };
}

/** Closes Node's side once the descriptor was duplicated (or the hand-over failed). */
export function release(socket: Socket): void {
  socket.removeAllListeners('data');
  socket.on('error', () => {}); // nothing more for Node to report
  socket.destroy();
}

/** A RequestHead (the engine's parser's type) of a request Node's http parser read. */
export function requestHeadOf(req: IncomingMessage): RequestHead {
  const raw = req.rawHeaders;
  const headers: Array<readonly [string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) headers.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  const version = req.httpVersion === '1.0' ? '1.0' : '1.1';
  return new RequestHead(req.method ?? 'GET', req.url ?? '/', version, headers, 0);
}

/** Answers a refused upgrade on Node's socket, then closes it once the answer is out. */
export function refuseOnNodeSocket(socket: Duplex, response: Buffer): void {
  socket.on('error', () => {});
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.once('finish', () => socket.destroy());
  socket.end(response);
}
