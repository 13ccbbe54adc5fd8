#!/usr/bin/env node
// The fuzzer of netloop's parsers: a seeded mutation fuzzer in plain Node.
//
//   node test/fuzz/run.js [target|all] [seconds] [--seed N] [--runs N] [--max-len N]
//   npm run fuzz -- http-request-parser 300
//
// Why not Jazzer.js: @jazzer.js/core 4.0.0 (the only version whose native
// libFuzzer addon ships in the npm tarball) needs glibc 2.38
// (__isoc23_strtol); this Debian 12 machine has 2.36, so the addon fails to
// load. Older versions download their binary from GitHub or build it from an
// LLVM tarball fetched from GitHub, which this machine cannot reach. The
// targets keep Jazzer.js's convention (`export function fuzz(data)` that
// throws on a finding), so `npx jazzer test/fuzz/<target>.fuzz.js` runs them
// wherever Jazzer.js loads.
//
// How it works: a deterministic PRNG (xorshift128+, from --seed) picks an
// input of the target's seed corpus (test/fuzz/corpus/<target>/) or of those
// it kept, and applies 1 to 8 mutations: bit flips, interesting bytes,
// random inserts and deletes, duplicated ranges, splices with another input,
// and the target's dictionary tokens. There is no code coverage to guide it;
// instead a target may return a short string naming the path the input
// took (a result kind, an error code, a header count): an input that
// produces one not seen before is kept and mutated further, which is what
// leads it from "rejected at byte 3" to deeper states. A quarter of the
// inputs are mutated from the seeds themselves.
//
// A finding is an exception from fuzz(): the input is written to
// fuzz-crashes/<target>-<sha1 prefix> (hex and raw), the stack printed, and
// the process exits 1. Reproduce with --replay <file>.
//
// With --runs N it stops after N inputs (the short run in test/fuzz.test.js);
// otherwise after `seconds` (default 60 per target).
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TARGETS = [
  'http-request-parser',
  'http-response-parser',
  'websocket-receiver',
  'utf8',
  'deflate-negotiation',
  'deflate-inflate',
  'close-payload',
];

function usage(message) {
  if (message) console.error(`fuzz: ${message}`);
  console.error(`usage: node test/fuzz/run.js [${TARGETS.join('|')}|all] [seconds] [--seed N] [--runs N] [--max-len N] [--replay FILE]`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { target: 'all', seconds: 60, seed: 1, runs: 0, maxLen: 0, replay: null };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    const int = (v) => {
      if (!/^\d+$/.test(v)) usage(`${a} takes a whole number, got ${v}`);
      return Number(v);
    };
    if (a === '--seed') o.seed = int(next());
    else if (a === '--runs') o.runs = int(next());
    else if (a === '--max-len') o.maxLen = int(next());
    else if (a === '--replay') o.replay = next();
    else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else positional.push(a);
  }
  if (positional.length > 2) usage('too many arguments');
  if (positional[0] !== undefined) o.target = positional[0];
  if (positional[1] !== undefined) o.seconds = Number(positional[1]);
  if (o.target !== 'all' && !TARGETS.includes(o.target)) usage(`unknown target ${o.target}`);
  if (!(o.seconds > 0)) usage('seconds must be positive');
  return o;
}

/** xorshift128+ on two 32-bit halves pairs: deterministic for a seed, fast, good enough to pick mutations. */
export class Rng {
  #a;
  #b;
  constructor(seed) {
    // splitmix32 spreads a small seed over the state, which must not be all zero.
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = next() | 1;
    this.#b = next();
  }
  /** A 32-bit unsigned integer. */
  u32() {
    let x = this.#a;
    const y = this.#b;
    this.#a = y;
    x ^= x << 23;
    x ^= x >>> 17;
    x ^= y ^ (y >>> 26);
    this.#b = x;
    return (x + y) >>> 0;
  }
  /** An integer in [0, n). */
  below(n) {
    return n <= 1 ? 0 : this.u32() % n;
  }
  bytes(n) {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

const INTERESTING = [0x00, 0x01, 0x09, 0x0a, 0x0d, 0x20, 0x22, 0x2c, 0x3a, 0x3b, 0x3d, 0x5c, 0x7e, 0x7f, 0x80, 0xbf, 0xc0, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff];

/** One input mutated 1 to 8 times. */
export function mutate(rng, input, pool, dictionary, maxLen) {
  let b = Buffer.from(input);
  const rounds = 1 + rng.below(8);
  for (let r = 0; r < rounds; r++) {
    const at = rng.below(b.length + 1);
    switch (rng.below(9)) {
      case 0: // flip a bit
        if (b.length > 0) b[rng.below(b.length)] ^= 1 << rng.below(8);
        break;
      case 1: // an interesting byte
        if (b.length > 0) b[rng.below(b.length)] = INTERESTING[rng.below(INTERESTING.length)];
        break;
      case 2: // a random byte
        if (b.length > 0) b[rng.below(b.length)] = rng.u32() & 0xff;
        break;
      case 3: // insert random bytes
        b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.below(8)), b.subarray(at)]);
        break;
      case 4: {
        // delete a range
        const n = 1 + rng.below(Math.min(16, b.length - at + 1));
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + n))]);
        break;
      }
      case 5: {
        // duplicate a range (long runs: repeated headers, spaces, fragments)
        if (b.length === 0) break;
        const from = rng.below(b.length);
        const piece = b.subarray(from, from + 1 + rng.below(Math.min(64, b.length - from)));
        const copies = 1 + rng.below(rng.below(4) === 0 ? 64 : 4);
        b = Buffer.concat([b.subarray(0, at), ...Array(copies).fill(piece), b.subarray(at)]);
        break;
      }
      case 6: {
        // splice: our head, another input's tail
        const other = pool[rng.below(pool.length)];
        b = Buffer.concat([b.subarray(0, at), other.subarray(rng.below(other.length + 1))]);
        break;
      }
      case 7:
      case 8: {
        // a dictionary token, inserted or written over
        if (dictionary.length === 0) break;
        const token = dictionary[rng.below(dictionary.length)];
        b = rng.below(2) === 0 || at + token.length > b.length
          ? Buffer.concat([b.subarray(0, at), token, b.subarray(at)])
          : Buffer.concat([b.subarray(0, at), token, b.subarray(at + token.length)]);
        break;
      }
    }
  }
  return b.length > maxLen ? b.subarray(0, maxLen) : b;
}

export function loadCorpus(target) {
  const dir = path.join(HERE, 'corpus', target);
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
  const corpus = files.map((f) => fs.readFileSync(path.join(dir, f)));
  if (corpus.length === 0) throw new Error(`no seed corpus in ${dir}`);
  return corpus;
}

function saveCrash(target, input, err) {
  const dir = path.join(HERE, '..', '..', 'fuzz-crashes');
  fs.mkdirSync(dir, { recursive: true });
  const name = `${target}-${createHash('sha1').update(input).digest('hex').slice(0, 12)}`;
  fs.writeFileSync(path.join(dir, name), input);
  fs.writeFileSync(path.join(dir, `${name}.txt`), `${input.toString('hex')}\n\n${err?.stack ?? String(err)}\n`);
  return path.join(dir, name);
}

/** Fuzzes one target; resolves with its statistics, or exits the process on a finding. */
export async function fuzzTarget(target, { seconds, seed, runs, maxLen }) {
  const mod = await import(pathToFileURL(path.join(HERE, `${target}.fuzz.js`)).href);
  const limit = maxLen || mod.maxLen || 4096;
  const dictionary = (mod.dictionary ?? []).map((d) => Buffer.from(d, 'latin1'));
  const seeds = loadCorpus(target);
  const pool = [...seeds];
  const paths = new Set();
  const rng = new Rng(seed);
  const deadline = Date.now() + seconds * 1000;
  const run = (input) => {
    try {
      const p = mod.fuzz(input);
      if (typeof p === 'string' && !paths.has(p)) {
        paths.add(p);
        // Keep the input that found a new path, bounded so the pool stays cheap to pick from.
        if (pool.length < 4096) pool.push(Buffer.from(input));
      }
    } catch (err) {
      const file = saveCrash(target, input, err);
      console.error(`fuzz ${target}: FINDING after ${n} inputs (seed ${seed}); input saved to ${file}`);
      console.error(err?.stack ?? err);
      process.exit(1);
    }
  };
  let n = 0;
  for (const s of seeds) {
    run(s);
    n++;
  }
  while (runs > 0 ? n < runs : (n & 0xff) !== 0 || Date.now() < deadline) {
    // A quarter of the time a seed: the hand-written inputs sit next to the
    // edges worth testing, and the kept ones must not crowd them out.
    const base = rng.below(4) === 0 ? seeds[rng.below(seeds.length)] : pool[rng.below(pool.length)];
    run(mutate(rng, base, pool, dictionary, limit));
    n++;
  }
  mod.teardown?.();
  return { target, inputs: n, paths: paths.size, kept: pool.length - seeds.length };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o.replay !== null) {
    if (o.target === 'all') usage('--replay needs a target');
    const mod = await import(pathToFileURL(path.join(HERE, `${o.target}.fuzz.js`)).href);
    console.log(`fuzz ${o.target}: replaying ${o.replay}: ${mod.fuzz(fs.readFileSync(o.replay)) ?? 'no finding'}`);
    mod.teardown?.();
    return;
  }
  const targets = o.target === 'all' ? TARGETS : [o.target];
  for (const target of targets) {
    const t0 = Date.now();
    const s = await fuzzTarget(target, o);
    console.log(`fuzz ${target}: ${s.inputs} inputs in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${s.paths} distinct paths, ${s.kept} inputs kept, no finding`);
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err?.stack ?? err);
    process.exit(1);
  });
}
