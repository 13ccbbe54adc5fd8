// A short, deterministic run of every fuzz target (test/fuzz/, see run.js):
// a fixed seed and a fixed number of inputs each, a few seconds in all, in
// a child process per target, which must exit 0 after "no finding". The
// long runs are `npm run fuzz -- <target> [seconds]`.
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TARGETS } from './fuzz/run.js';

const RUNNER = fileURLToPath(new URL('./fuzz/run.js', import.meta.url));

// Inputs per target: about a second or two of work each on this machine.
const RUNS = {
  'http-request-parser': 6000,
  'http-response-parser': 6000,
  'websocket-receiver': 8000,
  utf8: 15000,
  'deflate-negotiation': 25000,
  'deflate-inflate': 6000,
  'close-payload': 50000,
};

t.test('every target has a short run', async (t) => {
  t.same(Object.keys(RUNS).sort(), [...TARGETS].sort());
});

for (const target of TARGETS) {
  t.test(`fuzz ${target}: ${RUNS[target]} inputs, seed 1, no finding`, async (t) => {
    const child = spawn(process.execPath, [RUNNER, target, '--seed', '1', '--runs', String(RUNS[target])], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
    const code = await new Promise((resolve) => child.on('close', (c, signal) => resolve(signal ?? c)));
    clearTimeout(timer);
    t.equal(code, 0, `exit code (output: ${out.trim()})`);
    t.match(out, new RegExp(`^fuzz ${target}: ${RUNS[target]} inputs in [0-9.]+ s, \\d+ distinct paths, \\d+ inputs kept, no finding$`, 'm'));
  });
}
