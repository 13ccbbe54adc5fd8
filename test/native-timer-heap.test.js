// The timer heap's 32-bit deadlines (native/timer_heap.h) over months of
// simulated time: test/native/timer_heap_check.cc is built here with the
// system compiler (the one node-gyp uses) against native/timer_heap.cc, with
// the sanitizers when they link, and checks every pop against a model.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));  // engines: node >= 20, before import.meta.dirname
const cxx = process.env.CXX ?? 'g++';
// npm run test:asan preloads the sanitizer runtime for node: not for the
// compiler, and not for this program, which links its own.
const env = { ...process.env, LD_PRELOAD: '', ASAN_OPTIONS: 'detect_leaks=1', UBSAN_OPTIONS: 'print_stacktrace=1' };

function build(out, extra) {
  execFileSync(
    cxx,
    ['-std=c++17', '-O1', '-Wall', '-Wextra', '-Werror', ...extra, '-I', path.join(root, 'native'),
      path.join(root, 'test/native/timer_heap_check.cc'), path.join(root, 'native/timer_heap.cc'), '-o', out],
    { stdio: ['ignore', 'ignore', 'pipe'], env },
  );
}

t.test('timer heap: every timer at its deadline, in order, for months', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netloop-timer-heap-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const exe = path.join(dir, 'check');
  try {
    build(exe, ['-fsanitize=address,undefined', '-fno-sanitize-recover=all']);
  } catch {
    try {
      build(exe, []);  // no sanitizer runtime here: the checks still hold
    } catch (err) {
      if (err.code === 'ENOENT') {
        t.skip(`no C++ compiler (${cxx})`);
        return t.end();
      }
      throw err;
    }
  }
  const out = execFileSync(exe, { env, encoding: 'utf8' });
  const lines = out.trim().split('\n');
  t.equal(lines.length, 3, 'three scenarios');
  t.match(lines[0], /^ok busy: \d+ timers fired in order over 120 days$/, 'busy: short and long timers, moved and cancelled');
  t.match(lines[1], /^ok idle: \d+ timers fired in order over \d+ days$/, 'idle: far timers and weeks-long jumps of the clock');
  t.match(lines[2], /^ok stalled: \d+ overdue timers fired at once, the rest in order$/, 'stalled: days without expiry');
  t.end();
});
