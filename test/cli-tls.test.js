// `netloop echo --tls-cert F --tls-key F`: the echo server over netloop's own TLS, checked with
// real clients that verify the certificate against the test CA (the `ws` package over wss://,
// Node's tls for raw TCP, Node's https for the page a plain request gets), and the flag errors.
import t from 'tap';
import { spawn } from 'node:child_process';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';
import { certs } from './helpers/certs.js';
import { CLI, runCli } from './helpers/cli.js';
import { until } from './helpers/engine.js';

t.setTimeout(60000);
const pki = certs();
const certFile = path.join(pki.dir, 'server.crt');
const keyFile = path.join(pki.dir, 'server.key');

const run = runCli;

async function listening(t, args) {
  const r = run(['echo', '--port', '0', '--tls-cert', certFile, '--tls-key', keyFile, ...args]);
  t.teardown(async () => {
    if (r.code === undefined) {
      r.p.kill('SIGTERM');
      await r.exited;
    }
  });
  await until(() => /listening on /.test(r.out) || r.code !== undefined, 10000, 'the server to listen');
  const m = /listening on ([\d.]+):(\d+)/.exec(r.out);
  if (m === null) throw new Error(`no address: ${r.out} ${r.err}`);
  return { r, host: m[1], port: Number(m[2]) };
}

t.test('echo --proto ws over TLS: a wss client that verifies gets every message back', async (t) => {
  const { r, host, port } = await listening(t, ['--proto', 'ws']);
  t.match(r.out, /netloop echo \(ws over TLS\) listening on/);
  await until(() => /wss:\/\/ connection\.\n/.test(r.out), 10000, 'the lines that follow');
  t.match(r.out, new RegExp(`open https://${host}:${port}/ in a browser`), 'says which URL to open');
  t.match(r.out, /self-signed certificate gets a warning/, 'says how a browser treats a self-signed certificate');
  const ws = new WebSocket(`wss://localhost:${port}/`, { ca: pki.ca });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const got = [];
  ws.on('message', (data, isBinary) => got.push([isBinary, data.toString('hex')]));
  ws.send('hello over tls');
  ws.send(Buffer.alloc(70000, 7)); // several TLS records
  await until(() => got.length === 2, 10000, 'both echoes');
  t.same(got, [[false, Buffer.from('hello over tls').toString('hex')], [true, Buffer.alloc(70000, 7).toString('hex')]]);
  ws.close(1000);
  await new Promise((resolve) => ws.once('close', resolve));
  // A plain HTTPS request gets the welcome page, with the wss:// URL.
  const page = await new Promise((resolve, reject) => {
    https
      .get({ host: 'localhost', port, path: '/', ca: pki.ca }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (s) => (body += s));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      })
      .on('error', reject);
  });
  t.equal(page.status, 200);
  t.match(page.body, `new WebSocket('wss://localhost:${port}/')`);
  t.notMatch(page.body, 'netloop client', 'no ws-only client command for a wss server');
});

t.test('echo --proto tcp over TLS: Node tls client, verified, bytes back', async (t) => {
  const { port } = await listening(t, ['--proto', 'tcp']);
  const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca });
  await new Promise((resolve, reject) => {
    sock.once('secureConnect', resolve);
    sock.once('error', reject);
  });
  t.equal(sock.authorized, true, 'the certificate verified');
  const sent = Buffer.alloc(50000).map((_, i) => i % 251);
  let back = Buffer.alloc(0);
  sock.on('data', (d) => (back = Buffer.concat([back, d])));
  sock.write(sent);
  await until(() => back.length >= sent.length, 10000, 'the echo');
  t.ok(back.equals(sent), 'every byte back, in order');
  sock.end();
});

t.test('the TLS flags: both or neither, files that exist and hold a key for the certificate', async (t) => {
  const only = run(['echo', '--tls-cert', certFile]);
  t.equal(await only.exited, 2);
  t.match(only.err, '--tls-cert and --tls-key go together');
  const missing = run(['echo', '--tls-cert', certFile, '--tls-key', path.join(pki.dir, 'no-such.key')]);
  t.equal(await missing.exited, 2);
  t.match(missing.err, /--tls-key .*no-such\.key: ENOENT/);
  const mismatched = run(['echo', '--port', '0', '--tls-cert', certFile, '--tls-key', path.join(pki.dir, 'sni.key')]);
  t.equal(await mismatched.exited, 2, 'a key of another certificate is refused at start');
  t.match(mismatched.err, /^netloop: tls: .*key is not the certificate's/);
  t.notMatch(mismatched.err, /at new Engine/, 'a sentence, not a stack');
});

t.test('demo --tls (npm start -- --tls): page and socket on netloop\'s TLS, a self-signed certificate for the run', async (t) => {
  const r = run(['demo', '--port', '0', '--tls']);
  t.teardown(async () => {
    if (r.code === undefined) {
      r.p.kill('SIGTERM');
      await r.exited;
    }
  });
  await until(() => /trust store\.\n/.test(r.out) || r.code !== undefined, 15000, 'the demo to print its URL and the certificate note');
  const m = /^netloop demo listening on (https:\/\/127\.0\.0\.1:(\d+)\/) \(WebSocket (wss:\/\/127\.0\.0\.1:\d+\/ws),/m.exec(r.out);
  if (!t.ok(m, 'prints the https page URL and the wss URL', { out: r.out, err: r.err })) return;
  const [, pageUrl, portText, wsUrl] = m;
  const port = Number(portText);
  t.match(r.out, `Open ${pageUrl} in a browser`, 'says which URL to open');
  t.match(r.out, /self-signed, made for this run: the browser warns first/, 'says how the browser treats the certificate');
  // The certificate is made for this run: nothing to verify it against, so the client checks
  // what it is instead of trusting it.
  const page = await new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/', rejectUnauthorized: false }, (res) => {
      let body = '';
      const cert = res.socket.getPeerCertificate();
      res.setEncoding('utf8').on('data', (s) => (body += s));
      res.on('end', () => resolve({ status: res.statusCode, csp: res.headers['content-security-policy'], body, cert }));
    });
    req.on('error', reject);
  });
  t.equal(page.status, 200);
  t.match(page.body, '<title>netloop demo</title>');
  t.match(page.body, "location.protocol === 'https:' ? 'wss://'", 'the page opens wss:// when served over https');
  t.match(page.csp, "connect-src 'self'");
  t.equal(page.cert.subject.CN, 'netloop demo');
  t.equal(page.cert.issuer.CN, 'netloop demo', 'self-signed');
  t.match(page.cert.subjectaltname, 'IP Address:127.0.0.1');
  // The page's socket: same origin (https://host), the hello, a chat line back.
  const ws = new WebSocket(`${wsUrl}?name=tester`, { rejectUnauthorized: false, headers: { origin: `https://127.0.0.1:${port}` } });
  const msgs = [];
  ws.on('message', (d) => msgs.push(JSON.parse(d.toString())));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  await until(() => msgs.some((x) => x.type === 'hello'), 10000, 'the hello');
  ws.send(JSON.stringify({ type: 'chat', text: 'over wss' }));
  await until(() => msgs.some((x) => x.type === 'chat' && x.text === 'over wss'), 10000, 'the chat line back');
  t.pass('chat over wss');
  ws.close(1000);
  await new Promise((resolve) => ws.once('close', resolve));
  // Another origin is refused, as over plain HTTP.
  const refused = await new Promise((resolve) => {
    const w = new WebSocket(wsUrl, { rejectUnauthorized: false, headers: { origin: `http://127.0.0.1:${port}` } });
    w.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode);
      w.terminate();
    });
    w.on('open', () => resolve('open'));
    w.on('error', () => {});
  });
  t.equal(refused, 403, 'an http:// origin is not the https page');
});

// netloop's own client over wss://: refused without the test CA (verification is on), and with
// --tls-ca every line comes back, then the closing handshake and exit 0.
t.test('client wss:// --tls-ca: the client verifies, sends each line and prints the echo', async (t) => {
  const { r, port } = await listening(t, ['--proto', 'ws']);
  await until(() => /--tls-ca /.test(r.out), 10000, 'the Try-it line');
  t.match(r.out, new RegExp(`client wss://[\\d.]+:${port}/ --tls-ca ${certFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), 'Try it names the client and the certificate');
  const client = (args, input) => {
    const p = spawn(process.execPath, [CLI, 'client', `wss://localhost:${port}/`, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const c = { out: '', err: '' };
    p.stdout.on('data', (d) => (c.out += d));
    p.stderr.on('data', (d) => (c.err += d));
    p.stdin.end(input);
    return new Promise((resolve) => p.on('exit', (code) => resolve({ ...c, code })));
  };
  const refused = await client([], 'never sent\n');
  t.equal(refused.code, 1, 'without the CA: exit 1');
  t.match(refused.err, /cannot connect to wss:\/\/localhost:\d+\/: .*certificate/i, 'says the certificate is not trusted');
  const ok = await client(['--tls-ca', path.join(pki.dir, 'ca.crt')], 'first line\nsecond line\n');
  t.equal(ok.code, 0, `with --tls-ca: exit 0 (${ok.err.trim()})`);
  t.equal(ok.out, 'first line\nsecond line\n', 'both lines echoed, in order');
  t.match(ok.err, /closed \(1000/, 'the closing handshake completed');
});
