// `netloop demo --tls` without --tls-cert/--tls-key: a self-signed certificate for this run,
// made by the `openssl` command (Node 20's crypto cannot sign an X.509 certificate), for
// localhost, 127.0.0.1 and ::1, valid for a week. Files in a temporary directory, read and
// removed at once: the demo keeps them in memory only.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A certificate and key (PEM), or throws saying what to do instead. */
export function selfSignedCertificate(): { cert: Buffer; key: Buffer } {
  const dir = mkdtempSync(path.join(tmpdir(), 'netloop-demo-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '7',
      '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
      '-subj', '/CN=netloop demo', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    return { cert: readFileSync(path.join(dir, 'cert.pem')), key: readFileSync(path.join(dir, 'key.pem')) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    const why = e.code === 'ENOENT' ? 'the openssl command is not installed' : String(e.stderr ?? e.message).trim();
    throw new Error(`cannot make a self-signed certificate (${why}): pass --tls-cert FILE --tls-key FILE instead`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
