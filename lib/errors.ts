// The error classes of the close-reporting contract (DESIGN.md). Each has a
// stable `code`; messages follow Go's net package, which nbio users know.
import { getSystemErrorMap } from 'node:util';

/** Base class of every error netloop reports. */
export class NetloopError extends Error {
  /** A stable code for programs: 'NETLOOP_EOF', 'ECONNRESET', 'WS_ERR_INVALID_UTF8', ... */
  readonly code: string;
  /** @param code the stable `code`; @param message the human-readable message. */
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The peer closed the TCP connection (FIN) without anything else to say. */
export class EOFError extends NetloopError {
  /** An EOF error ("EOF"). */
  constructor() {
    super('NETLOOP_EOF', 'EOF');
  }
}

// One table, libuv's: errno -> [name, message] (for example
// ECONNRESET -> "connection reset by peer"). Keyed by the negative errno.
let systemErrors: Map<number, [string, string]> | undefined;

/** Name and message of a positive errno value, e.g. [ 'ECONNRESET', 'connection reset by peer' ]. */
export function describeErrno(errno: number): [string, string] {
  systemErrors ??= getSystemErrorMap();
  return systemErrors.get(-Math.abs(errno)) ?? [`E${Math.abs(errno)}`, `system error ${Math.abs(errno)}`];
}

/** A socket error reported by the operating system. `code` is the errno name. */
export class SysError extends NetloopError {
  /** The positive errno value. */
  readonly errno: number;
  /** The call that failed ('listen', 'dial', ...), when known. */
  readonly syscall: string | undefined;
  /** @param errno a positive errno; @param syscall the call that failed; @param detail what it was called on (an address). */
  constructor(errno: number, syscall?: string, detail?: string) {
    const [name, message] = describeErrno(errno);
    const prefix = syscall !== undefined ? `${syscall}${detail !== undefined ? ' ' + detail : ''}: ` : '';
    super(name, prefix + message);
    this.errno = Math.abs(errno);
    this.syscall = syscall;
  }
}

/**
 * Which deadline passed; 'io' is a blocking reader's own account of any of
 * them (Go's "i/o timeout"); 'message' is the Upgrader's messageTimeout.
 */
export type TimeoutKind = 'read' | 'write' | 'dial' | 'io' | 'message';

/**
 * A deadline passed: "read timeout", "write timeout", "dial timeout", "i/o
 * timeout", or "message timeout" (a WebSocket message that started arriving
 * did not finish within the Upgrader's messageTimeout).
 */
export class TimeoutError extends NetloopError {
  /** Which deadline passed. */
  readonly kind: TimeoutKind;
  /** @param kind which deadline passed. */
  constructor(kind: TimeoutKind) {
    super('NETLOOP_TIMEOUT', `${kind === 'io' ? 'i/o' : kind} timeout`);
    this.kind = kind;
  }
}

/** The connection (or the engine) is closed; Go's "use of closed network connection". */
export class NetClosedError extends NetloopError {
  /** A NetClosedError ("use of closed network connection"). */
  constructor() {
    super('NETLOOP_CLOSED', 'use of closed network connection');
  }
}

/**
 * The write queue went past `maxWriteBufferSize`. Given to onClose: the
 * connection was closed and its queue dropped. Thrown by a write (with its
 * own message): that write could not be queued, nothing of it was, and the
 * connection stays open.
 */
export class OverflowError extends NetloopError {
  /** The connection's maxWriteBufferSize, bytes. */
  readonly limit: number;
  /** @param limit the maxWriteBufferSize; @param message why, when a write is refused rather than a connection closed. */
  constructor(limit: number, message = `write buffer overflow: more than ${limit} bytes queued`) {
    super('NETLOOP_OVERFLOW', message);
    this.limit = limit;
  }
}

/**
 * The server's memory budget (EngineOptions.memoryBudget: bytes in write
 * queues plus unfinished messages, over every connection) would be exceeded
 * by this connection: it was failed so that the others keep working. A
 * WebSocket is closed with 1013 (try again later) when the budget runs out
 * while receiving; a write that does not fit drops the queue (no frame).
 */
export class BudgetError extends NetloopError {
  readonly budget: number;
  /** The WebSocket close code sent: 1013. */
  readonly closeCode = 1013;
  constructor(budget: number) {
    super('NETLOOP_BUDGET', `server memory budget exceeded: more than ${budget} bytes held in write queues and unfinished messages`);
    this.budget = budget;
  }
}

/**
 * A handler of the application (onMessage, onOpen, onData, a ping, pong or
 * close handler) threw: the connection was failed (WebSocket close 1011,
 * internal error) and onClose receives the thrown value wrapped here when it
 * is not an Error itself; an Error is passed as it is.
 */
export class HandlerError extends NetloopError {
  readonly thrown: unknown;
  constructor(thrown: unknown) {
    super('NETLOOP_HANDLER', `handler threw: ${String(thrown)}`);
    this.thrown = thrown;
  }
}

/**
 * The WebSocket peer broke the protocol. `closeCode` is the status the
 * connection is closed with: 1002 (protocol error), 1007 (invalid payload
 * data, e.g. bad UTF-8) or 1009 (message too big). `code` names the exact
 * violation (for example 'WS_ERR_EXPECTED_MASK').
 */
export class ProtocolError extends NetloopError {
  /** The close code sent to the peer (1002, 1007 or 1009). */
  readonly closeCode: number;
  /** @param code the stable `code`; @param closeCode the close code sent; @param message what was wrong. */
  constructor(code: string, closeCode: number, message: string) {
    super(code, message);
    this.closeCode = closeCode;
  }
}

/**
 * A request head netloop will not accept. `status` is the HTTP status to
 * answer with before closing: 400 (malformed), 431 (head too large or too
 * many header lines) or 505 (HTTP version). `code` names the exact problem
 * (for example 'HTTP_ERR_OBS_FOLD').
 */
export class HttpError extends NetloopError {
  /** The HTTP status answered (400, 404, 431, ...). */
  readonly status: number;
  /** @param code the stable `code`; @param status the HTTP status; @param message what was wrong. */
  constructor(code: string, status: number, message: string) {
    super(code, message);
    this.status = status;
  }
}

/**
 * The peer closed the WebSocket with a close frame whose code is not 1000:
 * 1001, 3000-4999, another valid code, or 1005 (an empty close frame).
 */
export class CloseError extends NetloopError {
  /** The close code the peer sent (1001, 1005 for an empty close frame, 3000-4999, ...). */
  readonly closeCode: number;
  /** The reason in the peer's close frame ('' when none). */
  readonly reason: string;
  /** @param closeCode the peer's close code; @param reason its reason. */
  constructor(closeCode: number, reason: string) {
    super('NETLOOP_WS_CLOSE', `websocket: close ${closeCode}${reason !== '' ? ' ' + reason : ''}`);
    this.closeCode = closeCode;
    this.reason = reason;
  }
}

/**
 * TLS failed on a connection. `code` is stable: for a refused certificate
 * it is Node's name for the check that failed ('CERT_HAS_EXPIRED',
 * 'ERR_TLS_CERT_ALTNAME_INVALID', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
 * 'SELF_SIGNED_CERT_IN_CHAIN', ...); otherwise 'ERR_TLS_HANDSHAKE',
 * 'ERR_TLS_HANDSHAKE_TIMEOUT', 'ERR_TLS_HANDSHAKE_TOO_LARGE',
 * 'ERR_TLS_HANDSHAKE_EOF' or 'ERR_TLS_PROTOCOL' (after the handshake: a bad
 * record or a fatal alert). The message carries OpenSSL's reason.
 */
export class TLSError extends NetloopError {}

/**
 * The TLS handshake did not complete: the dial rejects with it (client),
 * EngineOptions.onTLSError receives it (server). See TLSError for `code`.
 */
export class TLSHandshakeError extends TLSError {
  /** OpenSSL's X509 verify result when the peer's certificate was refused (X509_V_ERR_*), else 0. */
  readonly verifyError: number;
  constructor(code: string, message: string, verifyError = 0) {
    super(code, message);
    this.verifyError = verifyError;
  }
}

/**
 * The peer closed the TCP connection (FIN) without TLS's close_notify: the
 * stream may have been cut short by someone in between (a truncation
 * attack), or the peer just did not say goodbye. A close_notify followed by
 * FIN is reported as EOFError, like FIN on a plain connection.
 */
export class TLSTruncationError extends TLSError {
  constructor() {
    super('ERR_TLS_TRUNCATED', 'TLS connection ended without close_notify (truncated)');
  }
}
