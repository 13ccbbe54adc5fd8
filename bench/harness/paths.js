// Where the harness finds things. One place, so an override is honoured everywhere.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { defaultBinDir, ensureBenchPrograms } from '../native/build.js';

export const benchDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const repoRoot = path.dirname(benchDir);
// NETLOOP_BENCH_RESULTS_DIR: somewhere else for the JSON and SVG of each run (the smoke test
// writes to a temporary directory).
export const resultsDir = process.env.NETLOOP_BENCH_RESULTS_DIR
  ? path.resolve(process.env.NETLOOP_BENCH_RESULTS_DIR)
  : path.join(benchDir, 'results');

// The native programs (netloop-loadgen, netloop-echo-c). bench/native/build.js compiles them into
// bench/native/bin when missing or stale (prepareNativePrograms below); NETLOOP_BENCH_BIN_DIR
// points elsewhere (e.g. binaries compiled by hand), and those are used as they are.
export const binDirOverridden = Boolean(process.env.NETLOOP_BENCH_BIN_DIR);
export const binDir = binDirOverridden ? path.resolve(process.env.NETLOOP_BENCH_BIN_DIR) : defaultBinDir;

export const loadgenPath = path.join(binDir, 'netloop-loadgen');
export const echoCPath = path.join(binDir, 'netloop-echo-c');

/** Builds the native programs unless NETLOOP_BENCH_BIN_DIR names prebuilt ones; throws if a compile fails. */
export function prepareNativePrograms(log) {
  if (!binDirOverridden) ensureBenchPrograms({ binDir, log });
}

// The netloop CLI. NETLOOP_BENCH_NETLOOP_CLI replaces it (any script taking the same arguments).
export const netloopCliPath = process.env.NETLOOP_BENCH_NETLOOP_CLI
  ? path.resolve(process.env.NETLOOP_BENCH_NETLOOP_CLI)
  : path.join(repoRoot, 'dist', 'cli', 'main.js');

export const buildHint =
  '`node bench/native/build.js` builds them into bench/native/bin (a C++17 and a C compiler: CXX, CC);\n' +
  'or by hand:\n' +
  '  g++ -O2 -std=c++17 -fno-exceptions -Wall -Wextra -pthread bench/native/loadgen/*.cc -o DIR/netloop-loadgen\n' +
  '  gcc -O3 -Wall -Wextra bench/native/echo_server.c -o DIR/netloop-echo-c\n' +
  'and set NETLOOP_BENCH_BIN_DIR=DIR';
