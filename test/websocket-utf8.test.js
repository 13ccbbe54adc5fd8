// Streaming UTF-8 validation: byte-exact vectors (Markus Kuhn's stress test,
// the Autobahn 6.x cases), fed whole, byte by byte and in seeded random
// chunkings; the first failing byte must be the one that proves the text
// invalid, and a sequence split anywhere must be accepted.
import t from 'tap';
import { isUtf8 } from 'node:buffer';
import { Utf8Validator, isValidUtf8 } from '../dist/websocket/utf8.js';

const hex = (s) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// A small seeded PRNG (mulberry32) so that random chunkings are reproducible.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Cut points of `length` bytes: whole, 1-byte, and `seeds` random chunkings. */
function chunkings(length, seeds = 12) {
  const out = [{ name: 'whole', cuts: [length] }];
  const ones = [];
  for (let i = 1; i <= length; i++) ones.push(i);
  out.push({ name: '1-byte', cuts: ones });
  for (let s = 1; s <= seeds; s++) {
    const rnd = prng(s);
    const cuts = [];
    let p = 0;
    while (p < length) {
      p = Math.min(length, p + 1 + Math.floor(rnd() * 9));
      cuts.push(p);
    }
    out.push({ name: `seed ${s}`, cuts });
  }
  return out;
}

/**
 * Feeds `bytes` cut at `cuts`; returns { ok, failedChunkEnd, endOk }:
 * failedChunkEnd is the end of the chunk whose feed() returned false.
 */
function run(bytes, cuts) {
  const v = new Utf8Validator();
  let start = 0;
  for (const end of cuts) {
    if (!v.feed(bytes, start, end)) return { ok: false, failedChunkStart: start, failedChunkEnd: end };
    start = end;
  }
  return { ok: true, endOk: v.end() };
}

// [name, hex, verdict] with verdict 'valid', 'truncated' (valid so far, ends
// mid-sequence) or the index of the first byte that proves it invalid.
const vectors = [
  ['empty', '', 'valid'],
  ['ASCII', '48656c6c6f2c20776f726c6421', 'valid'],
  ['κόσμε', 'cebae1bdb9cf83cebcceb5', 'valid'],
  ['Hello-µ@ßöäüàá-UTF-8!!', '48656c6c6f2dc2b540c39fc3b6c3a4c3bcc3a0c3a12d5554462d382121', 'valid'],
  ['U+0000', '00', 'valid'],
  ['U+007F', '7f', 'valid'],
  ['U+0080', 'c280', 'valid'],
  ['U+07FF', 'dfbf', 'valid'],
  ['U+0800', 'e0a080', 'valid'],
  ['U+D7FF (last before surrogates)', 'ed9fbf', 'valid'],
  ['U+E000 (first after surrogates)', 'ee8080', 'valid'],
  ['U+FFFD', 'efbfbd', 'valid'],
  ['U+FFFE, U+FFFF (noncharacters are valid UTF-8)', 'efbfbeefbfbf', 'valid'],
  ['U+10000', 'f0908080', 'valid'],
  ['U+10FFFF', 'f48fbfbf', 'valid'],
  ['U+1F600 😀', 'f09f9880', 'valid'],
  ['stray continuation 80', '80', 0],
  ['stray continuation BF after ASCII', '41bf', 1],
  ['two continuations', '8080', 0],
  ['overlong NUL C0 80', 'c080', 0],
  ['overlong C1 BF', 'c1bf', 0],
  ['overlong 3-byte E0 80 80', 'e08080', 1],
  ['overlong 3-byte E0 9F BF', 'e09fbf', 1],
  ['overlong 4-byte F0 80 80 80', 'f0808080', 1],
  ['overlong 4-byte F0 8F BF BF', 'f08fbfbf', 1],
  ['surrogate U+D800', 'eda080', 1],
  ['surrogate U+DBFF', 'edafbf', 1],
  ['surrogate U+DC00', 'edb080', 1],
  ['surrogate U+DFFF', 'edbfbf', 1],
  ['surrogate pair U+D800 U+DC00', 'eda080edb080', 1],
  ['U+110000 F4 90 80 80', 'f4908080', 1],
  ['U+13FFFF F4 BF BF BF', 'f4bfbfbf', 1],
  ['F5 lead', 'f5808080', 0],
  ['F7 BF BF BF', 'f7bfbfbf', 0],
  ['5-byte F8 88 80 80 80', 'f888808080', 0],
  ['6-byte FC 84 80 80 80 80', 'fc8480808080', 0],
  ['FE', 'fe', 0],
  ['FF', 'ff', 0],
  ['lead then ASCII C2 41', 'c241', 1],
  ['3-byte cut by ASCII E1 80 41', 'e18041', 2],
  ['4-byte cut by ASCII F0 90 80 41', 'f0908041', 3],
  ['lead then lead C2 C2 80', 'c2c280', 1],
  ['Autobahn 6.4.1: κόσμε, F4 90 80 80, "edited"', 'cebae1bdb9cf83cebcceb5f4908080656469746564', 12],
  ['Autobahn 6.4.2: κόσμε, F4 90 80 80 80 ...', 'cebae1bdb9cf83cebcceb5f49080808065646974', 12],
  ['Autobahn 6.4.3: κόσμε, F4 90 then rest', 'cebae1bdb9cf83cebcceb5f4908080', 12],
  ['Autobahn 6.4.4: κόσμε, ED A0 80 ...', 'cebae1bdb9cf83cebcceb5eda080656469746564', 12],
  ['truncated 2-byte', 'c2', 'truncated'],
  ['truncated 3-byte after text', '41e182', 'truncated'],
  ['truncated κόσμε (E1 BD)', 'cebae1bd', 'truncated'],
  ['truncated U+10FFFF (F4 8F BF)', 'f48fbf', 'truncated'],
  ['truncated F0 90', 'f090', 'truncated'],
];

t.test('vectors: one-shot, whole, 1-byte and random chunkings', async (t) => {
  for (const [name, h, verdict] of vectors) {
    const bytes = hex(h);
    t.equal(isValidUtf8(bytes), verdict === 'valid', `${name}: isValidUtf8`);
    t.equal(isValidUtf8(bytes), isUtf8(bytes), `${name}: agrees with buffer.isUtf8`);
    for (const { name: how, cuts } of chunkings(bytes.length)) {
      const r = run(bytes, cuts);
      if (verdict === 'valid') {
        t.same(r, { ok: true, endOk: true }, `${name} (${how}): valid`);
      } else if (verdict === 'truncated') {
        t.same(r, { ok: true, endOk: false }, `${name} (${how}): feed() accepts, end() says mid-sequence`);
      } else {
        // The chunk that returned false is the one holding the proving byte.
        t.equal(r.ok, false, `${name} (${how}): invalid`);
        t.ok(r.failedChunkStart <= verdict && verdict < r.failedChunkEnd, `${name} (${how}): fails in the chunk holding byte ${verdict}`);
      }
    }
  }
});

t.test('the native path (runs of 64 bytes and more) gives the same answers and fails in the same chunk', async (t) => {
  const pad = Buffer.alloc(100, 0x61);
  for (const [name, h, verdict] of vectors) {
    const bytes = Buffer.concat([pad, hex(h), pad]);
    const expected = verdict === 'valid' ? true : false; // truncated + more bytes is invalid (ASCII ends the sequence)
    t.equal(isValidUtf8(bytes), expected, `${name} padded: isValidUtf8`);
    // Whole: one feed over 200+ bytes goes native for the ASCII-heavy parts.
    const whole = run(bytes, [bytes.length]);
    t.equal(whole.ok && whole.endOk, expected, `${name} padded, whole`);
    // Cut after the vector: the padded prefix plus the vector is >= 64 bytes.
    const cut = pad.length + h.length / 2;
    const r = run(bytes, [cut, bytes.length]);
    if (verdict === 'valid') t.same(r, { ok: true, endOk: true }, `${name} padded, cut after the vector`);
    else if (verdict === 'truncated') t.same(r, { ok: false, failedChunkStart: cut, failedChunkEnd: bytes.length }, `${name}: the ASCII after a truncated sequence fails`);
    else t.same(r, { ok: false, failedChunkStart: 0, failedChunkEnd: cut }, `${name} padded: fails in the first feed`);
  }
});

t.test('a long valid text split at every position across two and three feeds', async (t) => {
  const text = 'aé€😀'.repeat(30) + 'κόσμε' + 'x'.repeat(70) + '😀';
  const bytes = Buffer.from(text, 'utf8');
  let failures = 0;
  for (let a = 0; a <= bytes.length; a++) {
    const r = run(bytes, [a, bytes.length]);
    if (!(r.ok && r.endOk)) failures++;
    const b = Math.min(bytes.length, a + 3);
    const r3 = run(bytes, [a, b, bytes.length]);
    if (!(r3.ok && r3.endOk)) failures++;
  }
  t.equal(failures, 0, 'every split accepted');
});

t.test('fuzz against the WHATWG decoder: same verdict, same first failing byte', async (t) => {
  const rnd = prng(2024);
  // Bytes drawn mostly from the interesting ranges so that sequences form.
  const pool = [0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff];
  let mismatches = 0;
  for (let n = 0; n < 3000; n++) {
    const len = 1 + Math.floor(rnd() * 12);
    const bytes = Buffer.alloc(len);
    for (let i = 0; i < len; i++) bytes[i] = pool[Math.floor(rnd() * pool.length)];
    // Oracle: WHATWG's decoder, fed one byte at a time, throws at the first byte that proves invalidity.
    const dec = new TextDecoder('utf-8', { fatal: true });
    let oracle = -1;
    for (let i = 0; i < len && oracle === -1; i++) {
      try {
        dec.decode(bytes.subarray(i, i + 1), { stream: true });
      } catch {
        oracle = i;
      }
    }
    let oracleEnd = oracle === -1;
    if (oracleEnd) {
      try {
        dec.decode();
      } catch {
        oracleEnd = false;
      }
    }
    const v = new Utf8Validator();
    let first = -1;
    for (let i = 0; i < len; i++) {
      if (!v.feed(bytes, i, i + 1)) {
        first = i;
        break;
      }
    }
    const endOk = first === -1 ? v.end() : false;
    if (first !== oracle || endOk !== oracleEnd || isValidUtf8(bytes) !== isUtf8(bytes)) {
      mismatches++;
      if (mismatches < 5) t.fail(`mismatch on ${bytes.toString('hex')}: first ${first} vs ${oracle}, end ${endOk} vs ${oracleEnd}`);
    }
  }
  t.equal(mismatches, 0, '3000 random sequences');
});

t.test('state: failure sticks until reset, end() resets, midSequence', async (t) => {
  const v = new Utf8Validator();
  t.equal(v.feed(hex('c0')), false);
  t.equal(v.feed(hex('41')), false, 'still failed');
  t.equal(v.end(), false, 'end() reports the failure');
  t.equal(v.feed(hex('41')), true, 'end() reset the validator');
  t.equal(v.feed(hex('e2')), true);
  t.equal(v.midSequence, true);
  t.equal(v.feed(hex('82ac')), true, '€ completed in the next feed');
  t.equal(v.midSequence, false);
  t.equal(v.end(), true);
  v.feed(hex('e2'));
  v.reset();
  t.equal(v.end(), true, 'reset() forgets a pending sequence');
  const buf = hex('ffe282ac41');
  t.equal(v.feed(buf, 1, 4), true, 'start/end select a range');
  t.equal(v.end(), true);
  t.equal(isValidUtf8(buf, 1, 5), true);
  t.equal(isValidUtf8(buf, 0, 5), false);
});
