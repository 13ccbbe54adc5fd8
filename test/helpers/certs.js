// Test certificates, made by the `openssl` command into a temporary
// directory once per process (node:crypto cannot sign X.509 in Node 20):
// a CA; a server certificate for localhost and 127.0.0.1 (and ::1); an
// expired one; one for another host; one for a second SNI name; a client
// certificate; and an encrypted copy of the server key. Every test that
// needs TLS takes them from here.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let made;

function openssl(dir, args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

// A key and a certificate signed by the CA. san: "DNS:localhost,IP:127.0.0.1".
// days < 0: a certificate that expired yesterday (validity set in the past).
function leaf(dir, name, cn, san, { expired = false, client = false } = {}) {
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`]);
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`]);
  const ext = [
    `subjectAltName=${san}`,
    'basicConstraints=CA:FALSE',
    `extendedKeyUsage=${client ? 'clientAuth' : 'serverAuth'}`,
  ].join('\n');
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext + '\n');
  if (expired) {
    // `openssl ca` can place a validity window in the past; `x509 -req` cannot.
    fs.writeFileSync(path.join(dir, 'index.txt'), '');
    fs.writeFileSync(path.join(dir, 'serial'), '1000\n');
    fs.writeFileSync(
      path.join(dir, 'ca.cnf'),
      [
        '[ca]', 'default_ca=test', '[test]', `dir=${dir}`, 'database=$dir/index.txt', 'serial=$dir/serial',
        'new_certs_dir=$dir', 'certificate=$dir/ca.crt', 'private_key=$dir/ca.key', 'default_md=sha256',
        'policy=any', 'copy_extensions=none', '[any]', 'commonName=supplied',
      ].join('\n') + '\n',
    );
    openssl(dir, [
      'ca', '-batch', '-config', 'ca.cnf', '-in', `${name}.csr`, '-out', `${name}.crt`, '-extfile', `${name}.ext`,
      '-startdate', '20200101000000Z', '-enddate', '20200201000000Z', '-notext',
    ]);
  } else {
    openssl(dir, [
      'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '30',
      '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`,
    ]);
  }
  return {
    cert: fs.readFileSync(path.join(dir, `${name}.crt`), 'utf8'),
    key: fs.readFileSync(path.join(dir, `${name}.key`), 'utf8'),
  };
}

/** The test PKI: { dir, ca, server, expired, wrongHost, sni, client, encryptedKey, passphrase, spki }. */
export function certs() {
  if (made !== undefined) return made;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netloop-tls-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'ca.key']);
  openssl(dir, ['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=netloop test CA', '-days', '30', '-sha256', '-out', 'ca.crt']);
  const ca = fs.readFileSync(path.join(dir, 'ca.crt'), 'utf8');
  const server = leaf(dir, 'server', 'localhost', 'DNS:localhost,IP:127.0.0.1,IP:::1');
  const expired = leaf(dir, 'expired', 'localhost', 'DNS:localhost,IP:127.0.0.1', { expired: true });
  const wrongHost = leaf(dir, 'wronghost', 'other.example', 'DNS:other.example');
  const sni = leaf(dir, 'sni', 'second.test', 'DNS:second.test');
  const client = leaf(dir, 'client', 'netloop client', 'DNS:client.test', { client: true });
  const passphrase = 'correct horse';
  openssl(dir, ['pkey', '-in', 'server.key', '-aes-256-cbc', '-passout', `pass:${passphrase}`, '-out', 'server-enc.key']);
  const encryptedKey = fs.readFileSync(path.join(dir, 'server-enc.key'), 'utf8');
  // Chromium's --ignore-certificate-errors-spki-list takes base64(sha256(SPKI)).
  const spkiDer = crypto.createPublicKey(server.cert).export({ type: 'spki', format: 'der' });
  const spki = crypto.createHash('sha256').update(spkiDer).digest('base64');
  made = { dir, ca, server, expired, wrongHost, sni, client, encryptedKey, passphrase, spki };
  return made;
}
