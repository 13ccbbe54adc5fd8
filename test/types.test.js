// The published types: dist/*.d.ts (built with stripInternal) compile for a
// strict-mode consumer with skipLibCheck off, and say what the API
// promises: sessions typed through the handlers (Upgrader<S>, Engine<S>,
// dial<S>), closeInfo non-null in onClose, internals out of reach. The
// consumer (test/fixtures/consumer/consumer.ts) asserts with
// @ts-expect-error what must not compile.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

function declarations(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return declarations(p);
    return e.name.endsWith('.d.ts') ? [p] : [];
  });
}

t.test('a strict consumer compiles against dist/*.d.ts, and what must not compile does not', { timeout: 120_000 }, async (t) => {
  const r = spawnSync(process.execPath, [TSC, '-p', path.join(ROOT, 'test', 'fixtures', 'consumer', 'tsconfig.json')], { encoding: 'utf8', timeout: 110_000 });
  t.equal(r.stdout + r.stderr, '', 'no diagnostics (an unused @ts-expect-error would be one)');
  t.equal(r.status, 0);
});

t.test('the declarations publish no @internal member', async (t) => {
  const files = declarations(path.join(ROOT, 'dist'));
  t.ok(files.length > 20, `${files.length} declaration files`);
  const leaks = [];
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    if (text.includes('@internal')) leaks.push(`${path.relative(ROOT, f)}: @internal`);
    // Internal members are named with a leading underscore.
    for (const m of text.matchAll(/^\s+(?:readonly |get |set |static )*(_[A-Za-z]\w*)\b/gm)) leaks.push(`${path.relative(ROOT, f)}: ${m[1]}`);
  }
  t.same(leaks, [], 'none');
});
