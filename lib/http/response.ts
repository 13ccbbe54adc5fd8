// Plain HTTP/1.1 responses as bytes (RFC 9112 §4, §6): the 101 of a
// WebSocket handshake, the rejections of one, and whatever a plain-HTTP
// handler answers. Pure: status, headers and body in, one Buffer out.
//
// Header names and values come from code, not from the network, so bad ones
// are programming errors and throw TypeError; they are checked anyway
// because a CR or LF in a value would let whoever supplied it write
// arbitrary headers (response splitting).
import { Buffer } from 'node:buffer';
import { isToken, isValidFieldValue } from './chars.js';

export const STATUS_TEXT: Readonly<Record<number, string>> = {
  101: 'Switching Protocols',
  200: 'OK',
  204: 'No Content',
  301: 'Moved Permanently',
  302: 'Found',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  505: 'HTTP Version Not Supported',
};

/** Headers as [name, value] pairs (repeatable, ordered) or an object. */
export type HeaderList = Iterable<readonly [string, string | number]> | Readonly<Record<string, string | number>>;

export interface ResponseOptions {
  /** Send the head only (the answer to HEAD); Content-Length still describes the body. Default false. */
  omitBody?: boolean;
}

function pairs(headers: HeaderList): Iterable<readonly [string, string | number]> {
  return Symbol.iterator in headers
    ? (headers as Iterable<readonly [string, string | number]>)
    : Object.entries(headers as Readonly<Record<string, string | number>>);
}

function headerLine(name: string, value: string | number): string {
  if (typeof name !== 'string' || !isToken(name)) throw new TypeError(`invalid header name ${JSON.stringify(name)}`);
  const v = typeof value === 'number' ? String(value) : value;
  if (typeof v !== 'string' || !isValidFieldValue(v)) throw new TypeError(`invalid value for header ${name}: ${JSON.stringify(value)}`);
  return `${name}: ${v}\r\n`;
}

function statusLine(status: number): string {
  if (!Number.isInteger(status) || status < 100 || status > 999) throw new RangeError(`invalid HTTP status ${String(status)}`);
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Unknown'}\r\n`;
}

/** The status line and the given headers, then the blank line, as text (one char per byte, Latin-1). */
export function responseHeadText(status: number, headers: HeaderList = []): string {
  let s = statusLine(status);
  for (const [name, value] of pairs(headers)) s += headerLine(name, value);
  return s + '\r\n';
}

/** The status line and the given headers, then the blank line; nothing added. Encoded as Latin-1. */
export function responseHead(status: number, headers: HeaderList = []): Buffer {
  return Buffer.from(responseHeadText(status, headers), 'latin1');
}

/**
 * A complete response after which the connection closes: the given headers
 * plus Content-Length, Content-Type (text/plain; charset=utf-8 for a string
 * body, unless given) and Connection: close. A string body is sent as UTF-8.
 * Content-Length and Connection are this function's to set: passing them
 * throws TypeError.
 */
export function httpResponse(status: number, headers: HeaderList = [], body: string | Uint8Array = '', options: ResponseOptions = {}): Buffer {
  const payload = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  if (!(payload instanceof Uint8Array)) throw new TypeError('httpResponse(): body must be a string or a Uint8Array');
  let s = statusLine(status);
  let hasType = false;
  for (const [name, value] of pairs(headers)) {
    const lower = typeof name === 'string' ? name.toLowerCase() : '';
    if (lower === 'content-length' || lower === 'connection' || lower === 'transfer-encoding') {
      throw new TypeError(`httpResponse(): ${name} is set by httpResponse itself`);
    }
    if (lower === 'content-type') hasType = true;
    s += headerLine(name, value);
  }
  // 1xx, 204 and 304 responses have no body and no Content-Length (RFC 9110 §8.6).
  const bodiless = status < 200 || status === 204 || status === 304;
  if (bodiless && payload.length > 0) throw new TypeError(`httpResponse(): a ${status} response has no body`);
  if (!bodiless) {
    if (!hasType && typeof body === 'string' && payload.length > 0) s += 'Content-Type: text/plain; charset=utf-8\r\n';
    s += `Content-Length: ${payload.length}\r\n`;
  }
  s += 'Connection: close\r\n\r\n';
  const headLength = Buffer.byteLength(s, 'latin1');
  const sendBody = !options.omitBody && payload.length > 0;
  const out = Buffer.allocUnsafe(headLength + (sendBody ? payload.length : 0));
  out.write(s, 0, 'latin1');
  if (sendBody) out.set(payload, headLength);
  return out;
}
