// lib/ has no import circle (DESIGN.md, "Layout": the process supervisor
// sits above the engine). Every static import and re-export between lib/'s
// modules counts, `import type` included: a type-only circle still ties the
// modules' meanings together. Dynamic import() is left out: it does not run
// at load. Also checks the two edges the design names.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const LIB = fileURLToPath(new URL('../lib/', import.meta.url));

function sources(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

// `import ... from './x.js'`, `export ... from './x.js'`, `import './x.js'`,
// over several lines; comments removed first so that an example in one
// does not count.
const EDGE = /^\s*(?:import|export)\b[^;'"]*?(?:from\s*)?['"](\.{1,2}\/[^'"]+)['"]/gm;

function graph() {
  const g = new Map();
  for (const file of sources(LIB)) {
    const text = fs.readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    const deps = new Set();
    for (const m of text.matchAll(EDGE)) {
      const target = path.resolve(path.dirname(file), m[1].replace(/\.js$/, '.ts'));
      if (!fs.existsSync(target)) throw new Error(`${path.relative(LIB, file)} imports ${m[1]}, which is not in lib/`);
      deps.add(target);
    }
    g.set(file, deps);
  }
  return g;
}

function findCycle(g) {
  const state = new Map(); // 1: on the current path, 2: done
  const stack = [];
  const visit = (n) => {
    state.set(n, 1);
    stack.push(n);
    for (const d of g.get(n) ?? []) {
      if (state.get(d) === 1) return [...stack.slice(stack.indexOf(d)), d];
      if (state.get(d) === undefined) {
        const c = visit(d);
        if (c) return c;
      }
    }
    stack.pop();
    state.set(n, 2);
    return null;
  };
  for (const n of g.keys()) {
    if (state.get(n) === undefined) {
      const c = visit(n);
      if (c) return c;
    }
  }
  return null;
}

const rel = (p) => path.relative(LIB, p);

t.test('the module graph of lib/ has no circle', async (t) => {
  const g = graph();
  t.ok(g.size > 20, `the graph was read (${g.size} modules)`);
  let edges = 0;
  for (const d of g.values()) edges += d.size;
  t.ok(edges > 40, `with its imports (${edges})`);
  const cycle = findCycle(g);
  t.equal(cycle && cycle.map(rel).join(' -> '), null, 'no circle');
});

t.test('the engine does not import its supervisor, and Conn does not import the engine', async (t) => {
  const g = graph();
  const deps = (name) => [...g.get(path.join(LIB, name))].map(rel);
  t.notOk(deps('engine.ts').includes('workers.ts'), 'engine.ts does not import workers.ts');
  t.notOk(deps('conn.ts').includes('engine.ts'), 'conn.ts does not import engine.ts');
  t.ok(deps('index.ts').includes('workers.ts'), 'index.ts wires the supervisor in');
});

t.test('the circle finder finds a circle', async (t) => {
  // The check above must be able to fail: a made-up graph with a circle.
  const a = '/a.ts';
  const b = '/b.ts';
  const c = '/c.ts';
  const g = new Map([[a, new Set([b])], [b, new Set([c])], [c, new Set([a])]]);
  t.same(findCycle(g), [a, b, c, a]);
  t.equal(findCycle(new Map([[a, new Set([b])], [b, new Set()]])), null);
});

t.test('an Engine loaded without the supervisor refuses `workers` with a clear error, and works without them', async (t) => {
  // engine.js alone: nothing registered the supervisor (index.ts does).
  const engineJs = new URL('../dist/engine.js', import.meta.url).href;
  const script = `
    const { Engine } = await import(${JSON.stringify(engineJs)});
    try { new Engine({ addrs: ['127.0.0.1:0'], workers: 2 }); console.log('no error'); } catch (e) { console.log(e.name + ': ' + e.message); }
    const e = new Engine({ addrs: ['127.0.0.1:0'] });
    await e.start();
    console.log(e.role, e.addresses().length);
    await e.stop();`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
  t.equal(r.stderr, '');
  t.equal(
    r.stdout,
    "TypeError: workers: the supervisor is not loaded; import Engine from 'netloop' (its index registers it), not from its engine module\nstandalone 1\n",
  );
  t.equal(r.status, 0);
});
