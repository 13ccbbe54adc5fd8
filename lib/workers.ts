// Supervised worker processes: `new Engine({ workers: N })` runs N processes
// that each run the same script and their own engine, listening with
// SO_REUSEPORT on the same addresses (the kernel spreads the connections; no
// handle passing, no proxying). The primary only supervises: it never
// listens, never accepts and never calls connection callbacks.
//
// Which side a process is on is decided once, at load: a worker is a process
// forked by a supervisor, with an IPC channel and the NETLOOP_WORKER
// environment variable (consumed, so that the worker's own children do not
// inherit it). In a worker, the first `new Engine({ workers })` becomes the
// supervised engine: same options, the primary's concrete addresses,
// reusePort forced on. Everywhere else, `new Engine({ workers })` is the
// primary: start() forks the workers and resolves when all listen.
//
// The IPC protocol (JSON messages with a `netloop` key; anything else on the
// channel is the user's):
//   worker -> primary  listening {addrs} | start-failed {error} | stats {seq?, stats} | stopped {stats}
//                      | tls-failed {error}
//   primary -> worker  stop | stats {seq} | tls {tls, entry?}
// plus the topics relay's messages (pubsub/workers-relay.ts). The channel
// uses Node's 'advanced' serialization (structured clone), so that relayed
// payloads travel as bytes: the user's own messages on it must be
// structured-cloneable (plain objects, arrays, Buffers, Maps...).
import { fork, type ChildProcess } from 'node:child_process';
import { parseAddress } from './address.js';
import { NetClosedError, SysError } from './errors.js';
import { checkKnownOptions, msOption, stringsOption } from './options.js';
import { PrimaryRelay, WorkerRelayHub } from './pubsub/workers-relay.js';
import type { PubSubAdapter } from './pubsub/adapter.js';
import { serverOptionsCopy, type TlsServerOptions } from './tls.js';
import type { ClusterFactory, ClusterHost, ClusterRequest, EngineCluster, EngineStats, SupervisorOptions, WorkerExit, WorkerExitReason, WorkerListening, WorkerStats } from './cluster.js';

export type { SupervisorOptions, WorkerExit, WorkerExitReason, WorkerListening, WorkerStats } from './cluster.js';

const ENV = 'NETLOOP_WORKER';
const STABLE_MS = 10_000; // a worker that lived this long restarts after restartDelay again
const STOPPED_GRACE_MS = 1000; // after its engine stopped, a worker gets this long to exit by itself before SIGTERM
const STATS_REPLY_MS = 2000;

interface WorkerEnv {
  id: number;
  addrs: string[];
  statsInterval: number;
}

// Read once, at load, and removed from the environment.
const workerEnv: WorkerEnv | undefined = (() => {
  const text = process.env[ENV];
  if (text === undefined || typeof process.send !== 'function') return undefined;
  delete process.env[ENV];
  try {
    const v = JSON.parse(text) as WorkerEnv;
    if (Number.isInteger(v.id) && Array.isArray(v.addrs) && v.addrs.every((a) => typeof a === 'string')) return v;
  } catch {
    // not ours
  }
  return undefined;
})();
let workerClaimed = false;
let activeSupervisor: Supervisor | undefined;

type Message = { netloop: 1; type: string; [k: string]: unknown };

function isOurs(m: unknown): m is Message {
  return m !== null && typeof m === 'object' && (m as { netloop?: unknown }).netloop === 1 && typeof (m as Message).type === 'string';
}

// Every option's name, checked against SupervisorOptions by the compiler.
const SUPERVISOR_OPTIONS = {
  script: true, args: true, execArgv: true, env: true, startTimeout: true, stopTimeout: true, restartDelay: true,
  maxRestartDelay: true, statsInterval: true, onWorkerListening: true, onWorkerExit: true,
} as const satisfies Record<keyof SupervisorOptions, true>;

// Counters that only grow: what a worker that is gone counted stays in the
// primary's sums. The others (online, queued bytes, ...) are gauges of the
// live workers only.
const CUMULATIVE = ['accepted', 'dialed', 'closed', 'rejected', 'bytesIn', 'bytesOut', 'readerThreadsStarted'];

type Counters = Record<string, number>;

function addInto(sum: Counters, s: Counters, keys: Iterable<string>): void {
  for (const k of keys) if (typeof s[k] === 'number') sum[k] = (sum[k] ?? 0) + s[k];
}

function serializeError(err: unknown): Record<string, unknown> {
  const e = err as Partial<SysError> & { name?: string; message?: string };
  return { name: e?.name ?? 'Error', message: e?.message ?? String(err), code: e?.code, errno: e?.errno, syscall: e?.syscall };
}

function deserializeError(e: Record<string, unknown> | undefined, id: number): Error {
  let err: Error;
  if (e?.name === 'SysError' && typeof e.errno === 'number') {
    err = new SysError(e.errno, typeof e.syscall === 'string' ? e.syscall : undefined);
    err.message = String(e.message);
  } else {
    err = new Error(String(e?.message ?? 'unknown error'));
    if (typeof e?.name === 'string') err.name = e.name;
    if (e?.code !== undefined) (err as Error & { code?: unknown }).code = e.code;
  }
  (err as Error & { workerId?: number }).workerId = id;
  return err;
}

/**
 * @internal The options a supervised engine really runs with: in a worker,
 * the primary's concrete addresses and reusePort on; elsewhere unchanged.
 */
function clusterOptions<T extends ClusterRequest>(options: T): T {
  if (workerEnv === undefined || workerClaimed || !options.workers) return options;
  // The primary sends address strings only: an entry with settings of its
  // own ({ addr, tls }) keeps them, from this process's own options (the
  // same script built them), so that no key travels in the environment.
  const given = options.addrs ?? [];
  const addrs = workerEnv.addrs.map((bound, i) => {
    const g = given[i];
    return g !== undefined && typeof g === 'object' && g !== null ? { ...g, addr: bound } : bound;
  });
  return { ...options, addrs, reusePort: true };
}

/** @internal Validates `workers` and `supervisor`; returns the engine's side, or undefined for a plain engine. */
function createCluster(engine: ClusterHost, options: ClusterRequest): EngineCluster | undefined {
  const n = options.workers;
  if (n !== undefined && (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 1024)) {
    throw new TypeError(`workers must be an integer from 0 to 1024, got ${String(n)}`);
  }
  const sup = options.supervisor;
  if (sup !== undefined && (sup === null || typeof sup !== 'object')) throw new TypeError('supervisor must be an object');
  if (sup !== undefined) checkKnownOptions('supervisor', sup, SUPERVISOR_OPTIONS);
  if (!n) {
    if (sup !== undefined) throw new TypeError('supervisor options need workers >= 1');
    return undefined;
  }
  const addrs = (options.addrs ?? []).map((a) => (typeof a === 'string' ? a : a.addr));
  for (const a of addrs) {
    if (parseAddress(a).kind === 'unix') {
      throw new TypeError(`workers: "${a}": a Unix socket cannot be shared by several processes; use TCP addresses`);
    }
  }
  if (workerEnv !== undefined) {
    if (workerClaimed) throw new Error('one Engine with `workers` per worker process: give one engine several addrs instead');
    workerClaimed = true;
    return new WorkerAgent(engine, workerEnv);
  }
  return new Supervisor(n, addrs, sup ?? {}, options.ref ?? true);
}

/** @internal The supervisor, as the engine obtains it (cluster.ts); index.ts registers it. */
export const supervisor: ClusterFactory = { options: clusterOptions, create: createCluster };

// ---------------------------------------------------------------------------
// The worker side

class WorkerAgent implements EngineCluster {
  readonly role = 'worker';
  readonly running = undefined;
  readonly workerId: number;
  readonly #engine: ClusterHost;
  readonly #statsInterval: number;
  #stopping: Promise<void> | undefined;
  #asked = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #relay = new WorkerRelayHub((m) => this.#send(m));
  readonly #onMessage = (m: unknown): void => {
    if (!isOurs(m)) return;
    if (m.type === 'pub') {
      this.#relay.received(m.batch);
    } else if (m.type === 'stop') {
      this.#asked = true;
      void this.#engine.stop();
    } else if (m.type === 'stats') {
      this.#send({ type: 'stats', seq: m.seq, stats: this.#engine.stats() });
    } else if (m.type === 'tls') {
      this.#applyTls(m.tls as TlsServerOptions, m.entry as number | undefined);
    }
  };
  // The primary is gone (it exited or was killed): an orphan serves no one.
  readonly #onDisconnect = (): void => {
    void this.#engine.stop().finally(() => process.exit(0));
  };

  constructor(engine: ClusterHost, env: WorkerEnv) {
    this.#engine = engine;
    this.workerId = env.id;
    this.#statsInterval = env.statsInterval;
    process.on('message', this.#onMessage);
    process.on('disconnect', this.#onDisconnect);
    // The channel alone must not keep the worker alive: the engine does.
    process.channel?.unref();
  }

  // The primary's setSecureContext, which it checked against the same
  // options: this fails only if this worker's script built others (then the
  // primary warns, and this worker keeps what it had). The entry is named by
  // the address this engine bound for it (addresses() is in `addrs` order),
  // not by the primary's address: the first worker was given port 0.
  #applyTls(tls: TlsServerOptions, entry: number | undefined): void {
    try {
      this.#engine.setSecureContext(tls, entry === undefined ? undefined : this.#engine.addresses()[entry]);
    } catch (err) {
      this.#send({ type: 'tls-failed', error: serializeError(err) });
    }
  }

  #send(m: Record<string, unknown>, cb?: () => void): void {
    if (!process.connected) {
      cb?.();
      return;
    }
    process.send!({ netloop: 1, ...m }, undefined, {}, () => cb?.());
  }

  async start(local: () => Promise<void>): Promise<void> {
    try {
      await local();
    } catch (err) {
      this.#send({ type: 'start-failed', error: serializeError(err) });
      throw err;
    }
    this.#send({ type: 'listening', addrs: this.#engine.addresses() });
    if (this.#statsInterval > 0) {
      this.#timer = setInterval(() => this.#send({ type: 'stats', stats: this.#engine.stats() }), this.#statsInterval);
      this.#timer.unref();
    }
  }

  stop(local: () => Promise<void>): Promise<void> {
    this.#stopping ??= local().then(() => {
      clearInterval(this.#timer);
      process.off('message', this.#onMessage);
      process.off('disconnect', this.#onDisconnect);
      return new Promise<void>((resolve) => this.#send({ type: 'stopped', asked: this.#asked, stats: this.#engine.stats() }, resolve));
    });
    return this.#stopping;
  }

  addresses(): undefined {
    return undefined;
  }

  /** The relay through the primary to the other workers (pubsub/workers-relay.ts). */
  pubsub(channel: string): PubSubAdapter {
    return this.#relay.adapter(channel);
  }

  stats(): undefined {
    return undefined;
  }

  async workerStats(): Promise<WorkerStats[]> {
    return [{ id: this.workerId, pid: process.pid, restarts: 0, ...this.#engine.stats() }];
  }
}

// ---------------------------------------------------------------------------
// The primary side

type SlotState = 'idle' | 'starting' | 'listening' | 'leaving';

interface Slot {
  id: number;
  state: SlotState;
  proc: ChildProcess | undefined;
  pid: number | undefined;
  restarts: number;
  failures: number;
  forkedAt: number;
  addrs: string[];
  last: EngineStats | undefined;
  /** stop() asked it to stop, or it reported that its engine stopped. */
  stopped: boolean;
  /** It sent its final stats (its engine stopped and closed its connections). */
  reported: boolean;
  reason: WorkerExitReason | undefined;
  error: Error | undefined;
  timers: Set<NodeJS.Timeout>;
  ready: { resolve: () => void; reject: (err: Error) => void } | undefined;
  exited: Promise<void>;
  onExited: () => void;
}

class Supervisor implements EngineCluster {
  readonly role = 'primary';
  readonly workerId = undefined;
  readonly #n: number;
  readonly #addrs: string[];
  #bound: string[] = [];
  readonly #script: string;
  readonly #args: string[];
  readonly #execArgv: string[];
  readonly #env: NodeJS.ProcessEnv;
  readonly #startTimeout: number;
  readonly #stopTimeout: number;
  readonly #restartDelay: number;
  readonly #maxRestartDelay: number;
  readonly #statsInterval: number;
  readonly #onListening: ((info: WorkerListening) => void) | undefined;
  readonly #onExit: ((info: WorkerExit) => void) | undefined;
  readonly #ref: boolean;
  #state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  #slots: Slot[] = [];
  #retired: Counters = {};
  /** Every counter a worker reported: gauges of gone workers read 0, not missing. */
  #keys = new Set(['online', 'accepted', 'dialed', 'closed', 'rejected', 'bytesIn', 'bytesOut', 'queuedBytes']);
  #seq = 0;
  #waiting = new Map<number, (stats: EngineStats | undefined) => void>();
  #stopped: Promise<void> | undefined;
  /**
   * The latest setSecureContext settings, engine-wide and per `addrs`
   * entry: sent to every worker then, and to each worker that (re)starts
   * later as soon as it listens (before that, it serves the options' own).
   */
  #tls: TlsServerOptions | undefined;
  readonly #tlsByEntry = new Map<number, TlsServerOptions>();
  readonly #relay = new PrimaryRelay<Slot>((slot, m) => this.#send(slot, m));

  constructor(n: number, addrs: string[], o: SupervisorOptions, ref: boolean) {
    this.#n = n;
    this.#addrs = [...addrs];
    if (o.script !== undefined && typeof o.script !== 'string') throw new TypeError('supervisor.script must be a path');
    const script = o.script ?? process.argv[1];
    if (script === undefined) throw new TypeError('workers: no script to run in the workers (set supervisor.script)');
    this.#script = script;
    this.#args = stringsOption('supervisor.args', o.args) ?? process.argv.slice(2);
    this.#execArgv = stringsOption('supervisor.execArgv', o.execArgv) ?? process.execArgv;
    if (o.env !== undefined && (o.env === null || typeof o.env !== 'object')) throw new TypeError('supervisor.env must be an object');
    this.#env = o.env ?? process.env;
    this.#startTimeout = msOption('supervisor.startTimeout', o.startTimeout, 30_000, 1);
    this.#stopTimeout = msOption('supervisor.stopTimeout', o.stopTimeout, 15_000);
    this.#restartDelay = msOption('supervisor.restartDelay', o.restartDelay, 100);
    this.#maxRestartDelay = Math.max(this.#restartDelay, msOption('supervisor.maxRestartDelay', o.maxRestartDelay, 10_000));
    this.#statsInterval = msOption('supervisor.statsInterval', o.statsInterval, 1000);
    for (const name of ['onWorkerListening', 'onWorkerExit'] as const) {
      if (o[name] !== undefined && typeof o[name] !== 'function') throw new TypeError(`supervisor.${name} must be a function`);
    }
    this.#onListening = o.onWorkerListening;
    this.#onExit = o.onWorkerExit;
    this.#ref = ref;
  }

  get running(): boolean {
    return this.#state === 'running';
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') throw new Error(`Engine.start(): the engine is already ${this.#state}`);
    if (activeSupervisor !== undefined) {
      throw new Error('Engine.start(): another Engine with `workers` is running in this process: one per process (give it several addrs)');
    }
    activeSupervisor = this;
    this.#state = 'starting';
    this.#slots = Array.from({ length: this.#n }, (_, i) => this.#newSlot(i + 1));
    this.#bound = [...this.#addrs];
    try {
      // Port 0: the first worker lets the OS choose, the others (and every
      // restart) join it on the port it got. The primary holds no socket.
      let rest = this.#slots;
      const port0 = this.#addrs.some((a) => {
        const p = parseAddress(a);
        return p.kind === 'inet' && p.port === 0;
      });
      if (port0) {
        await this.#launch(rest[0]!);
        this.#bound = [...rest[0]!.addrs];
        rest = rest.slice(1);
      }
      if (this.#state === 'starting') await Promise.all(rest.map((s) => this.#launch(s)));
      if (this.#state !== 'starting') throw new NetClosedError();
    } catch (err) {
      if (this.#state !== 'starting') throw new Error('Engine.start(): stop() was called while the workers were starting');
      // One worker could not start: the others go, and start() fails as a
      // plain engine's would (e.g. SysError EADDRINUSE).
      this.#state = 'stopping';
      await this.#terminateAll();
      this.#state = 'new';
      activeSupervisor = undefined;
      throw err;
    }
    this.#state = 'running';
  }

  stop(local: () => Promise<void>): Promise<void> {
    this.#stopped ??= (async () => {
      if (this.#state === 'new' || this.#state === 'stopped') {
        this.#state = 'stopped';
      } else {
        this.#state = 'stopping';
        await this.#terminateAll();
        this.#state = 'stopped';
        if (activeSupervisor === this) activeSupervisor = undefined;
      }
      await local();
    })();
    return this.#stopped;
  }

  addresses(): string[] {
    return this.#state === 'new' ? [] : [...this.#bound];
  }

  stats(): EngineStats {
    const s: Counters = {};
    for (const k of this.#keys) s[k] = 0;
    addInto(s, this.#retired, Object.keys(this.#retired));
    for (const slot of this.#slots) {
      const l = slot.last as Counters | undefined;
      if (l !== undefined && slot.proc !== undefined) addInto(s, l, Object.keys(l));
    }
    return s as unknown as EngineStats;
  }

  async workerStats(): Promise<WorkerStats[]> {
    const live = this.#slots.filter((s) => s.state === 'listening' && s.proc?.connected === true);
    const answers = await Promise.all(
      live.map(
        (slot) =>
          new Promise<EngineStats | undefined>((resolve) => {
            const seq = ++this.#seq;
            const timer = setTimeout(() => {
              this.#waiting.delete(seq);
              resolve(undefined);
            }, STATS_REPLY_MS);
            this.#waiting.set(seq, (st) => {
              clearTimeout(timer);
              this.#waiting.delete(seq);
              resolve(st);
            });
            this.#send(slot, { type: 'stats', seq });
          }),
      ),
    );
    const out: WorkerStats[] = [];
    live.forEach((slot, i) => {
      const st = answers[i] ?? slot.last;
      if (st !== undefined && slot.pid !== undefined) out.push({ id: slot.id, pid: slot.pid, restarts: slot.restarts, ...st });
    });
    return out;
  }

  setSecureContext(tls: TlsServerOptions, entry: number | undefined): void {
    const copy = serverOptionsCopy(tls);
    if (entry === undefined) this.#tls = copy;
    else this.#tlsByEntry.set(entry, copy);
    // A starting worker gets it with the rest when it listens.
    for (const slot of this.#slots) if (slot.state === 'listening') this.#send(slot, { type: 'tls', tls: copy, entry });
  }

  // Engine-wide first; either order gives the same result, since the
  // engine-wide settings never replace an address's own.
  #sendTls(slot: Slot): void {
    if (this.#tls !== undefined) this.#send(slot, { type: 'tls', tls: this.#tls });
    for (const [entry, tls] of this.#tlsByEntry) this.#send(slot, { type: 'tls', tls, entry });
  }

  #newSlot(id: number): Slot {
    const slot: Slot = {
      id,
      state: 'idle',
      proc: undefined,
      pid: undefined,
      restarts: 0,
      failures: 0,
      forkedAt: 0,
      addrs: [],
      last: undefined,
      stopped: false,
      reported: false,
      reason: undefined,
      error: undefined,
      timers: new Set(),
      ready: undefined,
      exited: Promise.resolve(),
      onExited: () => {},
    };
    return slot;
  }

  #timer(slot: Slot, ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      slot.timers.delete(t);
      fn();
    }, ms);
    if (!this.#ref) t.unref();
    slot.timers.add(t);
  }

  #send(slot: Slot, m: Record<string, unknown>): void {
    const p = slot.proc;
    if (p === undefined || !p.connected) return;
    p.send({ netloop: 1, ...m }, undefined, {}, () => {}); // a worker that just died: its exit tells the rest
  }

  /** Forks the worker of this slot; resolves when it listens, rejects if it cannot. */
  #launch(slot: Slot): Promise<void> {
    if (this.#state !== 'starting' && this.#state !== 'running') return Promise.reject(new NetClosedError());
    const ready = new Promise<void>((resolve, reject) => (slot.ready = { resolve, reject }));
    slot.exited = new Promise<void>((resolve) => (slot.onExited = resolve));
    slot.state = 'starting';
    slot.stopped = false;
    slot.reported = false;
    slot.reason = undefined;
    slot.error = undefined;
    slot.last = undefined;
    slot.forkedAt = Date.now();
    const env: WorkerEnv = { id: slot.id, addrs: this.#bound, statsInterval: this.#statsInterval };
    let proc: ChildProcess;
    try {
      proc = fork(this.#script, this.#args, {
        execArgv: this.#execArgv,
        env: { ...this.#env, [ENV]: JSON.stringify(env) },
        stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
        serialization: 'advanced',
      });
    } catch (err) {
      slot.state = 'idle';
      slot.ready = undefined;
      slot.onExited();
      return Promise.reject(err as Error);
    }
    slot.proc = proc;
    slot.pid = proc.pid;
    if (!this.#ref) {
      proc.unref();
      proc.channel?.unref();
    }
    proc.on('message', (m: unknown) => this.#onMessage(slot, proc, m));
    let gone = false;
    const onGone = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (gone) return;
      gone = true;
      this.#onGone(slot, proc, code, signal);
    };
    proc.on('exit', onGone);
    proc.on('error', (err) => {
      // A spawn failure (no 'exit' follows); kill() and send() failures are harmless here.
      if (proc.pid === undefined) {
        slot.error = err;
        onGone(null, null);
      }
    });
    this.#timer(slot, this.#startTimeout, () => {
      if (slot.proc !== proc || slot.state !== 'starting') return;
      slot.reason = 'start-timeout';
      proc.kill('SIGKILL');
    });
    return ready;
  }

  #onMessage(slot: Slot, proc: ChildProcess, m: unknown): void {
    if (!isOurs(m) || slot.proc !== proc) return;
    switch (m.type) {
      case 'pub':
        this.#relay.publish(slot, m.batch);
        return;
      case 'topic':
        this.#relay.topic(slot, m.ch, m.topic, m.on);
        return;
      case 'listening': {
        if (slot.state !== 'starting') return;
        slot.state = 'listening';
        slot.addrs = (m.addrs as string[]) ?? [];
        this.#sendTls(slot);
        slot.ready?.resolve();
        slot.ready = undefined;
        this.#onListening?.({ id: slot.id, pid: proc.pid!, restarts: slot.restarts, addrs: [...slot.addrs] });
        return;
      }
      case 'start-failed':
        slot.reason = 'start-failed';
        slot.error = deserializeError(m.error as Record<string, unknown> | undefined, slot.id);
        proc.kill('SIGKILL'); // it holds no connection; its exit reports and restarts
        return;
      case 'tls-failed': {
        // Not a reason to exit: the worker serves on with its previous
        // settings. Reported like a worker's start failure (the worker's
        // error, its workerId), as a process warning.
        const err = deserializeError(m.error as Record<string, unknown> | undefined, slot.id);
        err.message = `worker ${slot.id} kept its previous TLS settings: ${err.message}`;
        process.emitWarning(err);
        return;
      }
      case 'stats': {
        slot.last = m.stats as EngineStats;
        for (const k of Object.keys(slot.last)) this.#keys.add(k);
        if (typeof m.seq === 'number') this.#waiting.get(m.seq)?.(slot.last);
        return;
      }
      case 'stopped': {
        slot.last = m.stats as EngineStats;
        slot.stopped = true;
        slot.reported = true;
        slot.state = 'leaving';
        // Its engine is stopped; the process should end by itself now.
        this.#timer(slot, STOPPED_GRACE_MS, () => {
          if (slot.proc === proc) proc.kill('SIGTERM');
        });
        return;
      }
    }
  }

  #onGone(slot: Slot, proc: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (slot.proc !== proc) return;
    this.#relay.gone(slot);
    for (const t of slot.timers) clearTimeout(t);
    slot.timers.clear();
    // Keep the counters of the workers that are gone; connections a dead
    // worker held were closed by the kernel.
    const l = slot.last as Counters | undefined;
    if (l !== undefined) {
      addInto(this.#retired, l, CUMULATIVE);
      if (!slot.reported) this.#retired.closed = (this.#retired.closed ?? 0) + (l.online ?? 0);
    }
    slot.last = undefined;
    slot.proc = undefined;
    const wasStarting = slot.state === 'starting';
    slot.state = 'idle';
    const reason: WorkerExitReason = slot.stopped ? 'stopped' : (slot.reason ?? 'crashed');
    const error = slot.error;
    const listened = slot.ready === undefined;
    if (slot.ready !== undefined) {
      const what = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
      slot.ready.reject(
        error ?? (reason === 'start-timeout' ? new Error(`worker ${slot.id} did not listen within ${this.#startTimeout} ms`) : new Error(`worker ${slot.id} ${what} before listening`)),
      );
      slot.ready = undefined;
    }
    let restartIn: number | null = null;
    // Restarted: a worker that had listened, while the engine runs (or while
    // the other workers are still starting: start() does not fail for it).
    const live = this.#state === 'running' || (this.#state === 'starting' && listened);
    if (live && !slot.stopped) {
      const lived = Date.now() - slot.forkedAt;
      slot.failures = !wasStarting && lived >= STABLE_MS ? 1 : slot.failures + 1;
      restartIn = Math.min(this.#maxRestartDelay, this.#restartDelay * 2 ** Math.min(30, slot.failures - 1));
      this.#timer(slot, restartIn, () => {
        if (this.#state !== 'running' && this.#state !== 'starting') return;
        slot.restarts++;
        this.#launch(slot).catch(() => {}); // a failed restart exits, which reports and backs off
      });
    }
    slot.onExited();
    try {
      this.#onExit?.({ id: slot.id, pid: proc.pid, code, signal, reason, ...(error !== undefined ? { error } : {}), restartIn });
    } finally {
      // Every worker stopped its own engine: the supervised engine is stopped too.
      if (this.#state === 'running' && this.#slots.every((s) => s.proc === undefined && s.timers.size === 0)) {
        this.#state = 'stopped';
        if (activeSupervisor === this) activeSupervisor = undefined;
      }
    }
  }

  /** Asks every worker to stop gracefully; SIGKILL after stopTimeout. Resolves when all exited. */
  async #terminateAll(): Promise<void> {
    for (const slot of this.#slots) {
      for (const t of slot.timers) clearTimeout(t); // pending restarts, start timeouts
      slot.timers.clear();
      const proc = slot.proc;
      if (proc === undefined) continue;
      slot.stopped = true;
      if (slot.state === 'listening' && proc.connected) {
        this.#send(slot, { type: 'stop' });
      } else if (slot.state === 'leaving') {
        // Its engine already stopped: it gets a moment to end by itself.
        this.#timer(slot, STOPPED_GRACE_MS, () => {
          if (slot.proc === proc) proc.kill('SIGTERM');
        });
      } else {
        proc.kill('SIGTERM'); // not listening yet: it holds no connection
      }
      this.#timer(slot, this.#stopTimeout, () => {
        if (slot.proc === proc) proc.kill('SIGKILL');
      });
    }
    await Promise.all(this.#slots.map((s) => s.exited));
  }
}
