#!/usr/bin/env node
// Builds the bench's native programs (netloop-loadgen, netloop-echo-c) into bench/native/bin/
// (gitignored) when one is missing or older than its sources or this file. They are the bench's
// tools, not the package's: the addon's binding.gyp does not know them, so installing netloop
// never compiles them. bench/run.js and test/bench-smoke.test.js call ensureBenchPrograms();
// `node bench/native/build.js` builds them by hand (--force: even when up to date).
//
// The flags are those node-gyp used while binding.gyp built them (its Release defaults plus the
// targets' own, the later -O winning), so the figures measured before the move stay comparable.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const defaultBinDir = path.join(here, 'bin');

// Every file of a folder with one of the extensions, as paths relative to here, sorted.
const filesIn = (dir, exts) =>
  readdirSync(path.join(here, dir))
    .filter((f) => exts.some((e) => f.endsWith(e)))
    .sort()
    .map((f) => path.join(dir, f));

const programs = [
  {
    name: 'netloop-loadgen',
    compiler: () => process.env.CXX || 'c++',
    // One file per concern in loadgen/ (see loadgen/main.cc); every .cc is compiled, every .h
    // is an input for staleness.
    sources: filesIn('loadgen', ['.cc']),
    headers: filesIn('loadgen', ['.h']),
    // The generator is written without exceptions (see its header comment).
    flags: ['-std=c++17', '-O2', '-fno-exceptions', '-fno-omit-frame-pointer', '-Wall', '-Wextra', '-pthread'],
  },
  {
    name: 'netloop-echo-c',
    compiler: () => process.env.CC || 'cc',
    sources: ['echo_server.c'],
    flags: ['-O3', '-fno-omit-frame-pointer', '-Wall', '-Wextra'],
  },
];
// Included by both; a change to it rebuilds both.
const sharedHeaders = ['ws_accept.h'];

const mtime = (file) => statSync(file).mtimeMs;

/**
 * Makes sure both programs exist in binDir and are newer than their sources; compiles the
 * ones that are not. Returns { loadgen, echoC } (absolute paths) and the names it built.
 * Throws with the compiler's output when a compile fails. Linux only: both use epoll.
 */
export function ensureBenchPrograms({ binDir = defaultBinDir, force = false, log = () => {} } = {}) {
  const built = [];
  const inputs = (p) => [...p.sources, ...(p.headers ?? []), ...sharedHeaders].map((s) => path.join(here, s)).concat(fileURLToPath(import.meta.url));
  for (const p of programs) {
    const out = path.join(binDir, p.name);
    const newest = Math.max(...inputs(p).map(mtime));
    if (!force && existsSync(out) && mtime(out) >= newest) continue;
    if (process.platform !== 'linux') throw new Error(`${p.name}: the bench's native programs use epoll and build on Linux only`);
    mkdirSync(binDir, { recursive: true });
    // Compile beside the target and rename over it: two test processes building at once each
    // finish a whole binary, and a reader never sees a half-written one.
    const tmp = `${out}.tmp-${process.pid}`;
    const cmd = [p.compiler(), ...p.flags, ...p.sources.map((s) => path.join(here, s)), '-o', tmp];
    log(`bench: building ${p.name}: ${cmd.join(' ')}`);
    try {
      execFileSync(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    } catch (err) {
      rmSync(tmp, { force: true });
      const why = err.code === 'ENOENT' ? `${cmd[0]} not found (set CXX/CC to a C/C++ compiler)` : `${err.stderr || err.message}`;
      throw new Error(`cannot build ${p.name}: ${why}`);
    }
    renameSync(tmp, out);
    built.push(p.name);
  }
  return { loadgen: path.join(binDir, 'netloop-loadgen'), echoC: path.join(binDir, 'netloop-echo-c'), built };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const r = ensureBenchPrograms({ force: process.argv.includes('--force'), log: (l) => process.stderr.write(`${l}\n`) });
    process.stdout.write(`${r.loadgen}\n${r.echoC}\n`);
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
}
