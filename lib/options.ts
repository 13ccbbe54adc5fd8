// Option validation shared by every constructor and call that takes an
// options object (Engine, Upgrader, dial, compression, supervisor): one
// place for the messages, so that a mistake reads the same wherever it is
// made, and is caught at the call rather than on the first connection.
import { checkNegotiationOptions, type DeflateOptions } from './websocket/deflate.js';

/** The longest a Node timer (and a native deadline) can wait: 2^31-1 ms, about 24.8 days. */
export const MAX_MS = 2 ** 31 - 1;

/** An integer in [min, max] or a TypeError naming the option, the range and what was given. */
export function checkInt(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new TypeError(`${name} must be an integer ${range}, got ${String(value)}`);
  }
  return value;
}

/** checkInt for an optional option: `dflt` when absent. */
export function intOption(name: string, value: unknown, dflt: number, min: number, max: number): number {
  return value === undefined ? dflt : checkInt(name, value, min, max);
}

/** A duration option in ms, 0..MAX_MS (the most a timer can wait), `dflt` when absent. */
export function msOption(name: string, value: unknown, dflt: number, min = 0): number {
  return value === undefined ? dflt : checkInt(name, value, min, MAX_MS);
}

/** A boolean option, `dflt` when absent. */
export function boolOption(name: string, value: unknown, dflt: boolean): boolean {
  if (value === undefined) return dflt;
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean`);
  return value;
}

/** A function option (or absent). */
export function callbackOption<T>(name: string, fn: T | undefined): T | undefined {
  if (fn !== undefined && typeof fn !== 'function') throw new TypeError(`${name} must be a function`);
  return fn;
}

/** An array-of-strings option, copied (or undefined when absent). */
export function stringsOption(name: string, value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((s) => typeof s === 'string')) throw new TypeError(`${name} must be an array of strings`);
  return [...(value as string[])];
}

/**
 * Names other libraries (ws, Node's net and http) use for what netloop calls
 * otherwise: people bring their habits, and an alias is a better hint than
 * the nearest spelling. Each maps to candidates, the first known in the
 * options object being checked is suggested.
 */
const ALIASES: Readonly<Record<string, readonly string[]>> = {
  port: ['addrs'],
  addr: ['addrs'],
  address: ['addrs'],
  addresses: ['addrs'],
  host: ['addrs'],
  hostname: ['addrs'],
  listen: ['addrs'],
  maxPayload: ['messageLengthLimit'],
  maxMessageSize: ['messageLengthLimit', 'maxMessageLength'],
  paths: ['path'],
  perMessageDeflate: ['compression'],
  protocols: ['subprotocols'],
  handleProtocols: ['subprotocols'],
  verifyClient: ['checkOrigin'],
  maxHeaderSize: ['maxHeadSize'],
  highWaterMark: ['maxWriteBufferSize'],
  timeout: ['dialTimeout', 'handshakeTimeout', 'startTimeout'],
  keepAlive: ['keepaliveTime'],
  pingInterval: ['keepaliveTime'],
  threads: ['workers'],
  cluster: ['workers'],
  zlibDeflateOptions: ['level', 'memLevel'],
  serverMaxWindow: ['serverMaxWindowBits'],
  clientMaxWindow: ['clientMaxWindowBits'],
};

/** Levenshtein distance, for suggesting the option that was probably meant. */
export function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The known name `name` was probably meant to be: an alias's target, a case slip, or the nearest spelling within a third of its length. */
export function nearestName(name: string, known: readonly string[]): string | undefined {
  const alias = Object.hasOwn(ALIASES, name) ? ALIASES[name]!.find((k) => known.includes(k)) : undefined;
  if (alias !== undefined) return alias;
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const k of known) {
    const d = k.toLowerCase() === lower ? 0 : editDistance(lower, k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * Throws a TypeError for the first own key of `options` that `known` does
 * not have: "Engine: unknown option 'port' (did you mean 'addrs'?)". A
 * misspelt option is otherwise silently ignored, and its default runs.
 * `known` is written as an object literal checked against the options
 * interface (`satisfies Record<keyof T, true>`), so that a new option cannot
 * be forgotten here.
 */
export function checkKnownOptions(what: string, options: object, known: Readonly<Record<string, true>>): void {
  for (const key of Object.keys(options)) {
    if (Object.hasOwn(known, key)) continue;
    const hint = nearestName(key, Object.keys(known));
    throw new TypeError(`${what}: unknown option '${key}'${hint !== undefined ? ` (did you mean '${hint}'?)` : ''}`);
  }
}

/** An options argument: an object (or absent). */
export function checkOptionsObject(what: string, options: unknown): void {
  if (options === null || typeof options !== 'object') throw new TypeError(`${what}: options must be an object`);
}

// Every permessage-deflate option's name (negotiation and codec), checked
// against DeflateOptions by the compiler.
const DEFLATE_OPTIONS = {
  serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: true, clientMaxWindowBits: true,
  offerClientMaxWindowBits: true, threshold: true, level: true, memLevel: true, maxMessageLength: true, maxCompressedConnections: true,
} as const satisfies Record<keyof DeflateOptions, true>;

/**
 * The `compression` option of Upgrader and dial: false/absent -> null, true
 * -> the defaults, an object -> a copy, every name and value checked now
 * (the codec itself is only built when a connection first compresses, which
 * is too late to learn that `level: 12` was a mistake). The ranges are
 * those of PerMessageDeflate (deflate.ts), which checks them again.
 */
export function compressionOption(what: string, value: unknown): DeflateOptions | null {
  if (value === undefined || value === false) return null;
  if (value === true) return {};
  if (value === null || typeof value !== 'object') throw new TypeError(`${what}: compression must be a boolean or an options object`);
  checkKnownOptions(`${what} compression`, value, DEFLATE_OPTIONS);
  const o = { ...(value as DeflateOptions) };
  intOption('compression.threshold', o.threshold, 0, 0, Number.MAX_SAFE_INTEGER);
  intOption('compression.level', o.level, 0, -1, 9);
  intOption('compression.memLevel', o.memLevel, 8, 1, 9);
  intOption('compression.maxMessageLength', o.maxMessageLength, 0, 0, Number.MAX_SAFE_INTEGER);
  checkNegotiationOptions(o);
  return o;
}

/**
 * The `path` option: a string, a list of strings, a RegExp or a predicate.
 * Anything else would only fail on the first request, inside the handshake.
 */
export function checkPathOption(what: string, path: unknown): void {
  if (path === undefined || typeof path === 'string' || typeof path === 'function' || path instanceof RegExp) return;
  if (Array.isArray(path) && path.every((p) => typeof p === 'string')) return;
  throw new TypeError(`${what}: path must be a string, an array of strings, a RegExp or a function (path, head) => boolean, got ${path === null ? 'null' : Array.isArray(path) ? 'an array with a non-string' : typeof path}`);
}
