// The head of an HTTP/1.1 response, for the WebSocket client's handshake: a
// small incremental parser (bytes may arrive one at a time) with a size
// limit. Strict like the request parser: CRLF line endings, a status line of
// "HTTP/1.1 NNN reason", header names that are tokens.
import { HttpError } from '../errors.js';
import { TOKEN_CHAR } from './chars.js';

export interface ResponseHead {
  status: number;
  reason: string;
  /** Lower-case names, in order, duplicates kept. */
  headers: Array<[string, string]>;
}

export type ResponseParseResult = 'need-more' | { head: ResponseHead; consumed: number } | HttpError;

const CRLFCRLF = Buffer.from('\r\n\r\n');

export class ResponseParser {
  readonly #maxHeadSize: number;
  #buf: Buffer = Buffer.alloc(0);

  constructor(maxHeadSize = 8192) {
    this.#maxHeadSize = maxHeadSize;
  }

  /** Feeds bytes; `consumed` counts the bytes of the last chunk that belonged to the head. */
  push(chunk: Uint8Array): ResponseParseResult {
    const before = this.#buf.length;
    this.#buf = Buffer.concat([this.#buf, chunk]);
    // The blank line may straddle the previous chunk: search from 3 bytes back.
    const end = this.#buf.indexOf(CRLFCRLF, Math.max(0, before - 3));
    if (end < 0) {
      if (this.#buf.length > this.#maxHeadSize) return new HttpError('HTTP_ERR_HEAD_TOO_LARGE', 431, 'response head too large');
      return 'need-more';
    }
    const headLength = end + 4;
    if (headLength > this.#maxHeadSize) return new HttpError('HTTP_ERR_HEAD_TOO_LARGE', 431, 'response head too large');
    const text = this.#buf.toString('latin1', 0, end);
    this.#buf = Buffer.alloc(0);
    const lines = text.split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) ?([^\r\n]*)$/.exec(lines[0] ?? '');
    if (m === null) return new HttpError('HTTP_ERR_INVALID_STATUS_LINE', 400, 'invalid status line');
    const headers: Array<[string, string]> = [];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0) return new HttpError('HTTP_ERR_INVALID_HEADER', 400, 'invalid header line');
      const name = line.slice(0, colon);
      for (let k = 0; k < name.length; k++) {
        if (!TOKEN_CHAR[name.charCodeAt(k)]) return new HttpError('HTTP_ERR_INVALID_HEADER', 400, 'invalid header name');
      }
      if (line.includes('\n') || line.includes('\r')) return new HttpError('HTTP_ERR_INVALID_HEADER', 400, 'bare CR or LF');
      headers.push([name.toLowerCase(), line.slice(colon + 1).trim()]);
    }
    return { head: { status: Number(m[1]), reason: m[2] ?? '', headers }, consumed: headLength - before };
  }
}

/** The header's values joined with ", ", or undefined. */
export function headerValue(head: ResponseHead, name: string): string | undefined {
  const values = head.headers.filter(([n]) => n === name).map(([, v]) => v);
  return values.length === 0 ? undefined : values.join(', ');
}
