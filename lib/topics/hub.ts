// TopicHub: the registry of topic -> subscribers of one topic owner (an
// Upgrader's WebSocket connections, or an Engine's raw connections), and the
// link to its pub/sub adapter. It knows nothing of frames or sockets: the
// owner gives it `fanOut`, which writes one message to a set of subscribers.
//
// Costs: subscribe and unsubscribe are a Map and two Set operations; a
// publish is one fanOut over the topic's Set. Each subscriber keeps the set
// of its own topics (passed in by the owner), so that a close leaves all of
// them in time proportional to their number, never to the number of topics.
import { Buffer } from 'node:buffer';
import type { PubSubAdapter } from '../pubsub/adapter.js';
import type { MessageType } from '../websocket/opcodes.js';
import { checkKnownOptions, intOption } from '../options.js';

/** What happens to a subscriber whose write queue cannot keep up with the publishes. */
export type SlowSubscriberPolicy = 'close' | 'skip';

/** Options of the topics of an Upgrader or Engine (their `topics` option). */
export interface TopicsOptions {
  /** A topic name's length at most (UTF-16 units). Default 256. */
  maxTopicLength?: number;
  /** Topics one connection may be subscribed to at once; subscribe() past it throws RangeError. Default 1,024. */
  maxTopicsPerConnection?: number;
  /**
   * A subscriber that does not read what is published to it:
   * - 'close' (default): the engine's policy for every write applies: its
   *   queue grows until maxWriteBufferSize (OverflowError) or the server's
   *   memoryBudget (BudgetError) closes it; the others never wait for it.
   * - 'skip': a publish is not queued for a subscriber that holds more than
   *   `skipAbove` bytes already; it misses those messages (counted in
   *   Engine.stats().writesSkipped) and stays open.
   */
  slowSubscriber?: SlowSubscriberPolicy;
  /** With slowSubscriber 'skip': the queue size (bytes) above which publishes are skipped. Default: the engine's writeHighWaterMark (1 MiB). */
  skipAbove?: number;
  /** The adapter failed (it threw): what it was doing and the error. Default: a process warning. */
  onPubSubError?: (err: Error, during: 'attach' | 'subscribe' | 'unsubscribe' | 'publish' | 'close') => void;
}

const TOPICS_OPTIONS = {
  maxTopicLength: true, maxTopicsPerConnection: true, slowSubscriber: true, skipAbove: true, onPubSubError: true,
} as const satisfies Record<keyof TopicsOptions, true>;

/** The options in force. */
export interface TopicsConfig {
  readonly maxTopicLength: number;
  readonly maxTopicsPerConnection: number;
  readonly slowSubscriber: SlowSubscriberPolicy;
  /** 0: take the engine's writeHighWaterMark when it starts. */
  readonly skipAbove: number;
}

/** Checks the `topics` option of `who` (TypeError naming a wrong or unknown one). */
export function topicsOption(who: string, options: TopicsOptions | undefined): TopicsConfig & Pick<TopicsOptions, 'onPubSubError'> {
  if (options === undefined) return { maxTopicLength: 256, maxTopicsPerConnection: 1024, slowSubscriber: 'close', skipAbove: 0 };
  if (options === null || typeof options !== 'object') throw new TypeError(`${who}: topics must be an object`);
  checkKnownOptions(`${who} topics`, options, TOPICS_OPTIONS);
  const policy = options.slowSubscriber ?? 'close';
  if (policy !== 'close' && policy !== 'skip') throw new TypeError(`topics.slowSubscriber must be 'close' or 'skip', got ${String(policy)}`);
  if (options.onPubSubError !== undefined && typeof options.onPubSubError !== 'function') throw new TypeError('topics.onPubSubError must be a function');
  return {
    maxTopicLength: intOption('topics.maxTopicLength', options.maxTopicLength, 256, 1, 65536),
    maxTopicsPerConnection: intOption('topics.maxTopicsPerConnection', options.maxTopicsPerConnection, 1024, 1, 1 << 24),
    slowSubscriber: policy,
    skipAbove: intOption('topics.skipAbove', options.skipAbove, 0, 0, 2 ** 31 - 1),
    onPubSubError: options.onPubSubError,
  };
}

/** Checks a pub/sub adapter given as an option. */
export function pubsubOption(who: string, adapter: unknown): PubSubAdapter | undefined {
  if (adapter === undefined) return undefined;
  const a = adapter as Partial<PubSubAdapter> | null;
  for (const m of ['attach', 'subscribe', 'unsubscribe', 'publish', 'close'] as const) {
    if (a === null || typeof a !== 'object' || typeof a[m] !== 'function') {
      throw new TypeError(`${who}: pubsub must be a PubSubAdapter (attach, subscribe, unsubscribe, publish, close)`);
    }
  }
  return a as PubSubAdapter;
}

/** The data of a publish as bytes, and its type ('text' for a string unless told). */
export function publishArgs(what: string, topic: unknown, data: unknown, type: unknown): { bytes: Uint8Array; type: MessageType } {
  if (typeof topic !== 'string') throw new TypeError(`${what}: topic must be a string`);
  if (type !== undefined && type !== 'text' && type !== 'binary') throw new TypeError(`${what}: type must be 'text' or 'binary', got ${String(type)}`);
  if (typeof data === 'string') return { bytes: Buffer.from(data, 'utf8'), type: (type as MessageType | undefined) ?? 'text' };
  if (!(data instanceof Uint8Array)) throw new TypeError(`${what}: data must be a Buffer, Uint8Array or string`);
  return { bytes: data, type: (type as MessageType | undefined) ?? 'binary' };
}

/**
 * Writes one published message to `subscribers` (all of them but `exclude`)
 * and returns how many it was queued for.
 */
export type FanOut<T> = (subscribers: ReadonlySet<T>, data: Uint8Array, type: MessageType, exclude: T | undefined) => number;

/** The registry and adapter link of one topic owner; `T` is its connection type. */
export class TopicHub<T extends object> {
  readonly config: TopicsConfig;
  readonly #subscribers = new Map<string, Set<T>>();
  readonly #fanOut: FanOut<T>;
  readonly #onError: TopicsOptions['onPubSubError'];
  #adapter: PubSubAdapter | undefined;
  #attached = false;

  constructor(config: TopicsConfig & Pick<TopicsOptions, 'onPubSubError'>, adapter: PubSubAdapter | undefined, fanOut: FanOut<T>) {
    this.config = config;
    this.#onError = config.onPubSubError;
    this.#adapter = adapter;
    this.#fanOut = fanOut;
  }

  /** The adapter in use, if any. */
  get adapter(): PubSubAdapter | undefined {
    return this.#adapter;
  }

  /**
   * Starts using the adapter (the owner's engine started). `fallback` is
   * the adapter to use when none was configured: the workers' relay in a
   * worker process. A configured adapter always wins, so that a message
   * reaches each process once (Redis carries it to every worker itself).
   */
  start(fallback: PubSubAdapter | undefined): void {
    if (this.#attached) return;
    this.#adapter ??= fallback;
    const a = this.#adapter;
    if (a === undefined) return;
    this.#attached = true;
    this.#call('attach', () => a.attach((topic, data, type, origin) => this.deliver(topic, data, type, origin)));
    // Topics subscribed to before the engine started (none for connections, but the API allows it).
    for (const topic of this.#subscribers.keys()) this.#call('subscribe', () => a.subscribe(topic));
  }

  /** The owner's engine stopped: the adapter is closed (its promise is awaited, its failure reported). */
  async stop(): Promise<void> {
    const a = this.#adapter;
    if (a === undefined || !this.#attached) return;
    this.#attached = false;
    try {
      await a.close();
    } catch (err) {
      this.#report('close', err);
    }
  }

  /** Checks a topic name: a string of 1..maxTopicLength. */
  check(what: string, topic: unknown): void {
    if (typeof topic !== 'string') throw new TypeError(`${what}: topic must be a string, got ${topic === null ? 'null' : typeof topic}`);
    if (topic.length === 0 || topic.length > this.config.maxTopicLength) {
      throw new RangeError(`${what}: a topic has 1 to ${this.config.maxTopicLength} characters (topics.maxTopicLength), got ${topic.length}`);
    }
  }

  /** Adds `sub` (whose own topics are `own`) to `topic`; false if it was subscribed already. */
  subscribe(sub: T, own: Set<string>, topic: string): boolean {
    if (own.has(topic)) return false;
    if (own.size >= this.config.maxTopicsPerConnection) {
      throw new RangeError(`subscribe: a connection may have at most ${this.config.maxTopicsPerConnection} topics (topics.maxTopicsPerConnection)`);
    }
    own.add(topic);
    let set = this.#subscribers.get(topic);
    if (set === undefined) {
      set = new Set();
      this.#subscribers.set(topic, set);
      const a = this.#adapter;
      if (a !== undefined && this.#attached) this.#call('subscribe', () => a.subscribe(topic));
    }
    set.add(sub);
    return true;
  }

  /** Removes `sub` from `topic`; false if it was not subscribed. */
  unsubscribe(sub: T, own: Set<string>, topic: string): boolean {
    if (!own.delete(topic)) return false;
    this.#leave(sub, topic);
    return true;
  }

  /** Removes `sub` from every topic in `own` (its close). */
  leaveAll(sub: T, own: Set<string>): void {
    for (const topic of own) this.#leave(sub, topic);
    own.clear();
  }

  #leave(sub: T, topic: string): void {
    const set = this.#subscribers.get(topic);
    if (set === undefined) return;
    set.delete(sub);
    if (set.size > 0) return;
    this.#subscribers.delete(topic);
    const a = this.#adapter;
    if (a !== undefined && this.#attached) this.#call('unsubscribe', () => a.unsubscribe(topic));
  }

  /** Local subscribers of `topic`. */
  count(topic: string): number {
    return this.#subscribers.get(topic)?.size ?? 0;
  }

  /**
   * A publish made here: handed to the adapter, and delivered to the local
   * subscribers (but `exclude`) now unless the adapter delivers it itself.
   * Returns the local subscribers it was queued for now.
   */
  publish(topic: string, data: Uint8Array, type: MessageType, exclude: T | undefined): number {
    const a = this.#adapter;
    if (a !== undefined && this.#attached) {
      let later = false;
      try {
        later = a.publish(topic, data, type, exclude) === true;
      } catch (err) {
        this.#report('publish', err); // delivered here at least
      }
      if (later) return 0;
    }
    const set = this.#subscribers.get(topic);
    if (set === undefined) return 0;
    return this.#fanOut(set, data, type, exclude);
  }

  /** A message from the adapter: to the local subscribers (but `origin`, a publishing connection of ours). */
  deliver(topic: string, data: Uint8Array, type: MessageType, origin?: object): number {
    if (typeof topic !== 'string' || !(data instanceof Uint8Array) || (type !== 'text' && type !== 'binary')) {
      this.#report('publish', new TypeError('deliver(topic, data, type): the adapter passed a topic that is not a string, data that is not bytes, or a type that is not text or binary'));
      return 0;
    }
    const set = this.#subscribers.get(topic);
    if (set === undefined) return 0;
    return this.#fanOut(set, data, type, origin as T | undefined);
  }

  #call(during: 'attach' | 'subscribe' | 'unsubscribe', fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#report(during, err);
    }
  }

  #report(during: 'attach' | 'subscribe' | 'unsubscribe' | 'publish' | 'close', thrown: unknown): void {
    const err = thrown instanceof Error ? thrown : new Error(String(thrown));
    if (this.#onError !== undefined) {
      try {
        this.#onError(err, during);
        return;
      } catch (e) {
        process.emitWarning(e instanceof Error ? e : String(e), 'NetloopPubSubWarning');
      }
    }
    process.emitWarning(`pub/sub adapter failed during ${during}: ${err.message}`, 'NetloopPubSubWarning');
  }
}
