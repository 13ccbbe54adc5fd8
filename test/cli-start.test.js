// The first minute with the echo server: what `netloop echo --proto ws` prints, the page a
// plain HTTP request gets instead of a bare 400, and `netloop client`, the command both point
// to, run exactly as printed (`npm start` runs `netloop demo`: test/cli-demo.test.js). Real sockets on loopback; every process is waited for.
import t from 'tap';
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { until } from './helpers/engine.js';

t.setTimeout(60000);
const root = fileURLToPath(new URL('..', import.meta.url));
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

function spawnRun(file, args, opts = {}) {
  const p = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], cwd: root, ...opts });
  const r = { p, out: '', err: '', code: undefined };
  p.stdout.setEncoding('utf8').on('data', (d) => (r.out += d));
  p.stderr.setEncoding('utf8').on('data', (d) => (r.err += d));
  r.exited = new Promise((resolve) => p.on('exit', (code) => resolve((r.code = code))));
  return r;
}

// A bounded wait for a child's exit: a hung child fails the test instead of stalling it.
async function exitOf(t, r, what, ms = 20000) {
  const timer = setTimeout(() => r.p.kill('SIGKILL'), ms);
  const code = await r.exited;
  clearTimeout(timer);
  if (code === null) t.fail(`${what}: killed after ${ms} ms (stdout ${r.out.slice(-500)}, stderr ${r.err.slice(-500)})`);
  return code;
}

function request(port, method, path = '/', headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

// Starts `netloop echo` with `args` (port 0) and waits for its start lines.
async function startServer(t, args) {
  const server = spawnRun(process.execPath, [CLI, 'echo', ...args]);
  t.teardown(async () => {
    if (server.code === undefined) server.p.kill('SIGKILL');
    await server.exited;
  });
  await until(() => /Try it: .*\n/.test(server.out) || server.code !== undefined, 10000, 'the server to print its hint');
  const m = /listening on 127\.0\.0\.1:(\d+)/.exec(server.out);
  if (m === null) throw new Error(`no address: ${server.out} ${server.err}`);
  return { server, port: Number(m[1]) };
}

t.test('netloop echo --proto ws: the hint, the page, and the client it names', async (t) => {
  // On a free port (8080 may be taken on a shared machine).
  const { server, port } = await startServer(t, ['--proto', 'ws', '--host', '127.0.0.1', '--port', '0']);
  const url = `ws://127.0.0.1:${port}/`;
  const hint = /^Try it: (.+?) {3}\(type a line, get it back; Ctrl-D to end\)$/m.exec(server.out);
  t.ok(hint, 'prints a "Try it" line', { out: server.out });
  // From a checkout, the CLI's own file (test/package-install.test.js sees `npx netloop client`
  // printed by an installed package, and runs it).
  const command = `node ${path.join('dist', 'cli', 'main.js')} client ${url}`;
  t.equal(hint?.[1], command, 'naming the URL and a client command');

  await t.test('a plain GET gets a page saying how to connect', async (t) => {
    const r = await request(port, 'GET');
    t.equal(r.status, 200);
    t.equal(r.headers['content-type'], 'text/html; charset=utf-8');
    t.match(r.body, `<code>${command}</code>`);
    t.match(r.body, `new WebSocket('${url}')`);
    t.equal(Number(r.headers['content-length']), Buffer.byteLength(r.body), 'Content-Length is the body');
    // The authority the browser used is the one to connect to.
    const named = await request(port, 'GET', '/index.html', { host: `localhost:${port}` });
    t.match(named.body, `client ws://localhost:${port}/</code>`);
    // Anything that could be markup is not echoed: the listening address is used instead.
    const odd = await request(port, 'GET', '/', { host: '<script>x</script>' });
    t.notMatch(odd.body, '<script>');
    t.match(odd.body, `<code>${command}</code>`);
    const head = await request(port, 'HEAD');
    t.equal(head.status, 200);
    t.equal(head.body, '', 'HEAD: no body');
    const post = await request(port, 'POST');
    t.equal(post.status, 405);
    t.equal(post.headers.allow, 'GET, HEAD');
  });

  await t.test('the printed command echoes lines and ends cleanly at end of input', async (t) => {
    // Run as printed, through a shell, from the server's working directory.
    const c = spawnRun('sh', ['-c', hint?.[1] ?? 'false']);
    c.p.stdin.end('hello netloop\nsecond line, with ünïcödé\n');
    const code = await exitOf(t, c, 'netloop client');
    t.equal(code, 0, 'exit 0', { stderr: c.err });
    t.equal(c.out, 'hello netloop\nsecond line, with ünïcödé\n', 'every line came back, in order, and nothing else on stdout');
    t.match(c.err, `netloop client: connected to ${url}`);
    t.match(c.err, 'netloop client: closed (1000)');
  });

  await t.test('netloop client to a port nobody listens on: exit 1 with the reason', async (t) => {
    // An ephemeral port that was just released: nobody listens there.
    const probe = http.createServer();
    await new Promise((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const freePort = probe.address().port;
    await new Promise((resolve) => probe.close(resolve));
    const c = spawnRun(process.execPath, [CLI, 'client', `ws://127.0.0.1:${freePort}/`]);
    c.p.stdin.end();
    t.equal(await exitOf(t, c, 'netloop client'), 1);
    t.match(c.err, `cannot connect to ws://127.0.0.1:${freePort}/: dial 127.0.0.1:${freePort}: connection refused`);
    t.equal(c.out, '');
  });

  server.p.kill('SIGINT');
  t.equal(await exitOf(t, server, 'netloop echo'), 0, 'the server stops on SIGINT');
});

t.test('--path: the page names the path that upgrades', async (t) => {
  const { server, port } = await startServer(t, ['--proto', 'ws', '--host', '127.0.0.1', '--port', '0', '--path', '/chat']);
  t.match(server.out, `client ws://127.0.0.1:${port}/chat `);
  const r = await request(port, 'GET', '/');
  t.equal(r.status, 200);
  t.match(r.body, `client ws://127.0.0.1:${port}/chat</code>`);
  server.p.kill('SIGINT');
  t.equal(await exitOf(t, server, 'netloop echo'), 0);
});
