// Fuzz target: the close-frame payload parser (parseClosePayload,
// lib/websocket/close.ts) against RFC 6455 §5.5.1 and §7.4 written out
// independently here: empty is 1005 with no reason, one byte is 1002, the
// code must be 1000-1003, 1007-1014 or 3000-4999, the reason must be UTF-8
// (TextDecoder's fatal mode as the oracle, a BOM kept) and is returned decoded.
// Nothing is thrown; errors are ProtocolError with the documented codes.
import { parseClosePayload, isValidCloseCode } from '../../dist/websocket/close.js';
import { ProtocolError } from '../../dist/errors.js';
import { check, checkEqual } from './common.js';

export const maxLen = 160;
export const dictionary = ['\x03\xe8', '\x03\xe9', '\x03\xeb', '\x03\xec', '\x03\xed', '\x03\xee', '\x03\xef', '\x03\xf6', '\x03\xf7', '\x0b\xb8', '\x13\x87', '\x13\x88', '\xed\xa0\x80', '\xf0\x9f\x98\x80'];

function expectedCodeValid(code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

export function fuzz(data) {
  const r = parseClosePayload(data);
  if (data.length === 0) {
    checkEqual(r, { code: 1005, reason: '' }, 'empty payload: 1005');
    return 'empty';
  }
  if (data.length === 1) {
    check(r instanceof ProtocolError && r.code === 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH' && r.closeCode === 1002, 'one byte: 1002', r);
    return 'one';
  }
  const code = data.readUInt16BE(0);
  check(isValidCloseCode(code) === expectedCodeValid(code), 'isValidCloseCode follows §7.4', code);
  if (!expectedCodeValid(code)) {
    check(r instanceof ProtocolError && r.code === 'WS_ERR_INVALID_CLOSE_CODE' && r.closeCode === 1002, 'invalid code: 1002', r);
    return 'bad-code';
  }
  let reason;
  try {
    reason = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(data.subarray(2));
  } catch {
    check(r instanceof ProtocolError && r.code === 'WS_ERR_INVALID_UTF8' && r.closeCode === 1007, 'invalid reason: 1007', r);
    return 'bad-utf8';
  }
  checkEqual(r, { code, reason }, 'code and decoded reason');
  return `ok:${code < 3000 ? code : 'app'}`;
}
