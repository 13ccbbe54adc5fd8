// The seam between the Engine and its process supervisor (workers.ts), so
// that the supervisor sits above the engine and neither imports the other
// in a circle: the engine sees the supervisor as an EngineCluster made by a
// registered factory, the supervisor sees the engine as a ClusterHost.
// index.ts registers workers.ts's factory; an Engine imported from
// engine.js alone, without the supervisor registered, refuses `workers`.
//
import type { PubSubAdapter } from './pubsub/adapter.js';
import type { TlsServerOptions } from './tls.js';

// The public types both sides speak (EngineStats, SupervisorOptions and the
// worker reports) live here for the same reason.

/** Engine.stats(): the connection counters. */
export interface EngineStats {
  /** Connections open now. */
  online: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Connections dialed (and connected) since start. */
  dialed: number;
  /** Connections closed since start. */
  closed: number;
  /** Connections closed at accept (over maxLoad, or out of descriptors). */
  rejected: number;
  /** Bytes read since start. */
  bytesIn: number;
  /** Bytes written (taken by the kernel) since start. */
  bytesOut: number;
  /** Bytes in all connections' write queues. */
  queuedBytes: number;
  /** Connections served by a reader thread now (blocking and mixed modes): the threads alive. */
  blockingOnline: number;
  /** Reader threads started since the engine started. */
  readerThreadsStarted: number;
  /** Memory the reader threads reserve now: blockingOnline x (stack + read buffer), bytes. */
  readerThreadBytes: number;
  /** Connections not read now because their write queue is above writeHighWaterMark. */
  readPaused: number;
  /** Published messages not queued for a subscriber that was too far behind (topics.slowSubscriber 'skip'). */
  writesSkipped: number;
  /** Bytes held for unfinished WebSocket messages (counted against memoryBudget with queuedBytes). */
  heldBytes: number;
  /** TLS handshakes completed since start. */
  tlsHandshakes: number;
  /** TLS connections dropped before their handshake completed (bad clients, timeouts, refused certificates). */
  tlsFailed: number;
}

/** The `supervisor` option of an Engine with `workers`. */
export interface SupervisorOptions {
  /** The script the workers run. Default: process.argv[1] (the script that is running). */
  script?: string;
  /** Its arguments. Default: process.argv.slice(2). */
  args?: string[];
  /** Node options of the workers. Default: process.execArgv. */
  execArgv?: string[];
  /** Their environment. Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** A worker must be listening this many ms after it was forked, or it is killed. Default 30000. */
  startTimeout?: number;
  /**
   * stop(): how long a worker has to stop its engine (closing handshakes
   * included) and exit before it is killed with SIGKILL. Default 15000.
   */
  stopTimeout?: number;
  /** The first restart of a worker that died waits this many ms; each quick death (< 10 s of life) doubles it. Default 100. */
  restartDelay?: number;
  /** The longest restart delay. Default 10000. */
  maxRestartDelay?: number;
  /** Workers send their stats() to the primary every this many ms (0: only when asked). Default 1000. */
  statsInterval?: number;
  /** A worker is listening (at start, and after every restart). */
  onWorkerListening?: (info: WorkerListening) => void;
  /** A worker process exited: why, and whether (and when) it is restarted. */
  onWorkerExit?: (info: WorkerExit) => void;
}

/** onWorkerListening's report. */
export interface WorkerListening {
  /** 1..N; a restarted worker keeps its id. */
  id: number;
  /** The worker's process id. */
  pid: number;
  /** How many times this worker was restarted. */
  restarts: number;
  /** The addresses it listens on. */
  addrs: string[];
}

/** Why a worker process exited. */
export type WorkerExitReason =
  /** The process exited (or was killed) without being asked to: restarted while the engine runs. */
  | 'crashed'
  /** Its engine could not start (`error`). */
  | 'start-failed'
  /** It did not listen within startTimeout and was killed. */
  | 'start-timeout'
  /** It stopped as asked by stop(), or its engine was stopped by its own script: not restarted. */
  | 'stopped';

/** onWorkerExit's report. */
export interface WorkerExit {
  /** 1..N; a restarted worker keeps its id. */
  id: number;
  /** The worker's process id (undefined if it never started). */
  pid: number | undefined;
  /** Its exit code, or null when a signal ended it. */
  code: number | null;
  /** The signal that ended it, or null. */
  signal: NodeJS.Signals | null;
  /** Why it exited. */
  reason: WorkerExitReason;
  /** Set with reason 'start-failed' (the worker's error, e.g. a SysError EADDRINUSE). */
  error?: Error;
  /** ms until the restart, or null when the worker is not restarted. */
  restartIn: number | null;
}

/** One worker's stats(), as Engine.workerStats() reports them. */
export interface WorkerStats extends EngineStats {
  /** The worker's id, 1..N (0 for an engine without workers). */
  id: number;
  /** Its process id. */
  pid: number;
  /** How many times it was restarted. */
  restarts: number;
}

/** @internal What the Engine delegates to when it has `workers`: the supervisor (in the primary) or a worker's link to it. */
export interface EngineCluster {
  readonly role: 'primary' | 'worker';
  readonly workerId: number | undefined;
  /** The primary's own running state (undefined in a worker: the engine's own). */
  readonly running: boolean | undefined;
  start(local: () => Promise<void>): Promise<void>;
  stop(local: () => Promise<void>): Promise<void>;
  /** The primary's addresses (undefined in a worker: the engine's own). */
  addresses(): string[] | undefined;
  /** The primary's aggregate (undefined in a worker: the engine's own). */
  stats(): EngineStats | undefined;
  workerStats(): Promise<WorkerStats[]>;
  /** In a worker: the relay of topics of `channel` through the primary to the other workers. */
  pubsub?(channel: string): PubSubAdapter | undefined;
  /**
   * In the primary: Engine.setSecureContext's settings (already checked) for
   * every worker, engine-wide or for `addrs` entry `entry`; also given to
   * each worker that (re)starts later.
   */
  setSecureContext?(tls: TlsServerOptions, entry: number | undefined): void;
}

/** @internal What a supervisor needs of the engine it runs for. */
export interface ClusterHost {
  stop(): Promise<void>;
  stats(): EngineStats;
  addresses(): string[];
  setSecureContext(tls: TlsServerOptions, addr?: string): void;
}

/** @internal The options of an engine that concern its supervision (a subset of EngineOptions). */
export interface ClusterRequest {
  /** Address strings, or entries with settings of their own ({ addr, tls }: engine.ts ListenAddress). */
  addrs?: (string | { addr: string })[];
  ref?: boolean;
  reusePort?: boolean;
  workers?: number;
  supervisor?: SupervisorOptions;
}

/** @internal How the engine obtains its supervisor (workers.ts implements it). */
export interface ClusterFactory {
  /** The options a supervised engine really runs with (in a worker: the primary's addresses, reusePort on). */
  options<T extends ClusterRequest>(options: T): T;
  /** Validates `workers` and `supervisor`; the engine's side, or undefined for a plain engine. */
  create(host: ClusterHost, options: ClusterRequest): EngineCluster | undefined;
}

let factory: ClusterFactory | undefined;

/** @internal Called once by index.ts with the supervisor of workers.ts. */
export function registerCluster(f: ClusterFactory): void {
  factory = f;
}

/** @internal clusterOptions of the registered supervisor; unchanged without one. */
export function clusterOptions<T extends ClusterRequest>(options: T): T {
  return factory === undefined ? options : factory.options(options);
}

/** @internal The engine's cluster side; without a registered supervisor, `workers` is refused. */
export function createCluster(host: ClusterHost, options: ClusterRequest): EngineCluster | undefined {
  if (factory !== undefined) return factory.create(host, options);
  if ((options.workers !== undefined && options.workers !== 0) || options.supervisor !== undefined) {
    throw new TypeError("workers: the supervisor is not loaded; import Engine from 'netloop' (its index registers it), not from its engine module");
  }
  return undefined;
}
