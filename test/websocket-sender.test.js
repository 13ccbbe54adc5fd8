// Framing: byte-exact RFC 6455 §5.7 fixtures, length encodings, masking
// (fixed and random keys, checked by unmasking with the Receiver), the
// control-frame and close-payload rules, and the shared close-code table.
import t from 'tap';
import {
  frame,
  frameHeaderSize,
  writeFrameHeader,
  closePayload,
  closeFrame,
  pingFrame,
  pongFrame,
} from '../dist/websocket/sender.js';
import { copyMasked, maskInPlace } from '../dist/websocket/mask.js';
import { CloseCode, isValidCloseCode, MAX_CLOSE_REASON_BYTES } from '../dist/websocket/close.js';
import { Opcode } from '../dist/websocket/opcodes.js';
import { Receiver } from '../dist/websocket/receiver.js';

const hex = (s) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const KEY = hex('37fa213d');
const join = (bufs) => Buffer.concat(bufs).toString('hex');

t.test('RFC 6455 §5.7 examples, byte for byte', async (t) => {
  t.equal(join(frame(Opcode.Text, 'Hello')), '810548656c6c6f', 'single-frame unmasked text');
  t.equal(join(frame(Opcode.Text, 'Hello', { mask: KEY })), '818537fa213d7f9f4d5158', 'single-frame masked text');
  t.equal(join(frame(Opcode.Text, 'Hel', { fin: false })), '010348656c', 'first fragment');
  t.equal(join(frame(Opcode.Continuation, 'lo')), '80026c6f', 'last fragment');
  t.equal(join(pingFrame('Hello')), '890548656c6c6f', 'unmasked ping');
  t.equal(join(pongFrame('Hello', { mask: KEY })), '8a8537fa213d7f9f4d5158', 'masked pong');
  const b256 = Buffer.alloc(256, 1);
  const f256 = frame(Opcode.Binary, b256);
  t.equal(f256[0].toString('hex'), '827e0100', '256 bytes: 16-bit length');
  t.equal(f256[1], b256, 'unmasked payload is the caller’s buffer, not a copy');
  const f64k = frame(Opcode.Binary, Buffer.alloc(65536));
  t.equal(f64k[0].toString('hex'), '827f0000000000010000', '64 KiB: 64-bit length');
});

t.test('length encodings at their boundaries', async (t) => {
  const cases = [
    [0, '8200'],
    [125, '827d'],
    [126, '827e007e'],
    [65535, '827effff'],
    [65536, '827f0000000000010000'],
    [70000, '827f0000000000011170'],
  ];
  for (const [n, h] of cases) {
    t.equal(frame(Opcode.Binary, Buffer.alloc(n))[0].toString('hex'), h, `${n} bytes`);
    t.equal(frameHeaderSize(n, false), h.length / 2);
    t.equal(frameHeaderSize(n, true), h.length / 2 + 4);
  }
  t.equal(frame(Opcode.Binary, Buffer.alloc(0)).length, 1, 'empty payload: the header alone');
  // Lengths above 2^32 (header only; no such buffer is allocated).
  const h = Buffer.alloc(14);
  t.equal(writeFrameHeader(h, 0, Opcode.Binary, 2 ** 40 + 5, true, false, null), 10);
  t.equal(h.subarray(0, 10).toString('hex'), '827f0000010000000005');
  t.equal(writeFrameHeader(h, 2, Opcode.Text, 5, false, true, KEY), 6, 'at an offset, with RSV1 and a key');
  t.equal(h.subarray(2, 8).toString('hex'), '418537fa213d');
});

t.test('RSV1, fragmentation flags, Uint8Array and string payloads', async (t) => {
  t.equal(join(frame(Opcode.Text, 'x', { rsv1: true })), 'c10178');
  t.equal(join(frame(Opcode.Binary, 'x', { fin: false, rsv1: true })), '420178');
  t.equal(join(frame(Opcode.Binary, new Uint8Array([1, 2, 3]))), '8203010203');
  const view = new Uint8Array([9, 9, 1, 2, 9]).subarray(2, 4);
  t.equal(join(frame(Opcode.Binary, view)), '82020102', 'a Uint8Array view is framed as its own bytes');
  t.equal(join(frame(Opcode.Text, 'é')), '8102c3a9', 'strings are UTF-8');
  t.equal(join(frame(Opcode.Close)), '8800');
});

t.test('masking: the caller’s payload is untouched; random keys decode', async (t) => {
  const payload = Buffer.from('Hello');
  const out = frame(Opcode.Text, payload, { mask: KEY });
  t.equal(out.length, 1, 'header and masked payload share one buffer');
  t.equal(payload.toString(), 'Hello', 'payload not masked in place');
  t.equal(join(frame(Opcode.Text, '', { mask: KEY })), '818037fa213d', 'empty masked frame carries its key');

  // Random keys: 3000 frames (more than one refill of the key pool) decoded by a server receiver.
  const got = [];
  const r = new Receiver({ onMessage: (type, d) => got.push(d.toString()), onError: (e) => t.fail(e.message) }, { role: 'server' });
  const keys = new Set();
  for (let i = 0; i < 3000; i++) {
    const [f] = frame(Opcode.Text, `message ${i} ${'x'.repeat(i % 70)}`, { mask: true });
    if ((f[1] & 0x80) === 0) t.fail('MASK bit not set');
    keys.add(f.subarray(2, 6).toString('hex')); // payloads < 126 bytes: the key follows 2 header bytes
    r.push(f);
  }
  t.equal(got.length, 3000);
  t.ok(got.every((m, i) => m === `message ${i} ${'x'.repeat(i % 70)}`), 'every payload decoded');
  t.ok(keys.size > 2900, `keys differ from frame to frame (${keys.size} distinct of 3000)`);

  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 13) & 0xff;
  let back;
  const r2 = new Receiver({ onMessage: (type, d) => (back = d), onError: (e) => t.fail(e.message) }, { role: 'server' });
  r2.push(Buffer.concat(frame(Opcode.Binary, big, { mask: true })));
  t.ok(back.equals(big), '1 MiB masked round trip');
  t.throws(() => frame(Opcode.Text, 'x', { mask: hex('0102') }), TypeError, 'a key must be 4 bytes');
});

t.test('maskInPlace: every alignment, length and key offset agrees with the definition', async (t) => {
  const key = hex('a1b2c3d4');
  let bad = 0;
  for (let offset = 0; offset < 8; offset++) {
    // Lengths on both sides of the word loop (32) and of the native loop (512).
    for (const len of [0, 1, 3, 4, 5, 31, 32, 33, 63, 64, 65, 100, 257, 511, 512, 513, 1025, 4099, 65539]) {
      for (let k = 0; k < 4; k++) {
        const base = Buffer.alloc(offset + len + 8);
        for (let i = 0; i < base.length; i++) base[i] = (i * 37 + 11) & 0xff;
        const expected = Buffer.from(base);
        for (let i = 0; i < len; i++) expected[offset + i] ^= key[(k + i) & 3];
        const next = maskInPlace(base, offset, offset + len, key, k);
        if (!base.equals(expected) || next !== ((k + len) & 3)) bad++;
      }
    }
  }
  t.equal(bad, 0, 'no mismatches, bytes outside the range untouched, key index returned');
});

t.test('copyMasked: every alignment of both sides, length and key offset agrees with the definition', async (t) => {
  const key = hex('a1b2c3d4');
  let bad = 0;
  for (let srcOff = 0; srcOff < 5; srcOff++) {
    for (let dstOff = 0; dstOff < 5; dstOff++) {
      // Every tail of the JavaScript loop's four-byte steps, both sides of its
      // switch to native (128), of the 16-byte vector and of the 64-byte block, and long runs.
      for (const len of [0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 63, 64, 65, 127, 128, 129, 512, 1027, 65539]) {
        for (let k = 0; k < 4; k++) {
          const src = Buffer.alloc(srcOff + len + 3);
          for (let i = 0; i < src.length; i++) src[i] = (i * 37 + 11) & 0xff;
          const before = Buffer.from(src);
          const dst = Buffer.alloc(dstOff + len + 9, 0x5a);
          const expected = Buffer.from(dst);
          for (let i = 0; i < len; i++) expected[dstOff + i] = src[srcOff + i] ^ key[(k + i) & 3];
          const next = copyMasked(src, srcOff, dst, dstOff, len, key, k);
          if (!dst.equals(expected) || !src.equals(before) || next !== ((k + len) & 3)) bad++;
        }
      }
    }
  }
  t.equal(bad, 0, 'no mismatches, source untouched, bytes outside the range untouched, key index returned');
});

t.test('the native masked copy refuses out-of-bounds and overlapping ranges', async (t) => {
  const { binding } = await import('../dist/native.js');
  const key = hex('a1b2c3d4');
  const src = Buffer.alloc(16, 1);
  const dst = Buffer.alloc(16);
  t.throws(() => binding.maskCopy(src, 8, dst, 0, 9, key, 0), TypeError, 'past the end of src');
  t.throws(() => binding.maskCopy(src, 0, dst, 8, 9, key, 0), TypeError, 'past the end of dst');
  t.throws(() => binding.maskCopy(src, -1, dst, 0, 4, key, 0), TypeError, 'negative start');
  t.throws(() => binding.maskCopy(src, 0, dst, 0, -1, key, 0), TypeError, 'negative length');
  t.throws(() => binding.maskCopy(src, 0, dst, 0, 4, hex('a1b2'), 0), TypeError, 'a key shorter than 4 bytes');
  t.throws(() => binding.maskCopy(src, 0, [0, 0], 0, 1, key, 0), TypeError, 'not a Uint8Array');
  t.throws(() => binding.maskCopy(src, 0, src.subarray(4), 0, 8, key, 0), TypeError, 'overlapping ranges of one buffer');
  t.equal(binding.maskCopy(src, 0, src, 8, 8, key, 1), 1, 'adjacent ranges of one buffer do not overlap');
  t.equal(src[8], 1 ^ key[1], 'and are copied');
  t.equal(binding.maskCopy(src, 3, dst, 3, 0, key, 2), 2, 'an empty range changes nothing');
  t.ok(dst.equals(Buffer.alloc(16)), 'untouched');
});

t.test('the native mask refuses what would go out of bounds', async (t) => {
  const { binding } = await import('../dist/native.js');
  const key = hex('a1b2c3d4');
  const buf = Buffer.alloc(16);
  t.throws(() => binding.mask(buf, 0, 17, key, 0), TypeError, 'end past the buffer');
  t.throws(() => binding.mask(buf, 5, 4, key, 0), TypeError, 'start after end');
  t.throws(() => binding.mask(buf, -1, 4, key, 0), TypeError, 'negative start');
  t.throws(() => binding.mask(buf, 0, 4, hex('a1b2'), 0), TypeError, 'a key shorter than 4 bytes');
  t.throws(() => binding.mask([1, 2], 0, 1, key, 0), TypeError, 'not a Uint8Array');
  t.equal(binding.mask(buf, 3, 3, key, 2), 2, 'an empty range changes nothing');
  t.ok(buf.equals(Buffer.alloc(16)), 'untouched');
});

t.test('control frames: at most 125 bytes, never fragmented, no RSV1', async (t) => {
  t.equal(pingFrame(Buffer.alloc(125))[0].toString('hex'), '897d');
  t.throws(() => pingFrame(Buffer.alloc(126)), RangeError);
  t.throws(() => pongFrame('x'.repeat(126)), RangeError);
  t.throws(() => frame(Opcode.Close, Buffer.alloc(126)), RangeError);
  t.throws(() => frame(Opcode.Ping, '', { fin: false }), RangeError);
  t.throws(() => frame(Opcode.Pong, '', { rsv1: true }), RangeError);
  for (const op of [3, 7, 11, 15, 16, -1, 1.5]) t.throws(() => frame(op, ''), RangeError, `opcode ${op}`);
  t.throws(() => frame(Opcode.Text, 42), TypeError);
});

t.test('close payloads', async (t) => {
  t.equal(closePayload().length, 0, 'no code: empty payload');
  t.equal(closePayload(1000).toString('hex'), '03e8');
  t.equal(closePayload(1001, 'bye').toString('hex'), '03e9627965');
  t.equal(closePayload(4999, 'é').toString('hex'), '1387c3a9');
  t.equal(join(closeFrame(1000)), '880203e8');
  t.equal(join(closeFrame()), '8800');
  t.equal(join(closeFrame(1000, '', { mask: KEY })), '888237fa213d3412');
  t.equal(closePayload(1000, 'r'.repeat(123)).length, 125, '123-byte reason fits');
  t.throws(() => closePayload(1000, 'r'.repeat(124)), RangeError, '124 bytes do not');
  t.equal(closePayload(1000, 'é'.repeat(61) + 'a').length, 125, '123 bytes of UTF-8');
  t.throws(() => closePayload(1000, 'é'.repeat(62)), RangeError, '124 bytes of UTF-8');
  t.equal(MAX_CLOSE_REASON_BYTES, 123);
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 1000.5, NaN]) t.throws(() => closePayload(code), RangeError, `code ${code}`);
  t.throws(() => closePayload(undefined, 'why'), TypeError, 'a reason needs a code');
  t.throws(() => closePayload(1000, 5), TypeError);
});

t.test('close codes (RFC 6455 §7.4)', async (t) => {
  const valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3500, 3999, 4000, 4999];
  const invalid = [-1, 0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1999, 2000, 2999, 5000, 65535, 1000.5, NaN, Infinity];
  for (const c of valid) t.equal(isValidCloseCode(c), true, `${c} valid`);
  for (const c of invalid) t.equal(isValidCloseCode(c), false, `${c} invalid`);
  t.equal(CloseCode.Normal, 1000);
  t.equal(CloseCode.ProtocolError, 1002);
  t.equal(CloseCode.NoStatus, 1005);
  t.equal(CloseCode.InvalidPayload, 1007);
  t.equal(CloseCode.MessageTooBig, 1009);
});
