// Public exports only.
export { Engine } from './engine.js';
export type { EngineOptions, EngineStats, IoMode } from './engine.js';
export type { SupervisorOptions, WorkerExit, WorkerExitReason, WorkerListening, WorkerStats } from './workers.js';
export { Conn } from './conn.js';
export type { Deadline } from './conn.js';
export { Upgrader } from './websocket/upgrader.js';
export type { UpgraderOptions, HttpAnswer } from './websocket/upgrader.js';
export { WebSocketConn } from './websocket/conn.js';
export { dial, HandshakeError } from './websocket/client.js';
export type { DialOptions } from './websocket/client.js';
export type { CloseInfo, CloseInitiator } from './websocket/conn.js';
export type { MessageType } from './websocket/opcodes.js';
export type { RequestHead } from './http/request-parser.js';
export {
  NetloopError,
  CloseError,
  ProtocolError,
  HttpError,
  EOFError,
  SysError,
  TimeoutError,
  NetClosedError,
  OverflowError,
  BudgetError,
  HandlerError,
  describeErrno,
} from './errors.js';
export type { TimeoutKind } from './errors.js';
export { compareModes, formatComparison, MODE_COLUMNS } from './compare.js';
export type { ComparisonRow, Cell, ModeColumn } from './compare.js';
export { describeError, formatError, reportClose } from './close-report.js';
export type { CloseReport, ErrorReport } from './close-report.js';
export { releaseMemory } from './memory.js';
