// Public exports only.
export { Engine } from './engine.js';
export type { EngineOptions, EngineStats } from './engine.js';
export { Conn } from './conn.js';
export type { Deadline } from './conn.js';
export {
  NetloopError,
  EOFError,
  SysError,
  TimeoutError,
  NetClosedError,
  OverflowError,
  describeErrno,
} from './errors.js';
export type { TimeoutKind } from './errors.js';
