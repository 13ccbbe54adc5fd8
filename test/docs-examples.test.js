// Every ```ts and ```js block of README.md and docs/*.md, compiled and run,
// so that no example in the documentation can rot unnoticed.
//
// A block is a whole program. The HTML comment on the line before its fence
// (blank lines between are allowed) tells the harness how to run it and what
// success prints; it is required, so that every block says what it proves:
//
//   <!-- example: expect "LINE" -->                      run it; it must exit 0 by itself
//   <!-- example: server ws /path; expect "LINE" -->     a server that runs until SIGINT: once its
//   <!-- example: server tcp; expect "LINE" -->          port accepts, the harness sends "hello" (the
//                                                        `ws` package's client, or a `net` socket)
//                                                        and wants it echoed, then sends SIGINT
//   <!-- example: against ws-echo; expect "LINE" -->     a client: the harness first starts
//   <!-- example: against tcp-echo; expect "LINE" -->    `netloop echo --proto ws|tcp` (the package's
//                                                        own bin) on the port the block dials
//
// Each block must exit with code 0 within TIMEOUT_MS and print a stdout line
// that starts with LINE (with several `expect`, a line for each). Blocks in other languages (sh, text, json) are not code
// and are left alone.
//
// Ports: a block may use fixed ports as a reader would (127.0.0.1:8080). Every
// ":NNNN" and "listen(NNNN" in a block (4 or 5 digits, 1024-65535, right after
// a colon, as in an address or URL but never "timeout: 3000", or as the first
// argument of Node's server.listen) is rewritten to a free loopback port the
// harness picks, the same number to the same port within a block, so the
// examples run beside each other and beside anything else on the machine.
//
// TypeScript blocks are compiled together by the repository's TypeScript,
// strict, against dist/*.d.ts: the files are written under .scratch/ inside
// this checkout, where `import ... from 'netloop'` resolves to the package
// itself through its "exports" (self-reference), as it would for a user.
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TIMEOUT_MS = 15000;
t.setTimeout(120000);

const FENCE = /^```([A-Za-z]*)\s*$/;
const MARKER = /^<!--\s*example:(.*?)-->\s*$/;
const LANGS = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js', mjs: 'js' };

function docFiles() {
  const docs = path.join(ROOT, 'docs');
  const list = fs.existsSync(docs) ? fs.readdirSync(docs).filter((f) => f.endsWith('.md')).sort().map((f) => path.join('docs', f)) : [];
  return ['README.md', ...list];
}

function parseMarker(text) {
  const m = { mode: 'run', kind: '', urlPath: '/', expect: [] };
  for (const part of text.split(';').map((s) => s.trim()).filter(Boolean)) {
    const expect = /^expect\s+"(.*)"$/.exec(part);
    const server = /^server\s+(ws|tcp)(?:\s+(\/\S*))?$/.exec(part);
    const against = /^against\s+(ws|tcp)-echo$/.exec(part);
    if (expect) m.expect.push(expect[1]);
    else if (server) Object.assign(m, { mode: 'server', kind: server[1], urlPath: server[2] ?? '/' });
    else if (against) Object.assign(m, { mode: 'against', kind: against[1] });
    else if (part !== 'run') throw new Error(`unknown example directive "${part}"`);
  }
  return m;
}

/** The code blocks of one markdown file: { file, line, lang, code, marker, markerError }. */
function extractBlocks(file, text) {
  const lines = text.split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]);
    if (open === null) continue;
    let end = i + 1;
    while (end < lines.length && !/^```\s*$/.test(lines[end])) end++;
    const lang = LANGS[open[1].toLowerCase()];
    if (lang !== undefined) {
      let k = i - 1;
      while (k >= 0 && lines[k].trim() === '') k--;
      const mk = k >= 0 ? MARKER.exec(lines[k]) : null;
      let marker, markerError;
      try {
        marker = mk === null ? undefined : parseMarker(mk[1]);
      } catch (e) {
        markerError = e.message;
      }
      blocks.push({ file, line: i + 1, lang, code: lines.slice(i + 1, end).join('\n') + '\n', marker, markerError });
    }
    i = end;
  }
  return blocks;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function rewritePorts(code) {
  const map = new Map();
  const PORT = /(:|\blisten\()(\d{4,5})\b/g;
  for (const m of code.matchAll(PORT)) {
    const n = Number(m[2]);
    if (n >= 1024 && n <= 65535 && !map.has(m[2])) map.set(m[2], await freePort());
  }
  const rewritten = code.replace(PORT, (all, before, n) => (map.has(n) ? `${before}${map.get(n)}` : all));
  return { code: rewritten, ports: [...map.values()] };
}

function start(file, args = []) {
  // As a user would run it: without the loaders tap puts in NODE_OPTIONS.
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const p = spawn(process.execPath, [file, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const r = { p, out: '', err: '', code: undefined, signal: undefined };
  p.stdout.on('data', (d) => (r.out += d));
  p.stderr.on('data', (d) => (r.err += d));
  const timer = setTimeout(() => p.kill('SIGKILL'), TIMEOUT_MS);
  r.exited = new Promise((resolve) =>
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      Object.assign(r, { code, signal });
      resolve(r);
    }),
  );
  return r;
}

async function waitForPort(port, ms = 10000) {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sends "hello" to the example's server and resolves to what came back. */
function exchange(kind, port, urlPath) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no echo within 5 s')), 5000);
    const done = (v) => (clearTimeout(timer), resolve(v));
    if (kind === 'ws') {
      const ws = new WebSocket(`ws://127.0.0.1:${port}${urlPath}`);
      ws.on('open', () => ws.send('hello'));
      ws.on('message', (data) => {
        ws.close(1000);
        done(data.toString());
      });
      ws.on('error', reject);
    } else {
      const s = net.connect(port, '127.0.0.1', () => s.write('hello'));
      s.on('data', (d) => {
        s.end();
        done(d.toString());
      });
      s.on('error', reject);
    }
  });
}

function netloopBin() {
  const { bin } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  return path.join(ROOT, typeof bin === 'string' ? bin : bin.netloop);
}

const blocks = docFiles().flatMap((f) => extractBlocks(f, fs.readFileSync(path.join(ROOT, f), 'utf8')));

t.test('the extractor finds fenced code and its marker', async (t) => {
  const md = [
    '<!-- example: server ws /x; expect "a b" -->',
    '',
    '```ts',
    'const a = 1;',
    '```',
    '```sh',
    'npm start',
    '```',
    '```js',
    'x()',
    '```',
  ].join('\n');
  const got = extractBlocks('m.md', md);
  t.equal(got.length, 2, 'ts and js, not sh');
  t.same(got[0].marker, { mode: 'server', kind: 'ws', urlPath: '/x', expect: ['a b'] });
  t.same(parseMarker('expect "x"; expect "y"').expect, ['x', 'y'], 'several lines to expect');
  t.equal(got[0].code, 'const a = 1;\n');
  t.equal(got[1].marker, undefined, 'a block without a marker has none');
  t.throws(() => parseMarker('serve ws'), /unknown example directive/);
  const { code, ports } = await rewritePorts("addrs: ['127.0.0.1:8080'], url: 'ws://h:8080/', timeout: 3000, b: ':9001'; server.listen(9002)");
  t.equal(ports.length, 3, 'three distinct ports');
  t.notMatch(code, /8080|9001|9002/, 'all rewritten');
  t.match(code, /timeout: 3000/, 'a duration is left alone');
});

t.test('every documentation code block is marked with how it runs and what it prints', async (t) => {
  t.ok(blocks.length >= 6, `found ${blocks.length} code blocks in ${docFiles().join(', ')}`);
  for (const b of blocks) {
    t.equal(b.markerError, undefined, `${b.file}:${b.line}: marker parses`);
    t.ok(b.marker?.expect.length > 0, `${b.file}:${b.line}: has <!-- example: ...; expect "LINE" --> before its fence`);
  }
});

t.test('every documentation code block compiles and runs', async (t) => {
  const runnable = blocks.filter((b) => b.marker?.expect.length > 0);
  fs.mkdirSync(path.join(ROOT, '.scratch'), { recursive: true });
  const dir = fs.mkdtempSync(path.join(ROOT, '.scratch', 'docs-examples-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const src = path.join(dir, 'src');
  const out = path.join(dir, 'out');
  fs.mkdirSync(src);
  fs.mkdirSync(out);

  const jobs = [];
  for (const [i, b] of runnable.entries()) {
    const base = `${String(i).padStart(2, '0')}-${b.file.replace(/[^\w]+/g, '-')}-${b.line}`;
    const { code, ports } = await rewritePorts(b.code);
    if (b.lang === 'ts') fs.writeFileSync(path.join(src, `${base}.ts`), code);
    else fs.writeFileSync(path.join(out, `${base}.js`), code);
    jobs.push({ b, ports, js: path.join(out, `${base}.js`) });
  }

  const tsFiles = fs.readdirSync(src).map((f) => path.join(src, f));
  if (tsFiles.length > 0) {
    fs.writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noImplicitReturns: true,
          noFallthroughCasesInSwitch: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [path.join(ROOT, 'node_modules', '@types')],
          rootDir: src,
          outDir: out,
        },
        files: tsFiles,
      }),
    );
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    let diagnostics = '';
    try {
      execFileSync(process.execPath, [tsc, '-p', path.join(dir, 'tsconfig.json')], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      diagnostics = `${e.stdout}${e.stderr}`;
    }
    // Name the markdown line of each error, not the scratch file.
    for (const { b, js } of jobs) diagnostics = diagnostics.replaceAll(path.relative(dir, js).replace(/^out/, 'src').replace(/\.js$/, '.ts'), `${b.file}:${b.line}`);
    t.equal(diagnostics, '', 'the TypeScript blocks compile (strict, against dist/*.d.ts)');
    if (diagnostics !== '') return;
  }

  // Two at a time: the machine has two cores and other tests run beside this one.
  const queue = [...jobs];
  const runOne = async ({ b, ports, js }) => {
    const name = `${b.file}:${b.line}`;
    const m = b.marker;
    const printed = (out, line) => out.split('\n').some((l) => l.startsWith(line));
    let peer;
    if (m.mode === 'against') {
      peer = start(netloopBin(), ['echo', '--proto', m.kind, '--host', '127.0.0.1', '--port', String(ports[0]), '--quiet']);
      await waitForPort(ports[0]).catch(() => {}); // if it never listens, the example fails and says why
    }
    const r = start(js);
    let echoed;
    if (m.mode === 'server') {
      try {
        await waitForPort(ports[0]);
        echoed = await exchange(m.kind, ports[0], m.urlPath);
      } catch (e) {
        echoed = `(${e.message})`;
      }
      // What it prints about the connection (its onClose) may come a moment
      // after the echo: up to 5 s for the expected lines, then Ctrl-C.
      for (const until = Date.now() + 5000; Date.now() < until && !m.expect.every((line) => printed(r.out, line)); ) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      r.p.kill('SIGINT');
    }
    await r.exited;
    if (peer !== undefined) {
      peer.p.kill('SIGTERM');
      await peer.exited;
    }
    const why = `(stdout: ${r.out.slice(-400)}; stderr: ${r.err.slice(-600)})`;
    t.equal(r.code, 0, `${name}: exit code 0 ${r.signal ? `(killed by ${r.signal} after ${TIMEOUT_MS} ms)` : ''} ${why}`);
    for (const line of m.expect) t.ok(printed(r.out, line), `${name}: prints a line starting "${line}" ${why}`);
    if (m.mode === 'server') t.equal(echoed, 'hello', `${name}: echoes what the harness sent to ${m.kind}://127.0.0.1:${ports[0]}${m.urlPath}`);
  };
  const worker = async () => {
    while (queue.length > 0) await runOne(queue.shift());
  };
  await Promise.all([worker(), worker()]);
});

t.test('the README\'s "Try it" works: every server it starts, every page and client it names', async (t) => {
  // The section's shell lines are not run by the harness above, so this runs
  // them. Servers: `npm start` (the start script from package.json) and any
  // `node dist/cli/main.js echo|demo ... --port N` line. Then, for each
  // server's port: every http://127.0.0.1:PORT/ address the section names
  // (for a browser) must answer 200, and every other shell line that connects
  // to ws://127.0.0.1:PORT/ (a `netloop client` command) gets "hello" on its
  // standard input and must print "hello" and exit 0. Each port is rewritten
  // to a free one throughout.
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.split(/^## Try it$/m)[1]?.split(/^## /m)[0] ?? '';
  const shell = [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].flatMap((m) => m[1].split('\n')).filter(Boolean);
  const { scripts } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const servers = shell.flatMap((line) => {
    const command = line.startsWith('npm start') ? scripts.start : /^node dist\/cli\/main\.js (?:echo|demo)\b[^#]*/.exec(line)?.[0];
    const port = command === undefined ? undefined : /--port (\d+)/.exec(command)?.[1];
    return port === undefined ? [] : [{ line, command, port }];
  });
  t.ok(shell.some((l) => l.startsWith('npm start')), 'the section starts the demo with npm start');
  t.ok(servers.length > 0, `servers started by the section: ${servers.map((x) => x.line).join(' | ')}`);
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  let reached = 0;
  for (const { command, port } of servers) {
    const free = await freePort();
    const server = spawn('sh', ['-c', `exec ${command.replace(`--port ${port}`, `--port ${free}`)}`], { cwd: ROOT, env, stdio: 'ignore' });
    const serverExit = new Promise((resolve) => server.on('exit', resolve));
    try {
      await waitForPort(free);
      const pages = [...new Set(section.match(new RegExp(`http://127\\.0\\.0\\.1:${port}/[^\\s)\`'"]*`, 'g')) ?? [])];
      for (const page of pages) {
        const res = await fetch(page.replace(`:${port}/`, `:${free}/`));
        await res.arrayBuffer();
        t.equal(res.status, 200, `${page} answers 200`);
        reached++;
      }
      for (const line of shell.filter((l) => l.includes(`ws://127.0.0.1:${port}/`) && !servers.some((x) => x.line === l))) {
        const p = spawn('sh', ['-c', line.replaceAll(`:${port}/`, `:${free}/`)], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        p.stdout.on('data', (d) => (out += d));
        p.stderr.on('data', (d) => (err += d));
        const timer = setTimeout(() => p.kill('SIGKILL'), TIMEOUT_MS);
        p.stdin.end('hello\n');
        const code = await new Promise((resolve) => p.on('exit', resolve));
        clearTimeout(timer);
        t.equal(code, 0, `${line}: exits 0 (stderr: ${err.slice(-400)})`);
        t.ok(out.split('\n').includes('hello'), `${line}: prints the echo (stdout: ${out.slice(-200)})`);
        reached++;
      }
    } finally {
      server.kill('SIGINT');
      t.equal(await serverExit, 0, `${command}: stops cleanly on Ctrl-C`);
    }
  }
  t.ok(reached > 0, 'the section shows a way to connect to what it starts');
});

// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
function slug(heading) {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
}

// The README is the way in, not the manual: what does not fit goes to docs/ (issue 9).
t.test('the README stays under 250 lines', async (t) => {
  const lines = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n').length - 1;
  t.ok(lines < 250, `README.md has ${lines} lines`);
});

t.test('every relative link of the documentation reaches a file, and its #anchor a heading', async (t) => {
  let links = 0;
  for (const file of docFiles()) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8').replace(/^```[\s\S]*?^```$/gm, '');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
      links++;
      const [rel, anchor] = target.split('#');
      const dest = rel === '' ? path.join(ROOT, file) : path.resolve(path.dirname(path.join(ROOT, file)), rel);
      if (!t.ok(fs.existsSync(dest), `${file}: ${target} exists`)) continue;
      if (anchor === undefined || !dest.endsWith('.md')) continue;
      const headings = [...fs.readFileSync(dest, 'utf8').matchAll(/^#+ (.*)$/gm)].map((m) => slug(m[1]));
      t.ok(headings.includes(anchor), `${file}: ${target} names a heading`);
    }
  }
  t.ok(links >= 20, `checked ${links} links`);
});

t.test('typedoc: the configuration, and the API converted without a warning', async (t) => {
  // Catches a renamed or misspelt option, a wrong entry point, an output
  // folder git would see, and what npm run docs would warn about.
  const { Application, TSConfigReader, TypeDocReader, LogLevel } = await import('typedoc');
  const app = await Application.bootstrap({ options: path.join(ROOT, 'docs', 'typedoc.json'), logLevel: LogLevel.Warn }, [
    new TypeDocReader(),
    new TSConfigReader(),
  ]);
  t.notOk(app.logger.hasErrors() || app.logger.hasWarnings(), 'no complaint reading docs/typedoc.json (see above)');
  t.same(app.options.getValue('entryPoints').map((p) => path.relative(ROOT, path.resolve(ROOT, p))), [path.join('lib', 'index.ts')]);
  t.ok(fs.existsSync(path.join(ROOT, 'lib', 'index.ts')), 'the entry point exists');
  t.equal(app.options.getValue('excludeInternal'), true);
  t.equal(app.options.getValue('excludePrivate'), true);
  const outDir = path.relative(ROOT, path.resolve(ROOT, app.options.getValue('out')));
  t.equal(outDir, path.join('docs', 'api'));
  t.match(fs.readFileSync(path.join(ROOT, '.gitignore'), 'utf8'), /^\/?docs\/api\/?$/m, 'docs/api is gitignored: it is generated');
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  t.equal(pkg.scripts.docs, 'typedoc --options docs/typedoc.json', 'npm run docs runs it (its options in docs/: the top level holds only what the project fixed)');
  t.equal(app.options.getValue('treatValidationWarningsAsErrors'), true, 'npm run docs fails on a validation warning');

  // The conversion and validation npm run docs does, without writing HTML:
  // 7-8 s here under load, where the whole of npm run docs takes 15-30 s. It
  // catches a public signature that names an unexported type (it did once).
  const project = await app.convert();
  t.ok(project, 'the API converts');
  if (project) app.validate(project);
  t.notOk(app.logger.hasErrors() || app.logger.hasWarnings(), 'no error or validation warning (see above)');
});
