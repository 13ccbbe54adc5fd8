// The head of an HTTP/1.1 response, for the WebSocket client's handshake: a
// small incremental parser (bytes may arrive one at a time) with a size
// limit. Strict like the request parser: CRLF line endings (a bare CR or LF
// is an error), a status line of "HTTP/1.1 NNN reason", header names that are
// tokens, values without control characters, surrounding SP/HTAB removed.
//
// The server may be hostile, so the work is linear in the head's size
// whatever arrives: each byte is scanned once for the blank line (never
// past maxHeadSize), bytes held between chunks go to one buffer that grows
// by doubling (not a concatenation per chunk, quadratic when a server sends
// a byte at a time), and the complete head is read with index loops, no
// patterns.
import { Buffer } from 'node:buffer';
import { HttpError } from '../errors.js';
import { TOKEN_CHAR, VALUE_CHAR, trimOws } from './chars.js';

export interface ResponseHead {
  status: number;
  reason: string;
  /** Lower-case names, in order, duplicates kept. */
  headers: Array<[string, string]>;
}

export type ResponseParseResult = 'need-more' | { head: ResponseHead; consumed: number } | HttpError;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;

// The status line up to the status code.
const STATUS_PREFIX = 'HTTP/1.1 ';

function invalid(code: string, message: string): HttpError {
  return new HttpError(code, 400, message);
}

export class ResponseParser {
  readonly #maxHeadSize: number;
  // Head bytes of earlier chunks (the caller's buffers are reused, so they are copied).
  #held: Buffer | null = null;
  #heldLength = 0;
  // How much of "\r\n\r\n" the bytes so far end with, 0 to 3.
  #matched = 0;

  constructor(maxHeadSize = 8192) {
    this.#maxHeadSize = maxHeadSize;
  }

  /**
   * Feeds bytes; `consumed` counts the bytes of the last chunk that belonged
   * to the head. After a head or an error the parser starts over.
   */
  push(chunk: Uint8Array): ResponseParseResult {
    // Never look at more bytes than the head may still have.
    const limit = Math.min(chunk.length, this.#maxHeadSize - this.#heldLength);
    let matched = this.#matched;
    let i = 0;
    while (i < limit && matched < 4) {
      const c = chunk[i++]!;
      // The pattern's only self-overlap is its CR: a mismatch on CR restarts at 1.
      if (c === (matched % 2 === 0 ? CR : LF)) matched++;
      else matched = c === CR ? 1 : 0;
    }
    if (matched < 4) {
      if (this.#heldLength + limit >= this.#maxHeadSize) {
        this.#reset();
        return new HttpError('HTTP_ERR_HEAD_TOO_LARGE', 431, 'response head too large');
      }
      this.#hold(chunk, limit);
      this.#matched = matched;
      return 'need-more';
    }
    let head: Uint8Array = chunk.subarray(0, i);
    if (this.#heldLength > 0) {
      this.#hold(chunk, i);
      head = this.#held!.subarray(0, this.#heldLength);
    }
    this.#reset();
    const r = parseHead(Buffer.from(head.buffer, head.byteOffset, head.length));
    return r instanceof HttpError ? r : { head: r, consumed: i };
  }

  #hold(chunk: Uint8Array, n: number): void {
    const need = this.#heldLength + n;
    if (this.#held === null || this.#held.length < need) {
      const grown = Buffer.allocUnsafe(Math.min(this.#maxHeadSize, Math.max(need, 2 * (this.#held?.length ?? 256))));
      if (this.#held !== null) this.#held.copy(grown, 0, 0, this.#heldLength);
      this.#held = grown;
    }
    this.#held.set(chunk.subarray(0, n), this.#heldLength);
    this.#heldLength = need;
  }

  #reset(): void {
    this.#held = null;
    this.#heldLength = 0;
    this.#matched = 0;
  }
}

/** Reads a complete head, its blank line included. */
function parseHead(buf: Buffer): ResponseHead | HttpError {
  const text = buf.toString('latin1', 0, buf.length - 4);
  let lineEnd = text.indexOf('\r\n');
  if (lineEnd === -1) lineEnd = text.length;
  const statusLine = text.slice(0, lineEnd);
  // "HTTP/1.1 " three digits, then an optional SP and the reason, which may be empty.
  let ok = statusLine.startsWith(STATUS_PREFIX) && statusLine.length >= STATUS_PREFIX.length + 3;
  for (let k = STATUS_PREFIX.length; ok && k < STATUS_PREFIX.length + 3; k++) {
    const c = statusLine.charCodeAt(k);
    ok = c >= 0x30 && c <= 0x39;
  }
  let reasonStart = STATUS_PREFIX.length + 3;
  if (statusLine.charCodeAt(reasonStart) === SP) reasonStart++;
  if (!ok || hasCrOrLf(statusLine, reasonStart)) return invalid('HTTP_ERR_INVALID_STATUS_LINE', 'invalid status line');
  const status = Number(statusLine.slice(STATUS_PREFIX.length, STATUS_PREFIX.length + 3));
  const reason = statusLine.slice(reasonStart);

  const headers: Array<[string, string]> = [];
  let start = lineEnd + 2;
  while (start < text.length) {
    let end = text.indexOf('\r\n', start);
    if (end === -1) end = text.length;
    const colon = text.indexOf(':', start);
    if (colon <= start || colon > end) return invalid('HTTP_ERR_INVALID_HEADER', 'invalid header line');
    for (let k = start; k < colon; k++) {
      if (TOKEN_CHAR[text.charCodeAt(k)] !== 1) return invalid('HTTP_ERR_INVALID_HEADER', 'invalid header name');
    }
    for (let k = colon + 1; k < end; k++) {
      const c = text.charCodeAt(k);
      if (VALUE_CHAR[c] !== 1) return invalid('HTTP_ERR_INVALID_HEADER', c === CR || c === LF ? 'bare CR or LF' : 'control character in a header value');
    }
    headers.push([text.slice(start, colon).toLowerCase(), trimOws(text.slice(colon + 1, end))]);
    start = end + 2;
  }
  return { status, reason, headers };
}

function hasCrOrLf(s: string, from: number): boolean {
  for (let k = from; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c === CR || c === LF) return true;
  }
  return false;
}

/** The header's values joined with ", ", or undefined. */
export function headerValue(head: ResponseHead, name: string): string | undefined {
  let value: string | undefined;
  for (const [n, v] of head.headers) {
    if (n === name) value = value === undefined ? v : `${value}, ${v}`;
  }
  return value;
}
