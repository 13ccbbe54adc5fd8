// The package as a user gets it. `npm pack` runs in a staging copy of this checkout (its
// prepack and prepare scripts: the prebuilt addon, the TypeScript build), so that nothing the
// other tests are loading (build/, dist/) is rebuilt under them. The tarball is installed into a
// fresh app whose PATH has node, npm, npx and sh and no compiler or make, so the install only works
// if the prebuild is used, and then used from that app: a WebSocket echo through the installed
// package with a plain `net` client, the `netloop` command, and a strict TypeScript app compiled
// against the installed types and run.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const fixtures = path.join(root, 'test', 'fixtures', 'package-app');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));

// What the package must not need to install: with any of these the test could not tell a
// source build from the prebuild.
const BUILD_TOOLS = ['g++', 'gcc', 'cc', 'c++', 'make', 'clang', 'clang++'];

// The children's environment: this process's, less the npm_* variables that `npm test` sets
// (a nested npm would take them as its own configuration) and with the PATH given.
function env(PATH) {
  const e = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  return { ...e, PATH };
}

function run(t, file, args, opts) {
  const r = spawnSync(file, args, { encoding: 'utf8', timeout: 90_000, ...opts });
  if (r.status !== 0) t.comment(`${path.basename(file)} ${args.join(' ')}: status ${r.status} ${r.error ?? ''}\n${r.stdout}\n${r.stderr}`.slice(-4000));
  return r;
}

function onPath(name, PATH) {
  return PATH.split(path.delimiter).some((dir) => dir !== '' && existsSync(path.join(dir, name)));
}

t.setTimeout(150_000);

const npmVersion = spawnSync('npm', ['--version'], { encoding: 'utf8' });
if (npmVersion.status !== 0) {
  t.skip(`npm is not available (${npmVersion.error?.message ?? npmVersion.stderr}): cannot pack or install`);
} else {
  t.test('npm pack, install without a compiler, use', async (t) => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'netloop-package-'));
    t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

    // The staging copy: every file git would commit (tracked, or new and not ignored), and the
    // checkout's node_modules for the build tools (tsc, prebuildify, node-gyp, node-addon-api).
    const stage = path.join(tmp, 'stage');
    const ls = run(t, 'git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root });
    if (!t.equal(ls.status, 0, 'git lists the checkout\'s files')) return;
    for (const f of ls.stdout.split('\0').filter(Boolean)) {
      if (!existsSync(path.join(root, f))) continue; // deleted in the work tree, not yet committed
      cpSync(path.join(root, f), path.join(stage, f), { recursive: true });
    }
    symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'), 'dir');

    const out = path.join(tmp, 'out');
    mkdirSync(out);
    const pack = run(t, 'npm', ['pack', '--pack-destination', out], { cwd: stage, env: env(process.env.PATH) });
    if (!t.equal(pack.status, 0, 'npm pack exits 0')) return;
    const tarballs = readdirSync(out);
    t.same(tarballs, [`${pkg.name}-${pkg.version}.tgz`], 'one tarball');
    const tgz = path.join(out, tarballs[0]);

    // What it ships: the library, the prebuild for this platform, the sources of the fallback
    // build; not the bench, the tests, the TypeScript sources or the compiled examples.
    const list = run(t, 'tar', ['-tzf', tgz]).stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    const tuple = `${process.platform}-${process.arch}`;
    const prebuilds = list.filter((f) => f.startsWith(`prebuilds/${tuple}/`) && f.endsWith('.node'));
    t.equal(prebuilds.length, 1, `one prebuild for ${tuple}: ${prebuilds}`);
    for (const f of ['package.json', 'README.md', 'binding.gyp', 'native/addon.cc', 'native/poller_epoll.cc', 'dist/index.js', 'dist/index.d.ts']) {
      t.ok(list.includes(f), `ships ${f}`);
    }
    t.same(list.filter((f) => /^(bench|test|lib|examples|scripts|build|\.ci)\//.test(f) || f.startsWith('dist/examples/')), [], 'ships nothing of bench/, test/, lib/, examples/, scripts/, build/');
    t.same(list.filter((f) => f.includes('node_modules')), [], 'no node_modules');

    // The app, and a PATH with node, npm, npx and sh only (npm runs scripts with sh).
    const app = path.join(tmp, 'app');
    const bin = path.join(app, '.bin-path');
    mkdirSync(bin, { recursive: true });
    for (const name of ['node', 'npm', 'npx', 'sh']) {
      const which = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
      if (!t.equal(which.status, 0, `${name} found`)) return;
      symlinkSync(which.stdout.trim(), path.join(bin, name));
    }
    const PATH = bin;
    t.same(BUILD_TOOLS.filter((tool) => onPath(tool, PATH)), [], 'no compiler or make on the app\'s PATH');
    // npm runs a dependency's install script only when the app allows it (allowScripts, keyed
    // by the dependency's resolved spec): allowed here, so the test sees that `node-gyp-build`
    // takes the prebuild instead of compiling. Without it, the script is skipped and the
    // prebuild is found at run time all the same.
    writeFileSync(
      path.join(app, 'package.json'),
      JSON.stringify({ name: 'netloop-package-test-app', version: '1.0.0', private: true, type: 'module', allowScripts: { [`file:${tgz}`]: true } }, null, 2),
    );
    // node-gyp-build and node-addon-api are in npm's cache since `npm ci`: no network needed.
    const install = run(t, 'npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts', tgz], { cwd: app, env: env(PATH) });
    if (!t.equal(install.status, 0, 'npm install of the tarball exits 0 with no compiler on PATH')) return;
    t.match(install.stdout, /> node-gyp-build/, 'the install script ran');
    const installed = path.join(app, 'node_modules', pkg.name);
    t.notOk(existsSync(path.join(installed, 'build')), 'nothing was compiled (no build/)');
    t.notOk(existsSync(path.join(app, 'node_modules', 'node-gyp')), 'node-gyp is not installed with it');
    t.ok(existsSync(path.join(app, 'node_modules', 'node-gyp-build')), 'node-gyp-build is');

    await t.test('WebSocket echo through the installed package', async (t) => {
      cpSync(path.join(fixtures, 'ws-echo.mjs'), path.join(app, 'ws-echo.mjs'));
      const text = 'hello from the installed package';
      const r = run(t, path.join(bin, 'node'), ['ws-echo.mjs', text], { cwd: app, env: env(PATH), timeout: 20_000 });
      t.equal(r.status, 0, 'exits 0');
      const res = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
      t.equal(res.status, 'HTTP/1.1 101 Switching Protocols');
      t.equal(res.acceptOk, true, 'Sec-WebSocket-Accept is right');
      t.equal(res.echoed, Buffer.concat([Buffer.from([0x81, text.length]), Buffer.from(text)]).toString('hex'), 'the unmasked text frame came back');
    });

    await t.test('the netloop command', async (t) => {
      const r = run(t, path.join(app, 'node_modules', '.bin', 'netloop'), ['--help'], { cwd: app, env: env(PATH), timeout: 20_000 });
      t.equal(r.status, 0, 'netloop --help exits 0 (bin is executable, its #! finds node)');
      t.match(r.stdout, /^Usage: netloop <command>/);
    });

    await t.test('netloop echo --proto ws from the app: the command it prints works there', async (t) => {
      const server = spawn(path.join(app, 'node_modules', '.bin', 'netloop'), ['echo', '--proto', 'ws', '--host', '127.0.0.1', '--port', '0'], {
        cwd: app,
        env: env(PATH),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const exited = new Promise((resolve) => server.on('exit', resolve));
      t.teardown(() => server.kill('SIGKILL'));
      let out = '';
      server.stdout.setEncoding('utf8').on('data', (d) => (out += d));
      const hint = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(null), 10_000);
        server.stdout.on('data', () => {
          const m = /^Try it: (.+?) {3}\(/m.exec(out);
          if (m !== null) {
            clearTimeout(timer);
            resolve(m[1]);
          }
        });
      });
      if (!t.match(hint, /^npx netloop client ws:\/\/127\.0\.0\.1:\d+\/$/, 'prints the npx command', { out })) return;
      const c = spawnSync('sh', ['-c', hint], { cwd: app, env: env(PATH), input: 'from the app\n', encoding: 'utf8', timeout: 30_000 });
      t.equal(c.status, 0, 'the printed command exits 0', { stderr: c.stderr });
      t.equal(c.stdout, 'from the app\n', 'and echoes the line');
      server.kill('SIGINT');
      t.equal(await exited, 0, 'the server stops on SIGINT');
    });

    await t.test('a strict TypeScript app against the installed types', async (t) => {
      const src = path.join(app, 'ts');
      mkdirSync(src);
      cpSync(path.join(fixtures, 'typed-echo.ts'), path.join(src, 'typed-echo.ts'));
      writeFileSync(
        path.join(src, 'tsconfig.json'),
        JSON.stringify(
          {
            compilerOptions: {
              target: 'ES2022',
              module: 'NodeNext',
              moduleResolution: 'NodeNext',
              strict: true,
              // What this checks is that an app resolves the installed package's types (exports,
              // types, the netloop/compare subpath); the declarations themselves are checked with
              // skipLibCheck off by test/types.test.js, which need not be paid for twice.
              skipLibCheck: true,
              outDir: 'out',
              // Node's types from this checkout: a user's app has its own @types/node.
              typeRoots: [path.join(root, 'node_modules', '@types')],
              types: ['node'],
            },
            include: ['*.ts'],
          },
          null,
          2,
        ),
      );
      const c = run(t, process.execPath, [tsc, '-p', src], { cwd: app, env: env(PATH) });
      t.equal(c.status, 0, 'tsc exits 0', { output: c.stdout });
      if (c.status !== 0) return;
      const r = run(t, path.join(bin, 'node'), [path.join(src, 'out', 'typed-echo.js')], { cwd: app, env: env(PATH), timeout: 20_000 });
      t.equal(r.status, 0, 'runs');
      const res = JSON.parse(r.stdout.trim().split('\n').pop() || '{}');
      t.equal(res.formatted, 'CloseError 4000', 'netloop/compare resolves and runs');
      t.same(res.received, [
        { type: 'text', text: 'typed hello' },
        { type: 'binary', text: 'typed bytes' },
      ]);
      // The server echoes the close code (DESIGN.md's close table), not the reason.
      t.same(res.close, { code: 1000, reason: '', wasClean: true }, 'clean close: 1000 echoed');
    });
  });
}
