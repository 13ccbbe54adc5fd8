// A self-signed certificate made with node:crypto alone (no openssl
// command): Node 20's crypto makes keys and signatures but no X.509
// certificate, so the certificate's DER (RFC 5280) is written here, the few
// structures it needs, and signed with crypto.sign. An ECDSA P-256 key, the
// names given as subjectAltName, CA:TRUE so that a client can trust it as
// its own root (as `openssl req -x509` makes them). For tools (`netloop
// compare`), never for a server on a network.
import { Buffer } from 'node:buffer';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { isIP } from 'node:net';

// DER: a tag, the definite length, the contents (X.690 §8.1).
function der(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}

const seq = (...c: Buffer[]): Buffer => der(0x30, ...c);

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const bytes = [a! * 40 + b!];
  for (const v of rest) {
    const groups = [v & 0x7f];
    for (let x = v >> 7; x > 0; x >>= 7) groups.unshift((x & 0x7f) | 0x80);
    bytes.push(...groups);
  }
  return der(0x06, Buffer.from(bytes));
}

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

function name(cn: string): Buffer {
  return seq(der(0x31, seq(oid('2.5.4.3'), der(0x0c, Buffer.from(cn, 'utf8')))));
}

function utcTime(d: Date): Buffer {
  const text = d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z'; // YYMMDDHHMMSSZ
  return der(0x17, Buffer.from(text, 'latin1'));
}

// GeneralNames: dNSName [2] or iPAddress [7], implicit tags.
function altNames(names: readonly string[]): Buffer {
  return seq(
    ...names.map((n) => {
      const v = isIP(n);
      if (v === 4) return der(0x87, Buffer.from(n.split('.').map(Number)));
      if (v === 6) return der(0x87, ipv6Bytes(n));
      return der(0x82, Buffer.from(n, 'latin1'));
    }),
  );
}

function ipv6Bytes(addr: string): Buffer {
  const [head, tail] = addr.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [der(0x01, Buffer.from([0xff]))] : []), der(0x04, value));
}

/**
 * A self-signed certificate and its key (PEM) for `names` (host names and IP
 * addresses), valid from an hour ago for `days`; `commonName` is its subject
 * and issuer, what a browser shows in its warning.
 */
export function selfSigned(names: readonly string[] = ['localhost', '127.0.0.1', '::1'], days = 7, commonName = names[0] ?? 'netloop'): { cert: string; key: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40; // positive, and no leading zero byte needed
  const now = Date.now();
  const tbs = seq(
    der(0xa0, der(0x02, Buffer.from([2]))), // version 3
    der(0x02, serial),
    ECDSA_SHA256,
    name(commonName),
    seq(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + days * 86400_000))),
    name(commonName),
    publicKey.export({ type: 'spki', format: 'der' }),
    der(0xa3, seq(
      extension('2.5.29.19', true, seq(der(0x01, Buffer.from([0xff])))), // basicConstraints CA:TRUE
      extension('2.5.29.17', false, altNames(names)),
    )),
  );
  const signature = sign('sha256', tbs, privateKey); // ECDSA-Sig-Value, DER
  const cert = seq(tbs, ECDSA_SHA256, der(0x03, Buffer.from([0]), signature));
  const b64 = cert.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return {
    cert: `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`,
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}
