#!/usr/bin/env node
// prepack (npm pack, npm publish): builds the addon for this platform with prebuildify into
// prebuilds/<platform>-<arch>/netloop.napi.<libc>.node, which the package ships and
// lib/native.ts loads through node-gyp-build, so that installing needs no compiler where a
// prebuild fits. N-API: one binary serves every Node version that has NAPI_VERSION (binding.gyp).
// The libc tag keeps a glibc build from being picked on musl (Alpine), which builds from source.
//
// The build runs in a scratch copy of binding.gyp and native/: prebuildify runs `node-gyp
// rebuild`, which would first delete this checkout's build/ (build/Release, which running tests
// load, and the AddressSanitizer build in build/Debug).
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const prebuildify = path.join(path.dirname(require.resolve('prebuildify/package.json')), 'bin.js');

const scratch = mkdtempSync(path.join(os.tmpdir(), 'netloop-prebuild-'));
try {
  for (const f of ['package.json', 'binding.gyp', 'native']) cpSync(path.join(root, f), path.join(scratch, f), { recursive: true });
  // binding.gyp asks node-addon-api for its include dir; prebuildify finds node-gyp in .bin.
  symlinkSync(path.join(root, 'node_modules'), path.join(scratch, 'node_modules'), 'dir');
  execFileSync(process.execPath, [prebuildify, '--napi', '--strip', '--tag-libc', '--cwd', scratch], { stdio: 'inherit' });

  // Only the fresh build ships: a prebuilds/ left from an earlier pack (or another platform's
  // copy) is replaced.
  rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
  cpSync(path.join(scratch, 'prebuilds'), path.join(root, 'prebuilds'), { recursive: true });
  for (const dir of readdirSync(path.join(root, 'prebuilds'))) {
    for (const file of readdirSync(path.join(root, 'prebuilds', dir))) {
      // A stripped binary that does not load would ship silently: load it once here.
      const binding = require(path.join(root, 'prebuilds', dir, file));
      if (typeof binding.EngineHandle !== 'function') throw new Error(`prebuilds/${dir}/${file}: no EngineHandle`);
      process.stderr.write(`prebuild: prebuilds/${dir}/${file}\n`);
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
