// uWebSockets.js as a peer of the bench, installed on demand.
//
// The unofficial npm build (@trufflesuite/uws-js-unofficial) ships prebuilt binaries for every
// Node ABI it supports, 114 MB unpacked: too much for every `npm ci` of this repository, so it is
// not a devDependency. The first scenario that asks for it installs it into bench/.peers/uws
// (git-ignored, outside the package's node_modules), and every later run reuses that copy.
// A machine without the registry, or a Node whose ABI the build lacks, gets a skip reason
// instead: the scenario reports uWS.js as skipped and runs the other servers.
//
//   node bench/peers/uws.js          installs (if needed) and prints where the module is, or why not
//   import { loadUws, uwsModulePath } from './peers/uws.js'
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// Pinned: a figure in bench/README.md names the uWS.js version it was measured with.
export const UWS_PACKAGE = '@trufflesuite/uws-js-unofficial';
export const UWS_VERSION = '20.30.0-unofficial.0';

const benchDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
// NETLOOP_BENCH_PEERS_DIR: somewhere else to keep on-demand peers (a shared cache, a read-only
// prepared copy).
export const peersDir = process.env.NETLOOP_BENCH_PEERS_DIR
  ? path.resolve(process.env.NETLOOP_BENCH_PEERS_DIR)
  : path.join(benchDir, '.peers');
const installDir = path.join(peersDir, 'uws');
const INSTALL_TIMEOUT_MS = 10 * 60_000; // 114 MB from the registry on a slow link

let cached = null; // { path } | { skip }: asked once per process

/**
 * Where the uWS.js module is, installing it first if needed: `{ path }` (an absolute file a
 * server can `require`), or `{ skip }` with the reason it cannot run here. Synchronous, because the
 * harness checks `missing()` of every server before a run. `install: false` only looks.
 */
export function uwsModulePath({ install = true, log = () => {} } = {}) {
  if (cached && (cached.path || !install)) return cached;
  const requireFrom = createRequire(path.join(installDir, 'package.json'));
  let entry = resolveIn(requireFrom);
  if (!entry && install) {
    log(`installing ${UWS_PACKAGE}@${UWS_VERSION} into ${installDir} (once; about 114 MB)`);
    const why = installPackage();
    if (why) return (cached = { skip: why });
    entry = resolveIn(requireFrom);
  }
  if (!entry) return (cached = { skip: `${UWS_PACKAGE} is not installed in ${installDir} (run: node bench/peers/uws.js)` });
  const why = loadProblem(entry);
  return (cached = why ? { skip: why } : { path: entry });
}

/** The uWS.js module itself (for a server script), or throws with the skip reason. */
export function loadUws(options) {
  const found = uwsModulePath(options);
  if (found.skip) throw new Error(`uWS.js unavailable: ${found.skip}`);
  return createRequire(import.meta.url)(found.path);
}

function resolveIn(requireFrom) {
  try {
    return requireFrom.resolve(UWS_PACKAGE);
  } catch {
    return null;
  }
}

function installPackage() {
  mkdirSync(installDir, { recursive: true });
  const manifest = path.join(installDir, 'package.json');
  // A package.json of its own, so npm installs here and never walks up into the repository's.
  if (!existsSync(manifest)) writeFileSync(manifest, JSON.stringify({ name: 'netloop-bench-peer-uws', private: true }, null, 2) + '\n');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--save-exact', `${UWS_PACKAGE}@${UWS_VERSION}`], {
    cwd: installDir,
    encoding: 'utf8',
    timeout: INSTALL_TIMEOUT_MS,
  });
  if (r.error) return `npm install failed: ${r.error.message}`;
  if (r.status !== 0) return `npm install ${UWS_PACKAGE} exited with ${r.status}: ${lastLines(r.stderr || r.stdout)}`;
  return null;
}

// The package throws at require when it has no binary for this platform or Node ABI: find out in
// a child, so that a crash in its loader cannot take the harness down.
function loadProblem(entry) {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(entry)})`], { encoding: 'utf8', timeout: 30_000 });
  if (r.status === 0) return null;
  return `${UWS_PACKAGE} does not load on Node ${process.version} (${process.platform}-${process.arch}, ABI ${process.versions.modules}): ${lastLines(r.stderr || String(r.error))}`;
}

const lastLines = (text) => String(text).trim().split('\n').slice(-3).join(' | ');

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const found = uwsModulePath({ log: (line) => console.error(line) });
  if (found.skip) {
    console.error(`uWS.js skipped: ${found.skip}`);
    process.exitCode = 1;
  } else {
    console.log(found.path);
  }
}
