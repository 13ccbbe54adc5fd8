// What a close looked like, as plain data and as one line of text: the error
// onClose received (class, code, message), the close handler's call, and
// closeInfo. Used by `netloop echo --log-close` and `netloop compare`.
import { CloseError, NetloopError, ProtocolError, SysError, TLSError } from '../errors.js';
import type { CloseInfo, WebSocketConn } from '../websocket/conn.js';

export interface ErrorReport {
  /** The error's class name: EOFError, NetClosedError, CloseError, ... */
  class: string;
  /** The stable code (NETLOOP_EOF, ECONNRESET, WS_ERR_INVALID_UTF8, ...). */
  code?: string;
  message: string;
  /** CloseError and ProtocolError: the WebSocket close code. */
  closeCode?: number;
}

export interface CloseReport {
  /** How the connection was read: 'blocking' or 'nonblocking'. */
  mode: 'blocking' | 'nonblocking';
  remote: string;
  /** What onClose received; null for null. */
  onClose: ErrorReport | null;
  /** The close handler's call (the peer's close frame), or null if it was not called. */
  closeHandler: { code: number; reason: string } | null;
  /** conn.closeInfo without its error (that is onClose above); absent for raw TCP. */
  closeInfo?: Omit<CloseInfo, 'error'> | null;
}

export function describeError(err: Error | null): ErrorReport | null {
  if (err === null) return null;
  const r: ErrorReport = { class: err.constructor.name, message: err.message };
  if (err instanceof NetloopError) r.code = err.code;
  if (err instanceof CloseError || err instanceof ProtocolError) r.closeCode = err.closeCode;
  return r;
}

/**
 * One short cell of text: `null`, `NetClosedError "use of closed network
 * connection"`, `CloseError 4000`, `ProtocolError 1007`, `SysError ECONNRESET`,
 * `TLSError ERR_TLS_PROTOCOL`.
 */
export function formatError(err: Error | null): string {
  if (err === null) return 'null';
  if (err instanceof CloseError || err instanceof ProtocolError) return `${err.constructor.name} ${err.closeCode}`;
  if (err instanceof SysError) return `SysError ${err.code}`;
  // OpenSSL's reason text differs between versions: the stable code says which.
  if (err instanceof TLSError) return `${err.constructor.name} ${err.code}`;
  return `${err.constructor.name} "${err.message}"`;
}

export function reportClose(
  conn: { ioMode: 'blocking' | 'nonblocking'; remoteAddr: string },
  err: Error | null,
  closeHandler: { code: number; reason: string } | null,
  ws?: WebSocketConn,
): CloseReport {
  const r: CloseReport = { mode: conn.ioMode, remote: conn.remoteAddr, onClose: describeError(err), closeHandler };
  if (ws !== undefined) {
    const info = ws.closeInfo;
    r.closeInfo = info === null ? null : { code: info.code, reason: info.reason, wasClean: info.wasClean, initiator: info.initiator };
  }
  return r;
}
