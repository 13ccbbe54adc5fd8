// Fuzz target: the WebSocket frame receiver (lib/websocket/receiver.ts), as
// a server (masked frames expected) and as a client, in message and frame
// mode, with and without permessage-deflate, under a small and the default
// message limit, fed whole, in random chunks and byte by byte.
//
// Input: byte 0: bit 0 role (1 = server), bit 1 frame mode, bit 2
// permessage-deflate, bit 3 a 100-byte message limit; byte 1 the chunk
// split; the rest is the bytes from the peer.
//
// Invariants: the same events (messages, frames, pings, pongs, close, error)
// whatever the split, from a receive buffer overwritten after each push;
// push() never throws; errors are ProtocolError with a WS_ERR_ code and
// close code 1002, 1007 or 1009, and nothing is reported after an error or
// a close; messages respect the limit; text is valid UTF-8 (TextDecoder
// with fatal as the oracle); control payloads are at most 125 bytes; a close
// code is one the wire may carry (or 1005 for none) and its reason is at
// most 123 bytes of UTF-8.
import { Receiver } from '../../dist/websocket/receiver.js';
import { PerMessageDeflate } from '../../dist/websocket/deflate.js';
import { isValidCloseCode } from '../../dist/websocket/close.js';
import { ProtocolError } from '../../dist/errors.js';
import { check, checkEqual, split, feedReused } from './common.js';

export const maxLen = 4096;
export const dictionary = ['\x81\x05', '\x01\x03', '\x80\x00', '\x88\x82', '\x89\x80', '\x8a\x00', '\x7e\x00\x80', '\x7f\x00\x00\x00\x00\x00\x01\x00\x00', '\x37\xfa\x21\x3d', '\xc1', '\x03\xe8', '\xf2\x48\xcd\xc9\xc9\x07\x00', '\x00\x00\xff\xff'];

const CLOSE_CODES = new Set([1002, 1007, 1009]);
const strict = new TextDecoder('utf-8', { fatal: true });
const PARAMS = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 15, clientMaxWindowBits: 15 };

function run(flags, chunks) {
  const role = flags & 1 ? 'server' : 'client';
  const limit = flags & 8 ? 100 : 16 << 20;
  const events = [];
  let ended = false;
  const note = (e) => {
    check(!ended, 'nothing is reported after a close or an error', e);
    events.push(e);
  };
  const handlers = {
    onPing: (d) => note(['ping', d.toString('hex')]),
    onPong: (d) => note(['pong', d.toString('hex')]),
    onClose: (code, reason) => {
      note(['close', code, reason]);
      ended = true;
    },
    onError: (err) => {
      check(err instanceof ProtocolError && err.code.startsWith('WS_ERR_') && CLOSE_CODES.has(err.closeCode), 'documented ProtocolError', err);
      note(['error', err.code, err.closeCode]);
      ended = true;
    },
  };
  if (flags & 2) handlers.onDataFrame = (type, fin, d) => note(['frame', type, fin, d.toString('hex')]);
  else handlers.onMessage = (type, d) => note(['message', type, d.toString('hex')]);
  const pmd = flags & 4 ? new PerMessageDeflate(PARAMS, role, { maxMessageLength: limit }) : null;
  // Only the synchronous decompress(): the receiver then inflates in place,
  // so every event is in by the time push() returns. With decompressLater()
  // a message may finish in a later loop turn (the per-turn budget is shared
  // by everything on the thread, and this loop runs thousands of inputs in
  // one turn), which a synchronous comparison cannot wait for; the ordering
  // of deferred inflation has its own tests (websocket-deflate-async).
  const decompressor = pmd === null ? null : { decompress: (d, max) => pmd.decompress(d, max) };
  const r = new Receiver(handlers, { role, maxMessageLength: limit, decompressor });
  try {
    for (const chunk of chunks) feedReused(chunk, (c) => r.push(c));
  } finally {
    pmd?.close();
  }
  return events;
}

export function fuzz(data) {
  if (data.length < 2) return 'short';
  const flags = data[0];
  const bytes = data.subarray(2);
  const events = run(flags, [bytes]);
  checkEqual(run(flags, split(bytes, data[1])), events, 'split events equal whole events');
  if (bytes.length <= 512) checkEqual(run(flags, split(bytes, 7)), events, 'byte-by-byte events equal whole events');
  const limit = flags & 8 ? 100 : 16 << 20;
  let messageBytes = 0;
  let text = null;
  for (const e of events) {
    if (e[0] === 'message') {
      const d = Buffer.from(e[2], 'hex');
      check(d.length <= limit, 'message within the limit', d.length);
      if (e[1] === 'text') strict.decode(d); // throws on invalid UTF-8: a finding
    } else if (e[0] === 'frame') {
      const d = Buffer.from(e[3], 'hex');
      messageBytes += d.length;
      check(messageBytes <= limit, 'message within the limit across frames', messageBytes);
      if (e[1] === 'text') text = Buffer.concat([text ?? Buffer.alloc(0), d]);
      if (e[2]) {
        if (text !== null) strict.decode(text);
        text = null;
        messageBytes = 0;
      }
    } else if (e[0] === 'ping' || e[0] === 'pong') {
      check(e[1].length <= 250, 'control payload at most 125 bytes');
    } else if (e[0] === 'close') {
      check(e[1] === 1005 ? e[2] === '' : isValidCloseCode(e[1]), 'close code the wire may carry', e);
      check(Buffer.byteLength(e[2]) <= 123, 'close reason at most 123 bytes');
    }
  }
  const last = events.at(-1);
  // The kinds of events seen and how it ended: coarse enough that the kept inputs stay few and varied.
  const kinds = [...new Set(events.map((e) => (e[0] === 'message' || e[0] === 'frame' ? `${e[0]}-${e[1]}` : e[0])))].sort().join(',');
  return `${flags & 15}:${kinds}:${last?.[0] === 'error' ? last[1] : ''}`;
}
