// Public exports only, and the one piece of wiring: the process supervisor
// (workers.ts) sits above the engine, which obtains it through cluster.ts.
// The tools (the command line, `compare`) are in cli/; their public part is the
// `netloop/compare` subpath (cli/index.ts), and nothing here imports them.
import { registerCluster } from './cluster.js';
import { supervisor } from './workers.js';

registerCluster(supervisor);

export { Engine } from './engine.js';
export type { EngineDialOptions, EngineOptions, EngineUpgrader, IoMode, ListenAddress } from './engine.js';
export type { EngineStats, SupervisorOptions, WorkerExit, WorkerExitReason, WorkerListening, WorkerStats } from './cluster.js';
export { Conn } from './conn.js';
export type { ConnEngine, Deadline } from './conn.js';
export { Upgrader } from './websocket/upgrader.js';
export type { UpgradeRequest, UpgradeAnswer, UpgradeHook } from './websocket/upgrade-hook.js';
export type { UpgraderOptions, HttpAnswer, OpenHandler, MessageHandler, DataFrameHandler, CloseHandler, CloseFrameHandler, PingHandler } from './websocket/upgrader.js';
export { WebSocketConn } from './websocket/conn.js';
export { dial, HandshakeError } from './websocket/client.js';
export type { DialOptions } from './websocket/client.js';
export type { CloseInfo, CloseInitiator, ClosedWebSocketConn } from './websocket/conn.js';
export type { MessageType } from './websocket/opcodes.js';
export type { RequestHead } from './http/request-parser.js';
export type { HeaderList } from './http/response.js';
export type { ResponseHead } from './http/response-parser.js';
export type { StreamOwner } from './stream-transport.js';
export type { DeflateOptions } from './websocket/deflate.js';
export type { PubSubAdapter, PubSubDeliver } from './pubsub/adapter.js';
export type { TopicsOptions, SlowSubscriberPolicy } from './topics/hub.js';
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
  TLSError,
  TLSHandshakeError,
  TLSTruncationError,
  describeErrno,
} from './errors.js';
export type { TlsServerOptions, TlsClientOptions, TlsCertificate, TlsInfo, TlsVersion, Pem } from './tls.js';
export type { TimeoutKind } from './errors.js';
export { releaseMemory } from './memory.js';
