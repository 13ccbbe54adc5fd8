// An incremental HTTP/1.1 request-head parser (RFC 9112 §2-§5): a state
// machine without I/O. push() takes whatever bytes arrived, one at a time or
// all at once, and answers 'need-more', the parsed head, or an HttpError
// carrying the status to answer with.
//
// It is strict, because a WebSocket server only needs the head of a GET and
// leniency in HTTP parsing is where request smuggling lives:
// - request line: a method token, one space, a request-target of visible
//   ASCII, one space, "HTTP/1.1" or "HTTP/1.0" (another HTTP/x.y is 505);
// - lines end with CRLF. A bare LF (RFC 9112 §2.2 lets a recipient accept
//   it) is rejected, as is a CR not followed by LF: every client a WebSocket
//   server meets sends CRLF, and accepting what a proxy in front of us may
//   read differently is how requests get smuggled;
// - empty lines before the request line are skipped (§2.2 says a server
//   SHOULD ignore at least one);
// - header lines: a token, the colon right after it (whitespace before the
//   colon is rejected, §5.1), the value with surrounding SP/HTAB removed;
//   obs-fold (a line starting with whitespace) and control characters in
//   values are rejected (§5.2, RFC 9110 §5.5); bytes 0x80-0xFF in values are
//   kept, decoded as Latin-1;
// - limits: the head, request line to blank line included, at most
//   maxHeadSize bytes, and at most maxHeaders header lines: 431 past either,
//   reported as soon as the limit is crossed.
//
// The head ends with its blank line: what follows in the same chunk (the
// first WebSocket frames of an eager client) is not the parser's. push()
// reports how many bytes of the chunk were head; the caller hands the rest on.
import { Buffer } from 'node:buffer';
import { HttpError } from '../errors.js';
import { TARGET_CHAR, TOKEN_CHAR, VALUE_CHAR, trimOws } from './chars.js';

export const DEFAULT_MAX_HEAD_SIZE = 8 * 1024;
export const DEFAULT_MAX_HEADERS = 40;

export interface RequestParserOptions {
  /** Bytes of the head, request line to blank line. Default 8 KiB. */
  maxHeadSize?: number;
  /** Header lines. Default 40. */
  maxHeaders?: number;
}

/** A parsed request head. Header names are lower-case; lines are kept in order, duplicates included. */
export class RequestHead {
  constructor(
    readonly method: string,
    readonly target: string,
    /** '1.1' or '1.0'. */
    readonly version: '1.0' | '1.1',
    readonly headers: ReadonlyArray<readonly [name: string, value: string]>,
    /** Bytes of the head, request line to blank line, both included. */
    readonly size: number,
  ) {}

  /**
   * The value of header `name` (any case); when it appears on several lines,
   * the values joined with ", " (RFC 9110 §5.3). undefined if absent.
   */
  get(name: string): string | undefined {
    const key = name.toLowerCase();
    let value: string | undefined;
    for (const [n, v] of this.headers) {
      if (n === key) value = value === undefined ? v : `${value}, ${v}`;
    }
    return value;
  }

  /** Every value of header `name`, one per line, in order. */
  getAll(name: string): string[] {
    const key = name.toLowerCase();
    const out: string[] = [];
    for (const [n, v] of this.headers) if (n === key) out.push(v);
    return out;
  }

  /** How many lines header `name` has. */
  count(name: string): number {
    const key = name.toLowerCase();
    let n = 0;
    for (const h of this.headers) if (h[0] === key) n++;
    return n;
  }
}

export interface HeadComplete {
  head: RequestHead;
  /** Bytes of the last chunk that were head; chunk.subarray(consumed) is what came after it. */
  consumed: number;
}

export type ParseResult = 'need-more' | HeadComplete | HttpError;

const enum State {
  LineStart, // before the request line: skips empty lines
  LeadingLf, // after a CR of an empty line before the request line
  Method,
  Target,
  Version,
  RequestLineLf, // after the request line's CR
  HeaderStart, // start of a header line, or of the blank line
  Name,
  ValueStart, // optional whitespace after the colon
  Value,
  HeaderLf, // after a header line's CR
  EndLf, // after the blank line's CR
  Done,
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

// "HTTP/1.1": longer can only be wrong.
const MAX_VERSION_LENGTH = 8;

function checkLimit(name: string, value: number | undefined, dflt: number): number {
  if (value === undefined) return dflt;
  if (!Number.isInteger(value) || value < 1 || value > 2 ** 30) {
    throw new TypeError(`${name} must be an integer from 1 to 2^30, got ${String(value)}`);
  }
  return value;
}

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

/** "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3), checked by index: no pattern runs on bytes from the network. */
function isHttpVersion(v: string): boolean {
  return v.length === 8 && v.startsWith('HTTP/') && isDigit(v.charCodeAt(5)) && v.charCodeAt(6) === 0x2e && isDigit(v.charCodeAt(7));
}

function bad(code: string, message: string): HttpError {
  return new HttpError(code, 400, message);
}

export class RequestParser {
  readonly maxHeadSize: number;
  readonly maxHeaders: number;

  #state = State.LineStart;
  #size = 0; // head bytes consumed by earlier chunks
  #text = ''; // the part of the current element that came in earlier chunks
  #method = '';
  #target = '';
  #version: '1.0' | '1.1' = '1.1';
  #name = '';
  #headers: Array<readonly [string, string]> = [];
  #result: HttpError | null = null;

  constructor(options: RequestParserOptions = {}) {
    this.maxHeadSize = checkLimit('maxHeadSize', options.maxHeadSize, DEFAULT_MAX_HEAD_SIZE);
    this.maxHeaders = checkLimit('maxHeaders', options.maxHeaders, DEFAULT_MAX_HEADERS);
  }

  /** Forgets everything, to parse another head. */
  reset(): void {
    this.#state = State.LineStart;
    this.#size = 0;
    this.#text = '';
    this.#method = '';
    this.#target = '';
    this.#version = '1.1';
    this.#name = '';
    this.#headers = [];
    this.#result = null;
  }

  /**
   * Parses the next bytes of the head. After a head or an error has been
   * returned, push() throws until reset(). `chunk` is not kept.
   */
  push(chunk: Uint8Array): ParseResult {
    if (this.#state === State.Done) {
      throw new Error(`RequestParser.push(): the head was already ${this.#result === null ? 'parsed' : 'rejected'}; call reset() first`);
    }
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // Never look at more bytes than the head may still have.
    const end = Math.min(buf.length, this.maxHeadSize - this.#size);
    const result = this.#parse(buf, end);
    if (result !== 'need-more') {
      this.#state = State.Done;
      if (result instanceof HttpError) this.#result = result;
      return result;
    }
    this.#size += end;
    if (this.#size >= this.maxHeadSize) {
      // The limit is reached and the head has not ended: it is longer.
      this.#state = State.Done;
      this.#result = new HttpError('HTTP_ERR_HEAD_TOO_LARGE', 431, `request head larger than ${this.maxHeadSize} bytes`);
      return this.#result;
    }
    return 'need-more';
  }

  #parse(buf: Buffer, end: number): ParseResult {
    let state = this.#state;
    let i = 0;
    // Start, in this chunk, of the element being read (method, target, version, name or value).
    let mark = 0;
    const text = (to: number): string => {
      const s = this.#text + buf.toString('latin1', mark, to);
      this.#text = '';
      return s;
    };
    while (i < end) {
      switch (state) {
        case State.LineStart: {
          const c = buf[i]!;
          if (c === CR) {
            state = State.LeadingLf;
            i++;
          } else if (c === LF) {
            return bad('HTTP_ERR_BARE_LF', 'line ends with LF without CR');
          } else {
            state = State.Method;
            mark = i;
          }
          break;
        }
        case State.LeadingLf:
          if (buf[i] !== LF) return bad('HTTP_ERR_BARE_CR', 'CR not followed by LF');
          state = State.LineStart;
          i++;
          break;
        case State.Method: {
          while (i < end && TOKEN_CHAR[buf[i]!] === 1) i++;
          if (i === end) break;
          if (buf[i] !== SP) return bad('HTTP_ERR_INVALID_METHOD', 'invalid character in the method');
          this.#method = text(i);
          if (this.#method === '') return bad('HTTP_ERR_INVALID_METHOD', 'empty method');
          state = State.Target;
          mark = ++i;
          break;
        }
        case State.Target: {
          while (i < end && TARGET_CHAR[buf[i]!] === 1) i++;
          if (i === end) break;
          if (buf[i] !== SP) return bad('HTTP_ERR_INVALID_TARGET', 'invalid character in the request-target');
          this.#target = text(i);
          if (this.#target === '') return bad('HTTP_ERR_INVALID_TARGET', 'empty request-target');
          state = State.Version;
          mark = ++i;
          break;
        }
        case State.Version: {
          while (i < end && TARGET_CHAR[buf[i]!] === 1 && i - mark + this.#text.length < MAX_VERSION_LENGTH) i++;
          if (i === end) break;
          const c = buf[i]!;
          if (c === LF) return bad('HTTP_ERR_BARE_LF', 'line ends with LF without CR');
          if (c !== CR) return bad('HTTP_ERR_INVALID_VERSION', 'invalid HTTP version');
          const version = text(i);
          if (version === 'HTTP/1.1') this.#version = '1.1';
          else if (version === 'HTTP/1.0') this.#version = '1.0';
          else if (isHttpVersion(version)) return new HttpError('HTTP_ERR_VERSION_NOT_SUPPORTED', 505, `${version} is not supported`);
          else return bad('HTTP_ERR_INVALID_VERSION', 'invalid HTTP version');
          state = State.RequestLineLf;
          i++;
          break;
        }
        case State.RequestLineLf:
        case State.HeaderLf:
          if (buf[i] !== LF) return bad('HTTP_ERR_BARE_CR', 'CR not followed by LF');
          state = State.HeaderStart;
          i++;
          break;
        case State.HeaderStart: {
          const c = buf[i]!;
          if (c === CR) {
            state = State.EndLf;
            i++;
          } else if (c === SP || c === HTAB) {
            // obs-fold, or whitespace between the request line and the first header.
            return bad('HTTP_ERR_OBS_FOLD', 'header line starts with whitespace (obsolete line folding)');
          } else if (c === LF) {
            return bad('HTTP_ERR_BARE_LF', 'line ends with LF without CR');
          } else if (TOKEN_CHAR[c] === 1) {
            if (this.#headers.length === this.maxHeaders) {
              return new HttpError('HTTP_ERR_TOO_MANY_HEADERS', 431, `more than ${this.maxHeaders} header lines`);
            }
            state = State.Name;
            mark = i;
          } else {
            return bad('HTTP_ERR_INVALID_HEADER_NAME', c === COLON ? 'empty header name' : 'invalid character in a header name');
          }
          break;
        }
        case State.Name: {
          while (i < end && TOKEN_CHAR[buf[i]!] === 1) i++;
          if (i === end) break;
          const c = buf[i]!;
          if (c === SP || c === HTAB) return bad('HTTP_ERR_SPACE_BEFORE_COLON', 'whitespace between a header name and the colon');
          if (c !== COLON) return bad('HTTP_ERR_INVALID_HEADER_NAME', c === CR || c === LF ? 'header line without a colon' : 'invalid character in a header name');
          this.#name = text(i).toLowerCase();
          state = State.ValueStart;
          i++;
          break;
        }
        case State.ValueStart: {
          const c = buf[i]!;
          if (c === SP || c === HTAB) {
            i++;
          } else if (c === CR) {
            this.#headers.push([this.#name, '']);
            state = State.HeaderLf;
            i++;
          } else {
            state = State.Value;
            mark = i;
          }
          break;
        }
        case State.Value: {
          while (i < end && VALUE_CHAR[buf[i]!] === 1) i++;
          if (i === end) break;
          const c = buf[i]!;
          if (c === LF) return bad('HTTP_ERR_BARE_LF', 'line ends with LF without CR');
          if (c !== CR) return bad('HTTP_ERR_INVALID_HEADER_VALUE', 'control character in a header value');
          // Leading whitespace was skipped; trailing whitespace is not part of the value either.
          this.#headers.push([this.#name, trimOws(text(i))]);
          state = State.HeaderLf;
          i++;
          break;
        }
        case State.EndLf: {
          if (buf[i] !== LF) return bad('HTTP_ERR_BARE_CR', 'CR not followed by LF');
          i++;
          const head = new RequestHead(this.#method, this.#target, this.#version, this.#headers, this.#size + i);
          return { head, consumed: i };
        }
        default:
          throw new Error('RequestParser: unreachable state');
      }
    }
    // The chunk (or the head's byte budget) ran out inside an element: keep its beginning.
    if (state === State.Method || state === State.Target || state === State.Version || state === State.Name || state === State.Value) {
      this.#text += buf.toString('latin1', mark, end);
    }
    this.#state = state;
    return 'need-more';
  }
}
