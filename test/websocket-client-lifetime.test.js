// dial() keeps the process alive while a dial is pending or a connection it
// made is open, as Node's sockets do, and no longer: scripts in child
// processes (test/fixtures/dial-only.js) whose only work is the dial run to
// their end, print what they got, and exit by themselves with code 0.
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Engine, Upgrader } from '../dist/index.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/dial-only.js', import.meta.url));

t.setTimeout(30_000);

// Runs the fixture; resolves with its exit code, output, and how long it
// lived after printing `mark` (to tell a prompt exit from one held open).
function run(args, mark) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FIXTURE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let markAt;
    child.stdout.on('data', (d) => {
      stdout += d;
      if (markAt === undefined && stdout.includes(mark)) markAt = Date.now();
    });
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the script did not exit within 10 s (held alive?); stdout: ${stdout}`));
    }, 10_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, lingered: markAt === undefined ? undefined : Date.now() - markAt });
    });
  });
}

async function echoServer(t) {
  const up = new Upgrader({});
  up.onMessage((c, type, data) => c.writeMessage(type, data));
  const engine = new Engine({ addrs: ['127.0.0.1:0'], upgrader: up });
  await engine.start();
  t.teardown(() => engine.stop());
  return `ws://${engine.addresses()[0]}`;
}

t.test('a script whose only work is await dial(), a message and its echo runs to the end and exits 0', async (t) => {
  const url = await echoServer(t);
  const r = await run(['echo', `${url}/chat`], 'end of script');
  t.equal(r.stderr, '');
  t.equal(r.stdout, 'echo: text hello\nclosed: null\nend of script\n');
  t.equal(r.code, 0);
  t.equal(r.signal, null);
  t.ok(r.lingered < 2000, `and exits promptly after its last line (${r.lingered} ms)`);
});

t.test('a script that dials and closes exits promptly once the connection closed', async (t) => {
  const url = await echoServer(t);
  const r = await run(['close', `${url}/x`], 'closed:');
  t.equal(r.stderr, '');
  t.equal(r.stdout, 'open: /x\nend of script\nclosed: null 1000\n', 'onClose came after the end of the script: the open connection kept it alive');
  t.equal(r.code, 0);
  t.ok(r.lingered < 2000, `nothing is left keeping it alive after the close (${r.lingered} ms)`);
});

t.test('a dial that fails releases the process too', async (t) => {
  // A port that was just listened on and closed again: nobody listens.
  const probe = new Engine({ addrs: ['127.0.0.1:0'] });
  await probe.start();
  const addr = probe.addresses()[0];
  await probe.stop();
  const r = await run(['refused', `ws://${addr}/`], 'end of script');
  t.equal(r.stderr, '');
  t.equal(r.stdout, 'refused: ECONNREFUSED\nend of script\n');
  t.equal(r.code, 0);
  t.ok(r.lingered < 2000, `exits promptly (${r.lingered} ms)`);
});
