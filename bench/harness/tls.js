// Certificates for the TLS scenarios (echo --tls, churn --tls): one self-signed certificate per
// bench run, made by Debian's `openssl` command into a temporary directory that is removed when
// the harness exits. Every server of the run gets the same certificate and key, so the servers
// differ in their TLS code, not in the key they sign with.
//
// The key type decides the cost of a full handshake on the server: ec (ECDSA P-256, what
// certbot issues by default today) or rsa (RSA 2048, the long-time default).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const KEY_TYPES = ['ec', 'rsa'];

const made = new Map(); // key type -> { dir, cert, key }

/** A certificate for localhost and 127.0.0.1 with its key: `{ dir, cert, key }` (file paths). */
export function benchCertificate(keyType = 'ec') {
  if (!KEY_TYPES.includes(keyType)) throw new Error(`key type must be one of ${KEY_TYPES.join(', ')}, got ${keyType}`);
  if (made.has(keyType)) return made.get(keyType);
  const dir = mkdtempSync(path.join(tmpdir(), 'netloop-bench-tls-'));
  if (made.size === 0) process.on('exit', () => { for (const c of made.values()) rmSync(c.dir, { recursive: true, force: true }); });
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const keyArgs = keyType === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'] : ['-newkey', 'rsa:2048'];
  try {
    execFileSync('openssl', [
      'req', '-x509', ...keyArgs, '-nodes', '-keyout', key, '-out', cert, '-days', '2',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const why = err.code === 'ENOENT' ? 'the openssl command is missing (Debian: apt-get install -y openssl)' : String(err.stderr || err.message).trim();
    throw new Error(`cannot make the bench's TLS certificate: ${why}`);
  }
  const c = { dir, cert, key, keyType };
  made.set(keyType, c);
  return c;
}

/** The server arguments that pass a certificate on: --tls-cert F --tls-key F. */
export const tlsServerArgs = (tls) => (tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key] : []);
