// The upgrade hook: the application's say on a WebSocket upgrade, with the
// whole request in hand (method, path, query, headers, cookies, the peer's
// address), answered asynchronously: accept with per-connection data, or an
// HTTP answer (401, 403, 429...). Used by the engine's own listener and by
// handleUpgrade() alike (upgrader.ts); this file has the request view, the
// answer's validation and the cookie parser, no I/O.
import type { IncomingMessage } from 'node:http';
import type { RequestHead } from '../http/request-parser.js';
import { targetPath } from '../http/upgrade.js';
import { responseHeadText, type HeaderList } from '../http/response.js';

/** The request of a WebSocket upgrade as the upgrade hook sees it. */
export interface UpgradeRequest {
  /** 'GET'. */
  readonly method: string;
  /** The request-target as sent: "/chat?room=1". */
  readonly url: string;
  /** Its path: "/chat". */
  readonly path: string;
  /** Its query: room=1. */
  readonly query: URLSearchParams;
  /** The value of a header (any case); several lines joined with ", ". */
  header(name: string): string | undefined;
  /** Every header line, names in lower case, in order. */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
  /** The Cookie header's cookies, name → value (the first of a repeated name). */
  readonly cookies: Readonly<Record<string, string>>;
  /** The peer: "127.0.0.1:51234". */
  readonly remoteAddr: string;
  /** The subprotocol the upgrader chose among the client's, '' if none. */
  readonly subprotocol: string;
  /** The 101 response head netloop sends if the hook accepts (text, CRLF line ends), before any `headers` of the answer. */
  readonly responseHead: string;
  /** The request as Node parsed it, when the upgrade came through handleUpgrade(); undefined on the engine's own listener. */
  readonly nodeRequest: IncomingMessage | undefined;
}

/**
 * What the upgrade hook answers: accept (with the connection's session,
 * available as `c.session` from onOpen on, and headers to add to the 101:
 * a cookie, say), or refuse with an HTTP answer.
 */
export type UpgradeAnswer<S = unknown> =
  | { accept: true; session?: S; /** Added to the 101 (not its framing or handshake headers; Sec-WebSocket-Protocol only if the upgrader has no subprotocols). */ headers?: HeaderList }
  | { accept: false; status: number; headers?: HeaderList; body?: string | Uint8Array };

/** The hook: may be async; the handshake timeout bounds it. */
export type UpgradeHook<S = unknown> = (req: UpgradeRequest) => UpgradeAnswer<S> | Promise<UpgradeAnswer<S>>;

/**
 * Cookies of a Cookie header (RFC 6265 §5.4: "name=value; name2=value2").
 * Linear: one pass, no pattern over the untrusted header. Pairs without
 * "=" are ignored; a value in double quotes loses them; values are not
 * percent-decoded (cookies carry whatever encoding their setter chose).
 */
export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  if (header === undefined) return out;
  let i = 0;
  const n = header.length;
  while (i < n) {
    let end = header.indexOf(';', i);
    if (end < 0) end = n;
    const eq = header.indexOf('=', i);
    if (eq >= 0 && eq < end) {
      const name = trimOws(header, i, eq);
      let value = trimOws(header, eq + 1, end);
      if (value.length >= 2 && value.charCodeAt(0) === 0x22 && value.charCodeAt(value.length - 1) === 0x22) value = value.slice(1, -1);
      if (name !== '' && !(name in out)) out[name] = value;
    }
    i = end + 1;
  }
  return out;
}

// s[start, end) without spaces and tabs at either end, by index.
function trimOws(s: string, start: number, end: number): string {
  while (start < end && (s.charCodeAt(start) === 0x20 || s.charCodeAt(start) === 0x09)) start++;
  while (end > start && (s.charCodeAt(end - 1) === 0x20 || s.charCodeAt(end - 1) === 0x09)) end--;
  return s.slice(start, end);
}

/** The hook's view of a request head. */
export function upgradeRequest(head: RequestHead, remoteAddr: string, subprotocol: string, responseHead: string, nodeRequest?: IncomingMessage): UpgradeRequest {
  const path = targetPath(head.target) ?? '/';
  const q = head.target.indexOf('?');
  let cookies: Record<string, string> | undefined;
  return {
    method: head.method,
    url: head.target,
    path,
    query: new URLSearchParams(q >= 0 ? head.target.slice(q + 1) : ''),
    header: (name: string) => head.get(name),
    headers: head.headers,
    get cookies() {
      cookies ??= parseCookies(head.get('cookie'));
      return cookies;
    },
    remoteAddr,
    subprotocol,
    responseHead,
    nodeRequest,
  };
}

// Headers of the 101 that are netloop's to write (Sec-WebSocket-Protocol may be added by a hook
// when the upgrader has no subprotocols of its own: netloop/ws's handleProtocols does).
const NOT_ADDED = new Set(['content-length', 'transfer-encoding', 'connection', 'upgrade', 'sec-websocket-accept', 'sec-websocket-extensions']);

/** Checks what the hook answered; a TypeError names the mistake. */
export function checkAnswer<S>(answer: unknown): UpgradeAnswer<S> {
  if (answer === null || typeof answer !== 'object' || typeof (answer as { accept?: unknown }).accept !== 'boolean') {
    throw new TypeError('the upgrade hook must answer { accept: true, session? } or { accept: false, status, headers?, body? }');
  }
  const a = answer as UpgradeAnswer<S>;
  if (a.accept && a.headers !== undefined) {
    // Names and values checked before the 101 is built; the headers that make it a 101
    // (or would frame a body it has not) are netloop's.
    responseHeadText(101, a.headers);
    for (const [name] of Symbol.iterator in a.headers ? (a.headers as Iterable<readonly [string, unknown]>) : Object.entries(a.headers)) {
      if (NOT_ADDED.has(name.toLowerCase())) throw new TypeError(`the upgrade hook may not add ${name} to the 101`);
    }
  }
  if (!a.accept) {
    const status = (a as { status?: unknown }).status;
    if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599 || status === 101) {
      throw new TypeError(`the upgrade hook refused with status ${String(status)}: give an HTTP status from 200 to 599`);
    }
  }
  return a;
}
