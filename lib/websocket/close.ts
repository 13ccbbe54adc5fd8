// Close status codes (RFC 6455 §7.4 and the IANA "WebSocket Close Code Number
// Registry") and the rules for what a close frame may carry. The receiver
// applies them to what the peer sends and the sender to what we send: the
// rules are the same both ways.
import { Buffer } from 'node:buffer';
import { ProtocolError } from '../errors.js';
import { isValidUtf8 } from './utf8.js';

export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  /** Never on the wire: reported when a close frame had no payload. */
  NoStatus: 1005,
  /** Never on the wire: reported when the connection dropped without a close frame. */
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  BadGateway: 1014,
  /** Never on the wire: TLS handshake failure. */
  TlsHandshake: 1015,
} as const;

/** A close payload is a control payload (125 bytes at most) minus the 2-byte code. */
export const MAX_CLOSE_REASON_BYTES = 123;

/**
 * Whether `code` may appear in a close frame. 1000-1003 and 1007-1014 are
 * the registered codes that can be sent; 1004 is reserved, and 1005, 1006
 * and 1015 exist only to be reported locally (§7.4.1). 3000-3999 are
 * registered by libraries and frameworks, 4000-4999 are for private use.
 * Everything else (below 1000, 1016-2999, from 5000) is invalid.
 */
export function isValidCloseCode(code: number): boolean {
  if (!Number.isInteger(code)) return false;
  if (code >= 3000 && code <= 4999) return true;
  return code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006;
}

export interface CloseFrameInfo {
  code: number;
  reason: string;
}

/**
 * Reads a received close payload (already unmasked). An empty payload means
 * "no status" and is reported as 1005 with an empty reason. Returns the
 * ProtocolError to fail the connection with when the payload is 1 byte long
 * or has an invalid code (1002), or a reason that is not UTF-8 (1007).
 */
export function parseClosePayload(payload: Uint8Array): CloseFrameInfo | ProtocolError {
  const n = payload.length;
  if (n === 0) return { code: CloseCode.NoStatus, reason: '' };
  if (n === 1) {
    return new ProtocolError('WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', CloseCode.ProtocolError, 'invalid close payload: 1 byte (a close code takes 2)');
  }
  const code = (payload[0]! << 8) | payload[1]!;
  if (!isValidCloseCode(code)) {
    return new ProtocolError('WS_ERR_INVALID_CLOSE_CODE', CloseCode.ProtocolError, `invalid close code ${code}`);
  }
  if (!isValidUtf8(payload, 2, n)) {
    return new ProtocolError('WS_ERR_INVALID_UTF8', CloseCode.InvalidPayload, 'invalid UTF-8 in the close reason');
  }
  const reason = n === 2 ? '' : Buffer.from(payload.buffer, payload.byteOffset + 2, n - 2).toString('utf8');
  return { code, reason };
}
