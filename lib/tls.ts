// TLS options: validated here (the friendly layer), turned into OpenSSL
// contexts by native/tls.cc on Node's own OpenSSL, and the native failure
// codes turned into errors that say why (errors.ts: TLSHandshakeError).
import { Buffer } from 'node:buffer';
import { rootCertificates } from 'node:tls';
import { boolOption, checkKnownOptions, checkOptionsObject, intOption, stringsOption } from './options.js';
import { TLSError, TLSHandshakeError } from './errors.js';
import {
  binding,
  TLS_ERR_EOF,
  TLS_ERR_HANDSHAKE,
  TLS_ERR_PROTOCOL,
  TLS_ERR_TIMEOUT,
  TLS_ERR_TOO_LARGE,
  TLS_ERR_VERIFY,
  type NativeTlsConfig,
  type NativeTlsContext,
} from './native.js';

/** PEM text: a string, a Buffer, or a list of them (concatenated). */
export type Pem = string | Buffer | (string | Buffer)[];

/** A certificate and its key, for one SNI name. */
export interface TlsCertificate {
  /** The certificate chain, PEM, leaf first. */
  cert: Pem;
  /** Its private key, PEM. */
  key: Pem;
  /** The key's passphrase, when it is encrypted. */
  passphrase?: string;
}

/** Server TLS (EngineOptions.tls, an `addrs` entry's tls, Engine.setSecureContext). */
export interface TlsServerOptions extends TlsCertificate {
  /** Trusted issuers of client certificates (with requestCert). */
  ca?: Pem;
  /** TLS 1.2 cipher list, OpenSSL syntax. Default: OpenSSL's. */
  ciphers?: string;
  /** TLS 1.3 cipher suites, OpenSSL syntax. Default: OpenSSL's. */
  ciphersuites?: string;
  /** Lowest protocol version accepted. Default 'TLSv1.2'. */
  minVersion?: TlsVersion;
  /** Highest protocol version. Default 'TLSv1.3'. */
  maxVersion?: TlsVersion;
  /** ALPN protocols, preferred first (e.g. ['http/1.1']). A client offering none of them is refused. Default: no ALPN. */
  alpn?: string[];
  /** Ask clients for a certificate. Default false. */
  requestCert?: boolean;
  /** With requestCert: refuse clients without a valid one. Default true. */
  rejectUnauthorized?: boolean;
  /** Other certificates by the SNI name the client asks for: exact names or '*.example.com'. */
  sni?: Record<string, TlsCertificate>;
  /** Seconds a session ticket (resumption) is valid; ticket keys rotate at this interval. Default 300. */
  sessionTimeout?: number;
}

/** Client TLS (Engine.dial's `tls`, dial('wss://...')). */
export interface TlsClientOptions {
  /** The name sent as SNI and checked against the certificate. Default: the dialed host. */
  servername?: string;
  /** Trusted issuers. Default: Node's bundled root certificates (tls.rootCertificates). */
  ca?: Pem;
  /** Refuse a server whose certificate does not verify (or is for another host). Default true. */
  rejectUnauthorized?: boolean;
  /** A client certificate, PEM. */
  cert?: Pem;
  /** Its key. */
  key?: Pem;
  passphrase?: string;
  /** ALPN protocols offered. */
  alpn?: string[];
  minVersion?: TlsVersion;
  maxVersion?: TlsVersion;
  ciphers?: string;
}

export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/** Facts of an established TLS connection (Conn.tls). */
export interface TlsInfo {
  /** 'TLSv1.3' or 'TLSv1.2'. */
  protocol: string;
  cipher: string;
  /** The ALPN protocol agreed, '' when none. */
  alpn: string;
  /** Server side: the SNI name the client asked for, '' when none. */
  servername: string;
  /** Whether the session was resumed (a ticket). */
  resumed: boolean;
}

const VERSIONS: Record<TlsVersion, number> = { 'TLSv1.2': 0x0303, 'TLSv1.3': 0x0304 };

const CERT_OPTIONS = { cert: true, key: true, passphrase: true } as const satisfies Record<keyof TlsCertificate, true>;
const SERVER_OPTIONS = {
  ...CERT_OPTIONS, ca: true, ciphers: true, ciphersuites: true, minVersion: true, maxVersion: true, alpn: true,
  requestCert: true, rejectUnauthorized: true, sni: true, sessionTimeout: true,
} as const satisfies Record<keyof TlsServerOptions, true>;
const CLIENT_OPTIONS = {
  servername: true, ca: true, rejectUnauthorized: true, cert: true, key: true, passphrase: true, alpn: true,
  minVersion: true, maxVersion: true, ciphers: true,
} as const satisfies Record<keyof TlsClientOptions, true>;

function pem(name: string, value: unknown, required: boolean): string | undefined {
  if (value === undefined) {
    if (required) throw new TypeError(`${name} is required (PEM text)`);
    return undefined;
  }
  const parts = Array.isArray(value) ? value : [value];
  if (parts.length === 0 || !parts.every((p) => typeof p === 'string' || Buffer.isBuffer(p))) {
    throw new TypeError(`${name} must be PEM text: a string, a Buffer or an array of them`);
  }
  const text = parts.map((p) => (typeof p === 'string' ? p : p.toString('latin1'))).join('\n');
  if (!text.includes('-----BEGIN ')) throw new TypeError(`${name} is not PEM text (no -----BEGIN line): pass the file's contents, not its path`);
  return text;
}

function version(name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !Object.hasOwn(VERSIONS, value)) throw new TypeError(`${name} must be 'TLSv1.2' or 'TLSv1.3', got ${String(value)}`);
  return VERSIONS[value as TlsVersion];
}

function optionalString(name: string, value: unknown): string | undefined {
  if (value !== undefined && typeof value !== 'string') throw new TypeError(`${name} must be a string`);
  return value;
}

/** ALPN names in wire format: each prefixed with its length (RFC 7301 §3.1). */
function alpnWire(name: string, value: unknown): Buffer | undefined {
  const list = stringsOption(name, value);
  if (list === undefined || list.length === 0) return undefined;
  const parts: Buffer[] = [];
  for (const p of list) {
    const b = Buffer.from(p, 'latin1');
    if (b.length === 0 || b.length > 255) throw new TypeError(`${name}: every protocol name must be 1 to 255 bytes, got '${p}'`);
    parts.push(Buffer.from([b.length]), b);
  }
  return Buffer.concat(parts);
}

// The message of a failed native context, prefixed so that the user knows
// which option it is about when several certificates are configured.
function createContext(what: string, config: NativeTlsConfig): NativeTlsContext {
  try {
    return binding.createTlsContext(config);
  } catch (err) {
    const e = new TypeError(`${what}: ${(err as Error).message}`);
    throw Object.assign(e, { code: 'NETLOOP_TLS_CONFIG' });
  }
}

/** Checks server options and builds the OpenSSL context (SNI children included): errors name what is wrong, at once. */
export function serverContext(what: string, options: unknown): NativeTlsContext {
  checkOptionsObject(what, options);
  checkKnownOptions(what, options as object, SERVER_OPTIONS);
  const o = options as TlsServerOptions;
  const base = {
    server: true,
    ca: pem(`${what}.ca`, o.ca, false),
    ciphers: optionalString(`${what}.ciphers`, o.ciphers),
    ciphersuites: optionalString(`${what}.ciphersuites`, o.ciphersuites),
    minVersion: version(`${what}.minVersion`, o.minVersion) ?? VERSIONS['TLSv1.2'],
    maxVersion: version(`${what}.maxVersion`, o.maxVersion),
    alpn: alpnWire(`${what}.alpn`, o.alpn),
    requestCert: boolOption(`${what}.requestCert`, o.requestCert, false),
    rejectUnauthorized: boolOption(`${what}.rejectUnauthorized`, o.rejectUnauthorized, true),
    sessionTimeout: intOption(`${what}.sessionTimeout`, o.sessionTimeout, 300, 1, 7 * 24 * 3600),
  };
  const sni: [string, NativeTlsContext][] = [];
  if (o.sni !== undefined) {
    if (o.sni === null || typeof o.sni !== 'object') throw new TypeError(`${what}.sni must be an object { 'host.name': { cert, key } }`);
    for (const [name, entry] of Object.entries(o.sni)) {
      if (!/^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?$/.test(name)) throw new TypeError(`${what}.sni: '${name}' is not a host name (or '*.domain')`);
      const w = `${what}.sni['${name}']`;
      checkOptionsObject(w, entry);
      checkKnownOptions(w, entry, CERT_OPTIONS);
      sni.push([name, createContext(w, { ...base, ...certAndKey(w, entry, true) })]);
    }
  }
  return createContext(what, { ...base, ...certAndKey(what, o, true), sni });
}

/**
 * A copy of server options that the primary of an engine with `workers`
 * sends to its workers (workers.ts). Node's advanced serialization (a
 * structured clone) carries every field's value as it is: strings, numbers,
 * booleans, arrays, and Buffers, which arrive as Buffers. What a clone would
 * lose is what the options object holds without owning it (a field inherited
 * from a prototype, or a getter's value on a class instance), which
 * serverContext reads and accepts: so the fields are read one by one into
 * plain objects first. Nothing in valid options is left behind; note that
 * the keys and the passphrase travel over the IPC pipe in the clear (a pipe
 * between the primary and its own children).
 */
export function serverOptionsCopy(o: TlsServerOptions): TlsServerOptions {
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(SERVER_OPTIONS) as (keyof TlsServerOptions)[]) {
    const v = o[key];
    if (v === undefined) continue;
    copy[key] = key === 'sni' ? sniCopy(v as Record<string, TlsCertificate>) : Array.isArray(v) ? [...v] : v;
  }
  return copy as unknown as TlsServerOptions;
}

function sniCopy(sni: Record<string, TlsCertificate>): Record<string, TlsCertificate> {
  const copy: Record<string, TlsCertificate> = {};
  for (const [name, entry] of Object.entries(sni)) {
    const c: TlsCertificate = { cert: entry.cert, key: entry.key };
    if (entry.passphrase !== undefined) c.passphrase = entry.passphrase;
    copy[name] = c;
  }
  return copy;
}

function certAndKey(what: string, o: Partial<TlsCertificate>, required: boolean): Pick<NativeTlsConfig, 'cert' | 'key' | 'passphrase'> {
  const cert = pem(`${what}.cert`, o.cert, required);
  const key = pem(`${what}.key`, o.key, required || cert !== undefined);
  if (key !== undefined && cert === undefined) throw new TypeError(`${what}.key needs ${what}.cert`);
  return { cert, key, passphrase: optionalString(`${what}.passphrase`, o.passphrase) };
}

let defaultRoots: string | undefined;

/** Checks client options (servername apart) and builds the context. */
export function clientContext(what: string, options: TlsClientOptions): NativeTlsContext {
  checkOptionsObject(what, options);
  checkKnownOptions(what, options, CLIENT_OPTIONS);
  optionalString(`${what}.servername`, options.servername);
  defaultRoots ??= rootCertificates.join('\n');
  return createContext(what, {
    server: false,
    ...certAndKey(what, options, false),
    ca: pem(`${what}.ca`, options.ca, false) ?? defaultRoots,
    ciphers: optionalString(`${what}.ciphers`, options.ciphers),
    minVersion: version(`${what}.minVersion`, options.minVersion) ?? VERSIONS['TLSv1.2'],
    maxVersion: version(`${what}.maxVersion`, options.maxVersion),
    alpn: alpnWire(`${what}.alpn`, options.alpn),
    rejectUnauthorized: boolOption(`${what}.rejectUnauthorized`, options.rejectUnauthorized, true),
  });
}

// Node's names for the X509 verify results (its tls module reports the
// same codes), so that a program can handle both alike.
const VERIFY_CODES: Record<number, string> = {
  2: 'UNABLE_TO_GET_ISSUER_CERT',
  4: 'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  6: 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  7: 'CERT_SIGNATURE_FAILURE',
  9: 'CERT_NOT_YET_VALID',
  10: 'CERT_HAS_EXPIRED',
  18: 'DEPTH_ZERO_SELF_SIGNED_CERT',
  19: 'SELF_SIGNED_CERT_IN_CHAIN',
  20: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  21: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  22: 'CERT_CHAIN_TOO_LONG',
  23: 'CERT_REVOKED',
  24: 'INVALID_CA',
  25: 'PATH_LENGTH_EXCEEDED',
  26: 'INVALID_PURPOSE',
  27: 'CERT_UNTRUSTED',
  28: 'CERT_REJECTED',
  62: 'ERR_TLS_CERT_ALTNAME_INVALID',
  63: 'ERR_TLS_CERT_ALTNAME_INVALID',
  64: 'ERR_TLS_CERT_ALTNAME_INVALID',
  79: 'INVALID_CA',
};

const FAILURE_CODES: Record<number, [code: string, what: string]> = {
  [TLS_ERR_HANDSHAKE]: ['ERR_TLS_HANDSHAKE', 'TLS handshake failed'],
  [TLS_ERR_TIMEOUT]: ['ERR_TLS_HANDSHAKE_TIMEOUT', 'TLS handshake timeout'],
  [TLS_ERR_TOO_LARGE]: ['ERR_TLS_HANDSHAKE_TOO_LARGE', 'TLS handshake larger than allowed'],
  [TLS_ERR_EOF]: ['ERR_TLS_HANDSHAKE_EOF', 'connection closed during the TLS handshake'],
  [TLS_ERR_PROTOCOL]: ['ERR_TLS_PROTOCOL', 'TLS protocol error'],
};

/** The error of a handshake that failed with native code `code` (TLS_ERR_*) and OpenSSL's reason `text`. */
export function handshakeError(code: number, text: string, host?: string): TLSHandshakeError {
  if (code >= TLS_ERR_VERIFY) {
    const v = code - TLS_ERR_VERIFY;
    const name = VERIFY_CODES[v] ?? `X509_V_ERR_${v}`;
    const detail = name === 'ERR_TLS_CERT_ALTNAME_INVALID' && host !== undefined ? `: the certificate is not for ${host}` : '';
    return new TLSHandshakeError(name, `TLS handshake failed: certificate refused (${text})${detail}`, v);
  }
  const [name, what] = FAILURE_CODES[code] ?? ['ERR_TLS_HANDSHAKE', 'TLS handshake failed'];
  return new TLSHandshakeError(name, text !== '' && text !== what ? `${what}: ${text}` : what);
}

/** The error of an established connection that TLS failed (REASON_TLS). */
export function protocolError(code: number, text: string): TLSError {
  const [name, what] = FAILURE_CODES[code] ?? ['ERR_TLS_PROTOCOL', 'TLS protocol error'];
  return new TLSError(name, text !== '' ? `${what}: ${text}` : what);
}
