// The server side of the WebSocket opening handshake (RFC 6455 §4.2.1,
// §4.2.2) as a pure function: a parsed request head and the server's
// options in, the bytes of the 101 response or the rejection to send out.
import { Buffer } from 'node:buffer';
import * as crypto from 'node:crypto';
import { isToken, listElements, listHasToken } from './chars.js';
import { httpResponse, responseHeadText, type ResponseOptions } from './response.js';
import type { RequestHead } from './request-parser.js';

/** §1.3: the GUID appended to the client's key before hashing. */
export const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** The only protocol version RFC 6455 defines (§4.4). */
export const WEBSOCKET_VERSION = '13';

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)) (§4.2.2). */
export function computeAccept(key: string): string {
  // crypto.hash (Node >= 20.12) is one call with no Hash object, whose
  // native state would otherwise live until a GC: at 15,000 handshakes that
  // is most of the handshake's native garbage.
  if (oneShotHash !== undefined) return oneShotHash('sha1', key + WEBSOCKET_GUID, 'base64');
  return crypto.createHash('sha1').update(key + WEBSOCKET_GUID, 'latin1').digest('base64');
}

const oneShotHash = (crypto as { hash?: (algorithm: string, data: string, encoding: 'base64') => string }).hash;

const isAlpha = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isBase64Char = (c: number): boolean => isAlpha(c) || isDigit(c) || c === 0x2b || c === 0x2f; // + /
const isSchemeChar = (c: number): boolean => isAlpha(c) || isDigit(c) || c === 0x2b || c === 0x2d || c === 0x2e; // + - .

// The checks below read values from the network by index, never with a
// pattern: a backtracking pattern can cost time quadratic in a value's length.

/**
 * A key is 16 random bytes in base64 (§4.1): always 22 characters and "==".
 * Non-zero pad bits in the 22nd character are tolerated, as base64 decoders
 * usually do; the value still decodes to 16 bytes.
 */
function isWebSocketKey(key: string): boolean {
  if (key.length !== 24 || !key.endsWith('==')) return false;
  for (let i = 0; i < 22; i++) if (!isBase64Char(key.charCodeAt(i))) return false;
  return true;
}

/** Index of the first "?" or "#" in `s`, -1 if none. */
function queryOrFragment(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x3f || c === 0x23) return i;
  }
  return -1;
}

/** What a negotiateExtensions hook agreed to. */
export interface ExtensionAgreement {
  /** Value of the Sec-WebSocket-Extensions response header; omitted when undefined or ''. */
  responseHeaderValue?: string;
  /** Whether RSV1 has a meaning on this connection (permessage-deflate). */
  rsv1Allowed: boolean;
}

export interface UpgradeOptions {
  /**
   * Paths served, compared with the path of the request-target (the query
   * removed, no percent-decoding): one, a list, a RegExp (tested against
   * the path) or a predicate. Default: any.
   */
  path?: string | readonly string[] | RegExp | ((path: string, head: RequestHead) => boolean);
  /** Subprotocols the server speaks, in order of preference. */
  subprotocols?: readonly string[];
  /** Decides whether a page from `origin` may connect (Origin is sent by browsers only). false: 403. */
  checkOrigin?: (origin: string | undefined, head: RequestHead) => boolean;
  /**
   * Called with the client's Sec-WebSocket-Extensions offer (all lines
   * joined), when it made one. Returns what was agreed, or null to accept no
   * extension. Throwing rejects the handshake with 400.
   */
  negotiateExtensions?: (offer: string, head: RequestHead) => ExtensionAgreement | null;
  /** Extra headers for the 101 response. */
  headers?: Iterable<readonly [string, string]> | Readonly<Record<string, string>>;
}

export interface UpgradeAccepted {
  accept: true;
  /** The 101 response, to write as is. */
  readonly responseHead: Buffer;
  /**
   * The same response as text (Latin-1, one char per byte). A server that can
   * write strings straight into its output (Conn.write of an ASCII string)
   * sends this and allocates no Buffer per handshake; `ascii` says whether
   * UTF-8 and Latin-1 encode it alike.
   */
  responseText: string;
  ascii: boolean;
  /** The chosen subprotocol, '' when none. */
  protocol: string;
  /** The Sec-WebSocket-Extensions response value, '' when none. */
  extensions: string;
  rsv1Allowed: boolean;
  /** Path of the request-target. */
  path: string;
}

export interface UpgradeRejected {
  accept: false;
  status: number;
  /** Headers the rejection must carry (Allow for 405, Sec-WebSocket-Version for 426). */
  headers: Array<[string, string]>;
  /** A short plain-text explanation. */
  body: string;
  /** Stable code for logs and tests, e.g. 'WS_ERR_INVALID_KEY'. */
  code: string;
}

export type UpgradeResult = UpgradeAccepted | UpgradeRejected;

function reject(status: number, code: string, body: string, headers: Array<[string, string]> = []): UpgradeRejected {
  return { accept: false, status, headers, body, code };
}

/**
 * The path of a request-target: origin-form "/chat?x=1" gives "/chat",
 * absolute-form "ws://host/chat?x=1" gives "/chat" ("/" when empty).
 * undefined for the asterisk and authority forms, which cannot name a
 * WebSocket resource.
 */
export function targetPath(target: string): string | undefined {
  let path: string;
  if (target.startsWith('/')) {
    path = target;
  } else {
    // absolute-form: scheme "://" authority, then the path (RFC 3986 §3).
    if (target.length === 0 || !isAlpha(target.charCodeAt(0))) return undefined;
    let i = 1;
    while (i < target.length && isSchemeChar(target.charCodeAt(i))) i++;
    if (!target.startsWith('://', i)) return undefined;
    i += 3;
    while (i < target.length) {
      const c = target.charCodeAt(i);
      if (c === 0x2f || c === 0x3f || c === 0x23) break; // / ? #
      i++;
    }
    const rest = target.slice(i);
    path = rest === '' || rest.startsWith('?') ? '/' + rest : rest;
  }
  const q = queryOrFragment(path);
  return q === -1 ? path : path.slice(0, q);
}

/**
 * True if the request tries a WebSocket handshake at all, even a broken one:
 * it has an Upgrade header, a Connection header listing "upgrade", or a
 * Sec-WebSocket-* header. A request with none of them is plain HTTP, which a
 * WebSocket server without an HTTP handler answers 404, not 400: nothing in
 * it is wrong, there is only nothing to serve.
 */
export function isUpgradeAttempt(head: RequestHead): boolean {
  for (const [name, value] of head.headers) {
    if (name === 'upgrade' || name.startsWith('sec-websocket-')) return true;
    if (name === 'connection' && listHasToken(value, 'upgrade')) return true;
  }
  return false;
}

/** True if the request asks for a WebSocket (Upgrade lists "websocket"): route it to checkUpgrade(). */
export function isWebSocketUpgrade(head: RequestHead): boolean {
  return listHasToken(head.get('upgrade'), 'websocket');
}

function pathAllowed(allowed: UpgradeOptions['path'], path: string, head: RequestHead): boolean {
  if (allowed === undefined) return true;
  if (typeof allowed === 'string') return path === allowed;
  if (typeof allowed === 'function') return allowed(path, head);
  if (allowed instanceof RegExp) {
    allowed.lastIndex = 0; // a /g or /y RegExp keeps its position between tests: every request starts afresh
    return allowed.test(path);
  }
  return allowed.includes(path);
}

/**
 * Checks a request head against RFC 6455 §4.2.1 and the server's options,
 * in this order: an upgrade attempt at all (404 for plain HTTP, see
 * isUpgradeAttempt), method GET (405, with Allow: GET), HTTP/1.1 (400), a
 * request-target with a path (400) the server serves (404), exactly one
 * Host (400), Upgrade listing "websocket" (400), Connection listing
 * "upgrade" (400), exactly one Sec-WebSocket-Key of 16 base64 bytes (400),
 * Sec-WebSocket-Version 13 (426, with Sec-WebSocket-Version: 13), the
 * origin (403), the subprotocol list (400 if malformed), the extensions
 * (400 if the hook throws). Exceptions from checkOrigin propagate.
 */
export function checkUpgrade(head: RequestHead, options: UpgradeOptions = {}): UpgradeResult {
  if (!isUpgradeAttempt(head)) return reject(404, 'WS_ERR_NOT_UPGRADE', 'Not Found\n');
  if (head.method !== 'GET') {
    return reject(405, 'WS_ERR_METHOD_NOT_ALLOWED', 'A WebSocket handshake is a GET request\n', [['Allow', 'GET']]);
  }
  if (head.version !== '1.1') return reject(400, 'WS_ERR_HTTP_VERSION', 'A WebSocket handshake needs HTTP/1.1\n');
  const path = targetPath(head.target);
  if (path === undefined) return reject(400, 'WS_ERR_INVALID_TARGET', 'The request-target has no path\n');
  if (!pathAllowed(options.path, path, head)) return reject(404, 'WS_ERR_NOT_FOUND', 'Not Found\n');
  if (head.count('host') !== 1) return reject(400, 'WS_ERR_INVALID_HOST', 'Exactly one Host header is required\n');
  if (!isWebSocketUpgrade(head)) return reject(400, 'WS_ERR_INVALID_UPGRADE', 'The Upgrade header must list "websocket"\n');
  if (!listHasToken(head.get('connection'), 'upgrade')) {
    return reject(400, 'WS_ERR_INVALID_CONNECTION', 'The Connection header must list "upgrade"\n');
  }
  const keys = head.getAll('sec-websocket-key');
  const key = keys[0];
  if (keys.length !== 1 || key === undefined || !isWebSocketKey(key)) {
    return reject(400, 'WS_ERR_INVALID_KEY', 'Sec-WebSocket-Key must be 16 bytes in base64\n');
  }
  if (head.get('sec-websocket-version') !== WEBSOCKET_VERSION) {
    return reject(426, 'WS_ERR_UNSUPPORTED_VERSION', 'Sec-WebSocket-Version must be 13\n', [['Sec-WebSocket-Version', WEBSOCKET_VERSION]]);
  }
  if (options.checkOrigin !== undefined && !options.checkOrigin(head.get('origin'), head)) {
    return reject(403, 'WS_ERR_FORBIDDEN_ORIGIN', 'Forbidden\n');
  }

  let protocol = '';
  const offered = head.get('sec-websocket-protocol');
  if (offered !== undefined) {
    const list = listElements(offered);
    if (list.length === 0 || !list.every(isToken)) {
      return reject(400, 'WS_ERR_INVALID_PROTOCOL', 'Sec-WebSocket-Protocol must be a list of tokens\n');
    }
    // The server's preference wins; subprotocol names are compared exactly.
    protocol = options.subprotocols?.find((p) => list.includes(p)) ?? '';
  }

  let extensions = '';
  let rsv1Allowed = false;
  const offer = head.get('sec-websocket-extensions');
  if (offer !== undefined && options.negotiateExtensions !== undefined) {
    let agreed: ExtensionAgreement | null;
    try {
      agreed = options.negotiateExtensions(offer, head);
    } catch (err) {
      return reject(400, 'WS_ERR_INVALID_EXTENSIONS', `Invalid Sec-WebSocket-Extensions: ${(err as Error)?.message ?? String(err)}\n`);
    }
    if (agreed !== null) {
      extensions = agreed.responseHeaderValue ?? '';
      rsv1Allowed = agreed.rsv1Allowed;
    }
  }

  const headers: Array<readonly [string, string]> = [
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade'],
    ['Sec-WebSocket-Accept', computeAccept(key)],
  ];
  if (protocol !== '') headers.push(['Sec-WebSocket-Protocol', protocol]);
  if (extensions !== '') headers.push(['Sec-WebSocket-Extensions', extensions]);
  if (options.headers !== undefined) {
    const extra = Symbol.iterator in options.headers
      ? (options.headers as Iterable<readonly [string, string]>)
      : Object.entries(options.headers as Readonly<Record<string, string>>);
    for (const h of extra) headers.push(h);
  }
  const responseText = responseHeadText(101, headers);
  return {
    accept: true,
    get responseHead(): Buffer {
      return Buffer.from(responseText, 'latin1');
    },
    responseText,
    ascii: !/[^\x00-\x7f]/.test(responseText),
    protocol,
    extensions,
    rsv1Allowed,
    path,
  };
}

/**
 * The bytes of a rejection (status, its required headers, the body,
 * Connection: close). The answer to a HEAD request omits the body
 * (`omitBody`, RFC 9110 §9.3.2).
 */
export function rejectionResponse(r: UpgradeRejected, options: ResponseOptions = {}): Buffer {
  return httpResponse(r.status, r.headers, r.body, options);
}
