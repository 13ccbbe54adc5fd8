// Topics across the worker processes of an Engine with `workers`, without
// Redis: each worker's topic owners (its Upgrader, its raw engine topics)
// get a WorkerRelay as their adapter when none was configured. A publish is
// delivered in its own worker at once and sent to the primary; the primary
// relays it to the workers that have subscribers of its topic, and only to
// them (workers tell it when a topic gains its first or loses its last local
// subscriber). Messages of one publisher keep their order: one IPC channel
// each way, FIFO.
//
// Publishes are batched per tick: every publish made while the event loop
// runs one piece of work (a batch of the engine's events, a timer) goes to
// the primary in one IPC message, and the primary sends each worker one
// message per batch it relays. The channel uses Node's 'advanced'
// serialization (workers.ts forks with it), so payloads travel as bytes,
// not as JSON arrays of numbers.
//
// The IPC protocol (beside workers.ts's; every message has `netloop: 1`):
//   worker -> primary  topic {ch, topic, on} | pub {batch: [ch, topic, data, text][]}
//   primary -> worker  pub {batch}
import { Buffer } from 'node:buffer';
import type { MessageType } from '../websocket/opcodes.js';
import type { PubSubAdapter, PubSubDeliver } from './adapter.js';

/** One relayed publish: channel ('ws', 'raw'), topic, payload, whether it is text. */
export type RelayEntry = [string, string, Uint8Array, boolean];

/** How a relay sends to the other side of the IPC channel. */
export type RelaySend = (message: Record<string, unknown>) => void;

function isEntry(e: unknown): e is RelayEntry {
  return Array.isArray(e) && e.length === 4 && typeof e[0] === 'string' && typeof e[1] === 'string' && e[2] instanceof Uint8Array && typeof e[3] === 'boolean';
}

/** The worker's side: one adapter per channel, the batch toward the primary. */
export class WorkerRelayHub {
  readonly #send: RelaySend;
  readonly #adapters = new Map<string, WorkerRelay>();
  #batch: RelayEntry[] = [];
  #scheduled = false;
  readonly #flush = (): void => {
    this.#scheduled = false;
    const batch = this.#batch;
    this.#batch = [];
    if (batch.length > 0) this.#send({ type: 'pub', batch });
  };

  constructor(send: RelaySend) {
    this.#send = send;
  }

  /** The adapter of `channel` (created once). */
  adapter(channel: string): WorkerRelay {
    let a = this.#adapters.get(channel);
    if (a === undefined) {
      a = new WorkerRelay(channel, this);
      this.#adapters.set(channel, a);
    }
    return a;
  }

  /** @internal */
  _topic(channel: string, topic: string, on: boolean): void {
    this.#send({ type: 'topic', ch: channel, topic, on });
  }

  /** @internal */
  _publish(entry: RelayEntry): void {
    this.#batch.push(entry);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flush);
    }
  }

  /** A 'pub' message from the primary: each entry to its channel's local subscribers. */
  received(batch: unknown): void {
    if (!Array.isArray(batch)) return;
    for (const e of batch) {
      if (!isEntry(e)) continue;
      this.#adapters.get(e[0])?._deliver(e[1], e[2], e[3] ? 'text' : 'binary');
    }
  }
}

/** The adapter a worker's topic owner uses by default (see the file's head). */
export class WorkerRelay implements PubSubAdapter {
  readonly #channel: string;
  readonly #hub: WorkerRelayHub;
  #deliver: PubSubDeliver | undefined;

  constructor(channel: string, hub: WorkerRelayHub) {
    this.#channel = channel;
    this.#hub = hub;
  }

  attach(deliver: PubSubDeliver): void {
    this.#deliver = deliver;
  }

  subscribe(topic: string): void {
    this.#hub._topic(this.#channel, topic, true);
  }

  unsubscribe(topic: string): void {
    this.#hub._topic(this.#channel, topic, false);
  }

  /** Delivered here by the owner at once (false); the other workers get it through the primary. */
  publish(topic: string, data: Uint8Array, type: MessageType): boolean {
    // Copied: the batch is sent at the next loop turn, and the publisher may reuse its buffer
    // once the tick is over (the engine's own writes are flushed by then).
    this.#hub._publish([this.#channel, topic, Buffer.from(data), type === 'text']);
    return false;
  }

  async close(): Promise<void> {
    this.#deliver = undefined;
  }

  /** @internal */
  _deliver(topic: string, data: Uint8Array, type: MessageType): void {
    this.#deliver?.(topic, data, type);
  }
}

/** The primary's side: which worker has subscribers of which topic, and the relaying. */
export class PrimaryRelay<W> {
  readonly #send: (worker: W, message: Record<string, unknown>) => void;
  /** `${channel}\0${topic}` -> the workers with local subscribers. */
  readonly #subs = new Map<string, Set<W>>();
  /** Each worker's keys, so that a worker that is gone leaves in time proportional to its topics. */
  readonly #keysOf = new Map<W, Set<string>>();
  #out = new Map<W, RelayEntry[]>();
  #scheduled = false;
  readonly #flush = (): void => {
    this.#scheduled = false;
    const out = this.#out;
    this.#out = new Map();
    for (const [w, batch] of out) this.#send(w, { type: 'pub', batch });
  };

  constructor(send: (worker: W, message: Record<string, unknown>) => void) {
    this.#send = send;
  }

  /** A worker's 'topic' message. */
  topic(worker: W, channel: unknown, topic: unknown, on: unknown): void {
    if (typeof channel !== 'string' || typeof topic !== 'string') return;
    const key = `${channel}\0${topic}`;
    let keys = this.#keysOf.get(worker);
    if (on === true) {
      if (keys === undefined) this.#keysOf.set(worker, (keys = new Set()));
      keys.add(key);
      let set = this.#subs.get(key);
      if (set === undefined) this.#subs.set(key, (set = new Set()));
      set.add(worker);
    } else {
      keys?.delete(key);
      this.#drop(worker, key);
    }
  }

  /** A worker's 'pub' message: each entry to every other worker with subscribers of its topic. */
  publish(from: W, batch: unknown): void {
    if (!Array.isArray(batch)) return;
    for (const e of batch) {
      if (!isEntry(e)) continue;
      const set = this.#subs.get(`${e[0]}\0${e[1]}`);
      if (set === undefined) continue;
      for (const w of set) {
        if (w === from) continue;
        let list = this.#out.get(w);
        if (list === undefined) this.#out.set(w, (list = []));
        list.push(e);
      }
    }
    if (this.#out.size > 0 && !this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flush);
    }
  }

  /** A worker exited: its subscriptions are gone with it (a restarted worker subscribes afresh). */
  gone(worker: W): void {
    const keys = this.#keysOf.get(worker);
    this.#keysOf.delete(worker);
    this.#out.delete(worker);
    if (keys !== undefined) for (const key of keys) this.#drop(worker, key);
  }

  #drop(worker: W, key: string): void {
    const set = this.#subs.get(key);
    if (set === undefined) return;
    set.delete(worker);
    if (set.size === 0) this.#subs.delete(key);
  }
}
