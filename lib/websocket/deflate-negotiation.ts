// permessage-deflate negotiation (RFC 7692 §5, §7.1) as pure functions: the
// Sec-WebSocket-Extensions grammar (RFC 6455 §9.1), the server's choice
// among the client's offers and the response it sends, the client's offer
// and its check of the server's response. No I/O, no zlib: the result is a
// DeflateParams that deflate.ts turns into a codec.
//
// Syntax versus semantics. A header that does not follow the grammar (an
// unterminated quoted-string, "a;;b", "a b") cannot be split into offers
// reliably, so parseExtensions() throws and checkUpgrade() answers 400. A
// well-formed offer whose parameters are unknown, repeated or out of range
// is only declined (§7: "a server MUST decline"), and the next offer is
// tried; with none left no extension is used and the handshake goes on.
//
// Names of extensions and parameters are compared ignoring ASCII case (tokens
// are case-insensitive elsewhere in HTTP; browsers send lower case anyway).
// Responses are written in the canonical lower case.
import { NetloopError } from '../errors.js';
import { TOKEN_CHAR } from '../http/chars.js';

export const PERMESSAGE_DEFLATE = 'permessage-deflate';

/** What both sides agreed, resolved to the values in force ("effective"), never absent. */
export interface DeflateParams {
  /** The server resets its compressor after each message (§7.1.1.1). */
  serverNoContextTakeover: boolean;
  /** The client resets its compressor after each message (§7.1.1.2). */
  clientNoContextTakeover: boolean;
  /** LZ77 window of the server's compressor, 8..15 (§7.1.2.1); the client inflates with it. */
  serverMaxWindowBits: number;
  /** LZ77 window of the client's compressor, 8..15 (§7.1.2.2); the server inflates with it. */
  clientMaxWindowBits: number;
}

/**
 * The negotiation options. On a server they say what it will accept and ask
 * for; on a client what it offers. The codec options (threshold, level,
 * memLevel, maxMessageLength) live in the same object for convenience and
 * are read by deflate.ts only.
 */
export interface DeflateNegotiationOptions {
  /**
   * Server: always reset its own compressor (respond server_no_context_takeover
   * even when not asked; saves the compressor's memory between messages).
   * Client: ask the server for it; a response without it fails the handshake.
   * An offer asking for it is always honoured by the server. Default false.
   */
  serverNoContextTakeover?: boolean;
  /**
   * Server: ask the client to reset its compressor (respond
   * client_no_context_takeover; the server then keeps no inflater between
   * messages). Also answered when the client offered it. Client: announce it
   * in the offer and reset the compressor after each message. Default false.
   */
  clientNoContextTakeover?: boolean;
  /**
   * Server: the largest window its compressor uses, 8..15; sent as
   * server_max_window_bits when below 15 or when the client asked for a
   * limit (then the smaller of the two). Client: offer it as the limit the
   * server's compressor must keep (its inflater uses that window). Default 15.
   */
  serverMaxWindowBits?: number;
  /**
   * Server: the largest window the client's compressor may use, 8..15,
   * answered as client_max_window_bits (the smaller of it and the client's
   * offered value). An offer without client_max_window_bits cannot be told a
   * limit (§7.1.2.2), so with this option set such an offer is declined.
   * Client: offered as client_max_window_bits=N (the client compresses with
   * at most N); unset, "client_max_window_bits" is offered without a value
   * (see offerClientMaxWindowBits), telling the server it may set a limit.
   * Default 15 (no limit).
   */
  clientMaxWindowBits?: number;
  /**
   * Client only: whether the offer carries client_max_window_bits when
   * clientMaxWindowBits is not set. Without it the server may not limit the
   * client's window, and a response that does fails the handshake; servers
   * configured with a limit decline such offers. Default true.
   */
  offerClientMaxWindowBits?: boolean;
}

/** One element of a Sec-WebSocket-Extensions list: a name and its parameters in order. */
export interface ExtensionElement {
  name: string;
  /** [name, value]; value is true for a parameter without "=", the unescaped string otherwise. */
  params: Array<[string, string | true]>;
}

/** What the server agreed to: the response header value and the parameters in force. */
export interface ServerNegotiation {
  /** Value of the Sec-WebSocket-Extensions response header, e.g. "permessage-deflate; client_max_window_bits=10". */
  response: string;
  params: DeflateParams;
}

/**
 * A Sec-WebSocket-Extensions value that cannot be used. `code`:
 * WS_ERR_INVALID_EXTENSIONS_SYNTAX (not the RFC 6455 §9.1 grammar),
 * WS_ERR_UNEXPECTED_EXTENSION (a response naming an extension the client did
 * not offer, or several), WS_ERR_INVALID_DEFLATE_RESPONSE (a
 * permessage-deflate response the client must reject, §7 / §7.1).
 */
export class ExtensionNegotiationError extends NetloopError {}

const MIN_WINDOW_BITS = 8;
const MAX_WINDOW_BITS = 15;

/**
 * §7.1.2.1: "a decimal integer value without leading zeroes between 8 to 15,
 * inclusive". Compared by index, as every value read from the network is.
 */
function isWindowBitsValue(v: string): boolean {
  if (v.length === 1) return v === '8' || v === '9';
  return v.length === 2 && v.charCodeAt(0) === 0x31 && v.charCodeAt(1) >= 0x30 && v.charCodeAt(1) <= 0x35;
}

// ---------------------------------------------------------------------------
// The header grammar (RFC 6455 §9.1 with RFC 9110 list rules):
//
//   extension-list = 1#extension          ; empty elements ignored (§5.6.1)
//   extension      = token *( OWS ";" OWS extension-param )
//   extension-param = token [ OWS "=" OWS ( token / quoted-string ) ]
//
// RFC 6455 writes the grammar with implied linear whitespace, so OWS is
// allowed around ";", "," and "=". A quoted-string value is unescaped here;
// whether it then is a token (as §9.1 requires) is checked by whoever
// interprets the parameter, so that an odd value in an extension we do not
// implement cannot fail the header.

const SP = 0x20;
const HTAB = 0x09;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;

function isTchar(c: number): boolean {
  return c <= 0xff && TOKEN_CHAR[c] === 1;
}

/** qdtext: HTAB, SP, 0x21, 0x23-0x5B, 0x5D-0x7E, obs-text 0x80-0xFF. */
function isQdtext(c: number): boolean {
  return c === HTAB || c === SP || c === 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || (c >= 0x80 && c <= 0xff);
}

/** The second character of a quoted-pair: HTAB, SP, VCHAR, obs-text. */
function isQuotedPairChar(c: number): boolean {
  return c === HTAB || (c >= 0x20 && c <= 0x7e) || (c >= 0x80 && c <= 0xff);
}

class HeaderScanner {
  pos = 0;
  constructor(readonly s: string) {}

  get done(): boolean {
    return this.pos >= this.s.length;
  }

  peek(): number {
    return this.pos < this.s.length ? this.s.charCodeAt(this.pos) : -1;
  }

  skipOws(): void {
    while (this.pos < this.s.length) {
      const c = this.s.charCodeAt(this.pos);
      if (c !== SP && c !== HTAB) return;
      this.pos++;
    }
  }

  token(what: string): string {
    const start = this.pos;
    while (this.pos < this.s.length && isTchar(this.s.charCodeAt(this.pos))) this.pos++;
    if (this.pos === start) this.fail(`expected ${what}`);
    return this.s.slice(start, this.pos);
  }

  quotedString(): string {
    const start = this.pos;
    this.pos++; // the opening quote
    let out = '';
    while (this.pos < this.s.length) {
      const c = this.s.charCodeAt(this.pos);
      if (c === DQUOTE) {
        this.pos++;
        return out;
      }
      if (c === BACKSLASH) {
        const next = this.pos + 1 < this.s.length ? this.s.charCodeAt(this.pos + 1) : -1;
        if (!isQuotedPairChar(next)) this.fail('invalid quoted-pair');
        out += this.s[this.pos + 1];
        this.pos += 2;
        continue;
      }
      if (!isQdtext(c)) this.fail('invalid character in a quoted-string');
      out += this.s[this.pos];
      this.pos++;
    }
    this.pos = start;
    return this.fail('unterminated quoted-string');
  }

  fail(message: string): never {
    throw new ExtensionNegotiationError(
      'WS_ERR_INVALID_EXTENSIONS_SYNTAX',
      `malformed Sec-WebSocket-Extensions at offset ${this.pos}: ${message}`,
    );
  }
}

/**
 * Splits a Sec-WebSocket-Extensions value (all header lines joined with
 * ", ") into its elements, in order. Throws ExtensionNegotiationError
 * (WS_ERR_INVALID_EXTENSIONS_SYNTAX) when it does not follow the grammar.
 * "" or only commas and whitespace give [].
 */
export function parseExtensions(value: string): ExtensionElement[] {
  if (typeof value !== 'string') throw new TypeError('parseExtensions(value): value must be a string');
  const sc = new HeaderScanner(value);
  const out: ExtensionElement[] = [];
  for (;;) {
    sc.skipOws();
    if (sc.done) return out;
    if (sc.peek() === 0x2c) {
      sc.pos++; // an empty list element
      continue;
    }
    const name = sc.token('an extension name');
    const params: Array<[string, string | true]> = [];
    for (;;) {
      sc.skipOws();
      if (sc.peek() !== 0x3b) break; // ";"
      sc.pos++;
      sc.skipOws();
      const param = sc.token('a parameter name');
      sc.skipOws();
      let v: string | true = true;
      if (sc.peek() === 0x3d) {
        // "="
        sc.pos++;
        sc.skipOws();
        v = sc.peek() === DQUOTE ? sc.quotedString() : sc.token('a parameter value');
      }
      params.push([param, v]);
    }
    out.push({ name, params });
    sc.skipOws();
    if (sc.done) return out;
    if (sc.peek() !== 0x2c) sc.fail('expected "," or ";"');
    sc.pos++;
  }
}

// ---------------------------------------------------------------------------
// The parameters of one permessage-deflate element

interface ParsedParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  /** undefined: absent. */
  serverMaxWindowBits: number | undefined;
  /** undefined: absent; true: present without a value. */
  clientMaxWindowBits: number | true | undefined;
}

/**
 * Reads the parameters of a permessage-deflate element. Returns the reason
 * as a string when they break §7: a parameter not defined for the element,
 * one given twice, or a value that is not allowed.
 */
function readParams(params: ReadonlyArray<readonly [string, string | true]>, side: 'offer' | 'response'): ParsedParams | string {
  const out: ParsedParams = {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: undefined,
    clientMaxWindowBits: undefined,
  };
  const seen = new Set<string>();
  for (const [rawName, value] of params) {
    const name = rawName.toLowerCase();
    if (seen.has(name)) return `duplicate parameter ${name}`;
    seen.add(name);
    switch (name) {
      case 'server_no_context_takeover':
      case 'client_no_context_takeover':
        if (value !== true) return `${name} takes no value`;
        if (name === 'server_no_context_takeover') out.serverNoContextTakeover = true;
        else out.clientNoContextTakeover = true;
        break;
      case 'server_max_window_bits':
        if (value === true || !isWindowBitsValue(value)) return `${name} needs a value from 8 to 15, got ${describe(value)}`;
        out.serverMaxWindowBits = Number(value);
        break;
      case 'client_max_window_bits':
        // Without a value only in an offer (§7.1.2.2: the response limits the client, so it carries the limit).
        if (value === true) {
          if (side === 'response') return `${name} in a response needs a value from 8 to 15`;
          out.clientMaxWindowBits = true;
        } else if (!isWindowBitsValue(value)) {
          return `${name} needs a value from 8 to 15, got ${describe(value)}`;
        } else {
          out.clientMaxWindowBits = Number(value);
        }
        break;
      default:
        return `unknown parameter ${rawName}`;
    }
  }
  return out;
}

function describe(value: string | true): string {
  return value === true ? 'none' : JSON.stringify(value);
}

function isDeflate(e: ExtensionElement): boolean {
  return e.name.toLowerCase() === PERMESSAGE_DEFLATE;
}

/** The canonical element for agreed parameters; window sizes only when `server`/`client` bits are given. */
function formatElement(p: {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits?: number | undefined;
  clientMaxWindowBits?: number | true | undefined;
}): string {
  let s = PERMESSAGE_DEFLATE;
  if (p.serverNoContextTakeover) s += '; server_no_context_takeover';
  if (p.clientNoContextTakeover) s += '; client_no_context_takeover';
  if (p.serverMaxWindowBits !== undefined) s += `; server_max_window_bits=${p.serverMaxWindowBits}`;
  if (p.clientMaxWindowBits === true) s += '; client_max_window_bits';
  else if (p.clientMaxWindowBits !== undefined) s += `; client_max_window_bits=${p.clientMaxWindowBits}`;
  return s;
}

function windowBitsOption(options: DeflateNegotiationOptions, key: 'serverMaxWindowBits' | 'clientMaxWindowBits'): number | undefined {
  const v = options[key];
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < MIN_WINDOW_BITS || v > MAX_WINDOW_BITS) {
    throw new RangeError(`permessage-deflate: ${key} must be an integer from 8 to 15, got ${String(v)}`);
  }
  return v;
}

function flagOption(
  options: DeflateNegotiationOptions,
  key: 'serverNoContextTakeover' | 'clientNoContextTakeover' | 'offerClientMaxWindowBits',
  fallback = false,
): boolean {
  const v = options[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new TypeError(`permessage-deflate: ${key} must be a boolean, got ${typeof v}`);
  return v;
}

/** Validates the negotiation options (TypeError, RangeError); the friendly layer calls this once. */
export function checkNegotiationOptions(options: DeflateNegotiationOptions): void {
  if (options === null || typeof options !== 'object') throw new TypeError('permessage-deflate: options must be an object');
  flagOption(options, 'serverNoContextTakeover');
  flagOption(options, 'clientNoContextTakeover');
  flagOption(options, 'offerClientMaxWindowBits');
  windowBitsOption(options, 'serverMaxWindowBits');
  windowBitsOption(options, 'clientMaxWindowBits');
}

// ---------------------------------------------------------------------------
// Server

/**
 * Decides on one permessage-deflate offer: the agreement, or the reason it
 * is declined.
 */
export function acceptOffer(offer: ExtensionElement, options: DeflateNegotiationOptions = {}): ServerNegotiation | string {
  const parsed = readParams(offer.params, 'offer');
  if (typeof parsed === 'string') return parsed;
  const ownServerBits = windowBitsOption(options, 'serverMaxWindowBits');
  const ownClientBits = windowBitsOption(options, 'clientMaxWindowBits');

  // §7.1.1.1: an offer asking for it is accepted by answering it; the server
  // may also answer it unasked. Resetting the compressor is always possible.
  const serverNoContextTakeover = flagOption(options, 'serverNoContextTakeover') || parsed.serverNoContextTakeover;
  // §7.1.1.2: the server may answer it, asked or not. Answering the client's
  // own hint costs nothing and lets the server drop its inflater per message.
  const clientNoContextTakeover = flagOption(options, 'clientNoContextTakeover') || parsed.clientNoContextTakeover;

  // §7.1.2.1: answered with the same or a smaller value when offered; the
  // server may also announce its own limit unasked. Every value 8..15 can be
  // honoured (deflate.ts: a window of 8 bits is compressed with zlib's 9).
  let serverBits: number | undefined;
  if (parsed.serverMaxWindowBits !== undefined) serverBits = Math.min(parsed.serverMaxWindowBits, ownServerBits ?? MAX_WINDOW_BITS);
  else if (ownServerBits !== undefined && ownServerBits < MAX_WINDOW_BITS) serverBits = ownServerBits;

  // §7.1.2.2: without client_max_window_bits in the offer the response must
  // not carry it. A server configured to limit the client's window then
  // declines, so that its per-connection inflater memory stays what it set.
  let clientBits: number | undefined;
  let clientWindow = MAX_WINDOW_BITS;
  const offered = parsed.clientMaxWindowBits;
  if (offered === undefined) {
    if (ownClientBits !== undefined && ownClientBits < MAX_WINDOW_BITS) {
      return 'client_max_window_bits is required by the server (clientMaxWindowBits) but was not offered';
    }
  } else {
    // An offered value is a promise too: the client compresses with at most
    // that window whatever the answer, so the server answers the smaller.
    const hint = offered === true ? MAX_WINDOW_BITS : offered;
    clientWindow = Math.min(hint, ownClientBits ?? MAX_WINDOW_BITS);
    if (offered !== true || clientWindow < MAX_WINDOW_BITS) clientBits = clientWindow;
  }

  return {
    response: formatElement({ serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits: serverBits, clientMaxWindowBits: clientBits }),
    params: {
      serverNoContextTakeover,
      clientNoContextTakeover,
      serverMaxWindowBits: serverBits ?? MAX_WINDOW_BITS,
      clientMaxWindowBits: clientWindow,
    },
  };
}

/**
 * The server's side (§5, §7): picks the first permessage-deflate offer in
 * the client's Sec-WebSocket-Extensions value that it can honour, in the
 * client's order of preference. Returns null when none can be (offers that
 * break §7 are declined, other extensions ignored). Throws
 * ExtensionNegotiationError for a value that breaks the header grammar
 * (checkUpgrade answers 400) and RangeError/TypeError for bad options.
 */
export function negotiateServer(headerValue: string, options: DeflateNegotiationOptions = {}): ServerNegotiation | null {
  checkNegotiationOptions(options);
  for (const element of parseExtensions(headerValue)) {
    if (!isDeflate(element)) continue;
    const r = acceptOffer(element, options);
    if (typeof r !== 'string') return r;
  }
  return null;
}

/**
 * A negotiateExtensions hook for checkUpgrade() (lib/http/upgrade.ts) that
 * hands the agreement to `onAgreed` before checkUpgrade() returns, since its
 * result carries only the response header value:
 *
 *   let agreed = null;
 *   const r = checkUpgrade(head, { negotiateExtensions: deflateUpgradeHook(opts, (n) => (agreed = n)) });
 *   if (r.accept && agreed) receiver.setDecompressor(new PerMessageDeflate(agreed.params, 'server', opts));
 */
export function deflateUpgradeHook(
  options: DeflateNegotiationOptions,
  onAgreed: (agreement: ServerNegotiation) => void,
): (offer: string) => { responseHeaderValue: string; rsv1Allowed: true } | null {
  checkNegotiationOptions(options);
  return (offer: string) => {
    const agreed = negotiateServer(offer, options);
    if (agreed === null) return null;
    onAgreed(agreed);
    return { responseHeaderValue: agreed.response, rsv1Allowed: true };
  };
}

// ---------------------------------------------------------------------------
// Client

/**
 * The client's offer, the value of its Sec-WebSocket-Extensions header, e.g.
 * "permessage-deflate; client_max_window_bits". It carries
 * client_max_window_bits (without a value unless clientMaxWindowBits is set)
 * so that a server may limit the client's window rather than decline, unless
 * offerClientMaxWindowBits is false.
 */
export function offerClient(options: DeflateNegotiationOptions = {}): string {
  checkNegotiationOptions(options);
  const serverBits = windowBitsOption(options, 'serverMaxWindowBits');
  const clientBits = windowBitsOption(options, 'clientMaxWindowBits');
  return formatElement({
    serverNoContextTakeover: flagOption(options, 'serverNoContextTakeover'),
    clientNoContextTakeover: flagOption(options, 'clientNoContextTakeover'),
    serverMaxWindowBits: serverBits !== undefined && serverBits < MAX_WINDOW_BITS ? serverBits : undefined,
    clientMaxWindowBits:
      clientBits !== undefined && clientBits < MAX_WINDOW_BITS ? clientBits : flagOption(options, 'offerClientMaxWindowBits', true) ? true : undefined,
  });
}

function responseError(message: string): ExtensionNegotiationError {
  return new ExtensionNegotiationError('WS_ERR_INVALID_DEFLATE_RESPONSE', `invalid permessage-deflate response: ${message}`);
}

/**
 * The client's check of the server's Sec-WebSocket-Extensions response to
 * the offer offerClient(options) made (§7, §7.1). Returns:
 *  - null when the server accepted no extension (no header, or an empty one);
 *  - the parameters in force when the response is one the offer allows;
 *  - an ExtensionNegotiationError otherwise: the client must fail the
 *    connection (RFC 6455 §4.1). Cases: bad syntax; an extension other than
 *    permessage-deflate, or more than one element; unknown, repeated or
 *    out-of-range parameters; client_max_window_bits without a value, not
 *    offered, or above the offered value; server_max_window_bits above the
 *    requested value, or missing although requested;
 *    server_no_context_takeover missing although requested.
 */
export function acceptClientResponse(
  headerValue: string | undefined,
  options: DeflateNegotiationOptions = {},
): DeflateParams | null | ExtensionNegotiationError {
  checkNegotiationOptions(options);
  if (headerValue === undefined) return null;
  let elements: ExtensionElement[];
  try {
    elements = parseExtensions(headerValue);
  } catch (err) {
    if (err instanceof ExtensionNegotiationError) return err;
    throw err;
  }
  if (elements.length === 0) return null;
  const first = elements[0]!;
  if (elements.length > 1 || !isDeflate(first)) {
    const names = elements.map((e) => e.name).join(', ');
    return new ExtensionNegotiationError(
      'WS_ERR_UNEXPECTED_EXTENSION',
      `the server accepted extensions that were not offered (only one permessage-deflate was): ${names}`,
    );
  }
  const parsed = readParams(first.params, 'response');
  if (typeof parsed === 'string') return responseError(parsed);

  const askedServerNoContext = flagOption(options, 'serverNoContextTakeover');
  const askedServerBits = windowBitsOption(options, 'serverMaxWindowBits');
  const offeredClientBits = windowBitsOption(options, 'clientMaxWindowBits');

  // §7.1.1.1: the server accepts the request by answering it.
  if (askedServerNoContext && !parsed.serverNoContextTakeover) return responseError('server_no_context_takeover was requested but not answered');

  // §7.1.2.1: an offered limit is accepted with the same or a smaller value.
  let serverBits = parsed.serverMaxWindowBits ?? MAX_WINDOW_BITS;
  if (askedServerBits !== undefined && askedServerBits < MAX_WINDOW_BITS) {
    if (parsed.serverMaxWindowBits === undefined) return responseError(`server_max_window_bits=${askedServerBits} was requested but not answered`);
    if (parsed.serverMaxWindowBits > askedServerBits) {
      return responseError(`server_max_window_bits=${parsed.serverMaxWindowBits} is above the requested ${askedServerBits}`);
    }
  }
  serverBits = Math.min(serverBits, askedServerBits ?? MAX_WINDOW_BITS);

  // §7.1.2.2: the response may limit the client's window only if the offer
  // carried client_max_window_bits, and to at most the offered value.
  const offeredClientParam =
    (offeredClientBits !== undefined && offeredClientBits < MAX_WINDOW_BITS) || flagOption(options, 'offerClientMaxWindowBits', true);
  const ownClientBits = offeredClientBits ?? MAX_WINDOW_BITS;
  const answered = parsed.clientMaxWindowBits;
  if (answered !== undefined && !offeredClientParam) return responseError('client_max_window_bits was not offered');
  if (typeof answered === 'number' && answered > ownClientBits) {
    return responseError(`client_max_window_bits=${answered} is above the offered ${ownClientBits}`);
  }
  const clientBits = Math.min(typeof answered === 'number' ? answered : MAX_WINDOW_BITS, ownClientBits);

  return {
    serverNoContextTakeover: parsed.serverNoContextTakeover,
    clientNoContextTakeover: parsed.clientNoContextTakeover || flagOption(options, 'clientNoContextTakeover'),
    serverMaxWindowBits: serverBits,
    clientMaxWindowBits: clientBits,
  };
}
