// netloop/redis: topics across servers on Redis pub/sub (a single node, or a Redis Cluster with
// sharded channels). The engine keeps its local subscribers; this adapter only tells Redis which
// topics this server needs and carries publishes out and in. Its own subpath, so that a program
// without Redis never loads a Redis client.
//
// Delivery (docs/scaling.md, "Topics across servers on Redis"):
// - a publish goes to Redis once and comes back to every server subscribed to the topic,
//   the publishing one included, which delivers it to its own subscribers only then: every
//   server sees the messages of a topic in the one order Redis gave them;
// - while this server has local subscribers for a topic but no confirmed Redis subscription
//   (Redis away, resubscribing), a local publish is delivered locally at once and marked so in
//   its envelope; its echo, if it comes back, is dropped;
// - at most once: what Redis sent while a subscriber connection was down is lost, and reported
//   through `onGap` once the topic is subscribed again; publishes that could not be sent are
//   dropped (never queued) and reported the same way.
import { NetloopError } from '../errors.js';
import { cluster, singleNode } from './redis-connections.js';
import type { BufferListener, Connections } from './redis-connections.js';
import { ENVELOPE_HEADER, decodeEnvelope, encodeEnvelope, equalsOrigin, newOrigin } from './redis-envelope.js';

import type { MessageType, PubSubAdapter, PubSubDeliver } from './adapter.js';

export type { MessageType, PubSubAdapter } from './adapter.js';

/** What may have been missed, reported once it is over (times are `Date.now()` milliseconds). */
export interface PubSubGap {
  /**
   * 'subscribe': this server's subscribers may have missed messages published (anywhere) on
   * `topics` between `from` and `to`. 'publish': `count` publishes made here on `topics` between
   * `from` and `to` were dropped before reaching Redis: the other servers did not get them.
   */
  kind: 'subscribe' | 'publish';
  topics: string[];
  from: number;
  to: number;
  /** For 'publish': how many publishes were dropped. */
  count?: number;
  /** Why: the first error seen, when there was one. */
  reason?: string;
}

export interface RedisPubSubOptions {
  /** A single Redis node, e.g. 'redis://127.0.0.1:6379'. */
  url?: string;
  /** More options for node-redis's `createClient` (socket, username, password, database...). */
  client?: Record<string, unknown>;
  /** A Redis Cluster: node-redis's `createCluster` options, `rootNodes` at least. */
  cluster?: { rootNodes: Array<Record<string, unknown>>; [option: string]: unknown };
  /** SSUBSCRIBE/SPUBLISH (Redis 7): the default with `cluster`, and possible on a single node. */
  sharded?: boolean;
  /** Prepended to every topic to make the Redis channel name. Default 'netloop:'. */
  prefix?: string;
  /** Called when a gap is over (see PubSubGap). */
  onGap?: (gap: PubSubGap) => void;
  /** Called with every error (connections, malformed messages). Default: one warning per outage. */
  onError?: (err: Error) => void;
  /** Publishes sent and not yet acknowledged by Redis, in bytes; past it publishes are dropped. Default 16 MiB. */
  maxPendingBytes?: number;
  /** Interval of the PING that finds a subscriber connection that died silently, ms. Default 5000. */
  pingInterval?: number;
}

export interface RedisPubSubStats {
  published: number;
  delivered: number;
  droppedPublishes: number;
  malformed: number;
  gaps: number;
  pendingBytes: number;
}

interface TopicState {
  listener: BufferListener;
  /** The engine has local subscribers. */
  wanted: boolean;
  /** Redis confirmed the subscription and its connection has not failed since. */
  live: boolean;
  /** A subscribe or unsubscribe is under way. */
  busy: boolean;
  /** Redis holds a subscription (or one is being made). */
  subscribed: boolean;
  /** Since when messages may be missed (0: no gap). */
  gapFrom: number;
}

interface PublishGap {
  from: number;
  to: number;
  count: number;
  topics: Set<string>;
  reason?: string;
}

const MiB = 1024 * 1024;
/** Topics named in one publish gap report: a bound on the memory an outage can take. */
const MAX_TOPICS_PER_REPORT = 1000;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5000;

function positiveOption(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new TypeError(`redisPubSub: ${name} must be a positive number, got ${String(value)}`);
  }
  return value;
}

class RedisPubSub implements PubSubAdapter {
  readonly #origin = newOrigin();
  readonly #prefix: string;
  readonly #maxPendingBytes: number;
  readonly #onGap: ((gap: PubSubGap) => void) | undefined;
  readonly #onError: ((err: Error) => void) | undefined;
  readonly #connections: Connections;
  readonly #topics = new Map<string, TopicState>();
  #deliver: PubSubDeliver | undefined;
  #seq = 0;
  /**
   * The publishing connections of this server's publishes that are on their way through Redis,
   * by sequence number, handed back to deliver() with the echo (the engine skips them). An entry
   * leaves with its echo, or when the echo cannot come any more (send failed, subscription lost,
   * topic left).
   */
  readonly #awaitingEcho = new Map<number, { origin: object; topic: string }>();
  #closed = false;
  #connected = false;
  #connecting: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryDelay = RETRY_MIN_MS;
  #publishGap: PublishGap | undefined;
  /** The first error of the current outage, for the reports; undefined while healthy. */
  #outageReason: string | undefined;
  /** The reason the last subscription gap started. */
  #gapReason: string | undefined;
  #warned = false;
  #stats: RedisPubSubStats = { published: 0, delivered: 0, droppedPublishes: 0, malformed: 0, gaps: 0, pendingBytes: 0 };

  constructor(opts: RedisPubSubOptions) {
    if (opts === null || typeof opts !== 'object') throw new TypeError('redisPubSub: options must be an object');
    if (opts.url !== undefined && opts.cluster !== undefined) throw new TypeError('redisPubSub: give either url or cluster, not both');
    if (opts.cluster !== undefined && (!Array.isArray(opts.cluster.rootNodes) || opts.cluster.rootNodes.length === 0)) {
      throw new TypeError('redisPubSub: cluster.rootNodes must list at least one node');
    }
    if (opts.prefix !== undefined && typeof opts.prefix !== 'string') throw new TypeError('redisPubSub: prefix must be a string');
    this.#prefix = opts.prefix ?? 'netloop:';
    this.#maxPendingBytes = positiveOption(opts.maxPendingBytes, 'maxPendingBytes', 16 * MiB);
    const pingInterval = positiveOption(opts.pingInterval, 'pingInterval', 5000);
    this.#onGap = opts.onGap;
    this.#onError = opts.onError;
    const events = {
      error: (err: Error) => this.#reportError(err),
      subscriptionsLost: (affects: (channel: string) => boolean) => this.#subscriptionsLost(affects),
      subscriberReady: () => this.#kick(),
    };
    this.#connections = opts.cluster
      ? cluster({ clusterOptions: opts.cluster, sharded: opts.sharded ?? true, pingInterval }, events)
      : singleNode({ url: opts.url, clientOptions: opts.client, sharded: opts.sharded ?? false, pingInterval }, events);
  }

  get stats(): Readonly<RedisPubSubStats> {
    return { ...this.#stats };
  }

  /**
   * Connects to Redis now; resolves once connected. Without it the engine's start connects, and
   * until then a remote publish misses this server's subscribers (at most once): a server that
   * must not take connections before Redis is reachable awaits this before `engine.start()`.
   */
  connect(): Promise<void> {
    // node-redis retries a failed first connection itself, with its backoff; the adapter's
    // subscriptions wait for it through the retry loop below.
    this.#connecting ??= this.#connections.connect().then(() => {
      this.#connected = true;
      this.#kick();
    });
    return this.#connecting;
  }

  attach(deliver: PubSubDeliver): void {
    if (this.#deliver) throw new NetloopError('NETLOOP_PUBSUB_ATTACHED', 'this Redis adapter is already attached to an engine');
    this.#deliver = deliver;
    this.connect().catch((err: Error) => this.#reportError(err));
  }

  subscribe(topic: string): void {
    if (this.#closed) return;
    let state = this.#topics.get(topic);
    if (!state) {
      state = { listener: (message) => this.#receive(topic, message), wanted: true, live: false, busy: false, subscribed: false, gapFrom: 0 };
      this.#topics.set(topic, state);
    }
    state.wanted = true;
    this.#reconcile(topic, state);
  }

  unsubscribe(topic: string): void {
    const state = this.#topics.get(topic);
    if (!state || !state.wanted) return;
    state.wanted = false;
    state.live = false;
    this.#forgetEchoes((t) => t === topic);
    if (state.gapFrom !== 0) this.#reportSubscribeGaps([topic], state.gapFrom);
    state.gapFrom = 0;
    this.#reconcile(topic, state);
  }

  publish(topic: string, data: Uint8Array, type: MessageType, origin?: object): boolean {
    const state = this.#topics.get(topic);
    // Local subscribers, no live Redis subscription: they get it now, and the echo is dropped.
    const deliverNow = state !== undefined && state.wanted && !state.live;
    if (this.#closed) return !deliverNow;
    const size = ENVELOPE_HEADER + data.byteLength;
    if (!this.#connections.canPublish(this.#prefix + topic)) {
      // Nothing can be sent: the other servers miss it (reported), this one's subscribers get it
      // now. (A publish sent just before the connection failed may still come back after it.)
      this.#dropPublish(topic, this.#outageReason ?? 'Redis connection not ready');
      return false;
    }
    if (this.#stats.pendingBytes + size > this.#maxPendingBytes) {
      // Lost here too: delivering it now would overtake the publishes still on their way.
      this.#dropPublish(topic, `more than maxPendingBytes (${this.#maxPendingBytes}) waiting for Redis`);
    } else {
      const seq = (this.#seq = (this.#seq + 1) >>> 0);
      const envelope = encodeEnvelope(this.#origin, seq, type, deliverNow, data);
      // Only an echo this server will deliver needs its origin back.
      const awaits = origin !== undefined && !deliverNow && state !== undefined && state.wanted;
      if (awaits) this.#awaitingEcho.set(seq, { origin, topic });
      this.#stats.pendingBytes += envelope.length;
      this.#connections.publish(this.#prefix + topic, envelope).then(
        () => {
          this.#stats.pendingBytes -= envelope.length;
          this.#stats.published++;
          this.#closePublishGap();
        },
        (err: Error) => {
          this.#stats.pendingBytes -= envelope.length;
          if (awaits) this.#awaitingEcho.delete(seq);
          this.#dropPublish(topic, err.message);
        },
      );
    }
    return !deliverNow;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#awaitingEcho.clear();
    for (const [topic, state] of this.#topics) {
      if (!state.wanted || state.gapFrom === 0) continue;
      this.#reportSubscribeGaps([topic], state.gapFrom);
      state.gapFrom = 0;
    }
    this.#flushSubscribeGaps();
    this.#closePublishGap();
    await this.#connections.close();
  }

  #receive(topic: string, message: Buffer): void {
    const state = this.#topics.get(topic);
    if (this.#closed || !state || !state.wanted || !this.#deliver) return;
    const env = decodeEnvelope(message);
    if (typeof env === 'string') {
      this.#stats.malformed++;
      this.#reportError(new NetloopError('NETLOOP_PUBSUB_MALFORMED', `dropped a message on Redis channel ${this.#prefix}${topic}: ${env}`));
      return;
    }
    let origin: object | undefined;
    if (equalsOrigin(env.origin, this.#origin)) {
      if (env.deliveredByOrigin) return;
      origin = this.#awaitingEcho.get(env.seq)?.origin;
      this.#awaitingEcho.delete(env.seq);
    }
    this.#stats.delivered++;
    try {
      this.#deliver(topic, env.payload, env.type, origin);
    } catch (err) {
      // The engine's delivery must not break node-redis's reading of the connection.
      this.#reportError(err as Error);
    }
  }

  /** Brings Redis's subscription of `topic` to what the engine wants, one command at a time. */
  #reconcile(topic: string, state: TopicState): void {
    // Before the first connection, node-redis's cluster client refuses commands; the connect
    // callback runs every topic through here.
    if (state.busy || this.#closed || !this.#connected) return;
    const channel = this.#prefix + topic;
    if (state.wanted && (!state.subscribed || !state.live)) {
      state.busy = true;
      state.subscribed = true;
      this.#connections.subscribe(channel, state.listener).then(
        () => {
          state.busy = false;
          // node-redis answers at once, without a command, for a channel it already holds, even
          // while its connection is down: only a connection that is up makes the topic live.
          if (state.wanted && this.#connections.subscriberUp(channel)) {
            state.live = true;
            this.#retryDelay = RETRY_MIN_MS;
            this.#outageReason = undefined;
            this.#warned = false;
            if (state.gapFrom !== 0) {
              const from = state.gapFrom;
              state.gapFrom = 0;
              this.#reportSubscribeGaps([topic], from);
            }
          } else if (state.wanted) {
            // Not up: wait for the retry timer (calling again now would spin, since node-redis
            // answers at once).
            if (state.gapFrom === 0) state.gapFrom = Date.now();
            this.#scheduleRetry();
            return;
          }
          this.#reconcile(topic, state);
        },
        (err: Error) => {
          state.busy = false;
          state.subscribed = false;
          if (state.wanted && state.gapFrom === 0) {
            state.gapFrom = Date.now();
            this.#gapReason = err.message;
          }
          this.#reportError(err);
          this.#scheduleRetry();
        },
      );
    } else if (!state.wanted && state.subscribed) {
      state.busy = true;
      this.#connections.unsubscribe(channel).then(
        () => {
          state.busy = false;
          state.subscribed = false;
          if (!state.wanted) this.#topics.delete(topic);
          else this.#reconcile(topic, state);
        },
        (err: Error) => {
          // The connection is down: Redis forgot the subscription with it, and node-redis
          // resubscribes only channels that still have listeners. Try again later all the same.
          state.busy = false;
          this.#reportError(err);
          this.#scheduleRetry();
        },
      );
    } else if (!state.wanted) {
      this.#topics.delete(topic);
    }
  }

  #subscriptionsLost(affects: (channel: string) => boolean): void {
    const now = Date.now();
    this.#gapReason = this.#outageReason;
    for (const [topic, state] of this.#topics) {
      if (!state.live || !affects(this.#prefix + topic)) continue;
      state.live = false;
      if (state.wanted && state.gapFrom === 0) state.gapFrom = now;
    }
    this.#forgetEchoes((topic) => affects(this.#prefix + topic));
    this.#scheduleRetry();
  }

  #forgetEchoes(affects: (topic: string) => boolean): void {
    for (const [seq, e] of this.#awaitingEcho) if (affects(e.topic)) this.#awaitingEcho.delete(seq);
  }

  /** Retries every topic whose subscription is not what it should be, now. */
  #kick(): void {
    if (this.#closed) return;
    for (const [topic, state] of this.#topics) this.#reconcile(topic, state);
  }

  #scheduleRetry(): void {
    if (this.#retryTimer !== undefined || this.#closed) return;
    // Backoff with jitter, so that many servers do not come back at Redis in step.
    const delay = this.#retryDelay + Math.floor(Math.random() * this.#retryDelay * 0.5);
    this.#retryDelay = Math.min(this.#retryDelay * 2, RETRY_MAX_MS);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#kick();
    }, delay);
    this.#retryTimer.unref();
  }

  #dropPublish(topic: string, reason: string): void {
    this.#stats.droppedPublishes++;
    const now = Date.now();
    const gap = (this.#publishGap ??= { from: now, to: now, count: 0, topics: new Set(), reason });
    gap.to = now;
    gap.count++;
    if (gap.topics.size < MAX_TOPICS_PER_REPORT) gap.topics.add(topic);
  }

  #closePublishGap(): void {
    const gap = this.#publishGap;
    if (!gap) return;
    this.#publishGap = undefined;
    this.#stats.gaps++;
    this.#emitGap({ kind: 'publish', topics: [...gap.topics], from: gap.from, to: gap.to, count: gap.count, reason: gap.reason });
  }

  /** Topics whose gap ended in this turn of the event loop, by start: one report per outage. */
  #endedGaps = new Map<number, string[]>();
  #endedGapsTimer: NodeJS.Immediate | undefined;

  #reportSubscribeGaps(topics: string[], from: number): void {
    const list = this.#endedGaps.get(from);
    if (list) list.push(...topics);
    else this.#endedGaps.set(from, [...topics]);
    this.#endedGapsTimer ??= setImmediate(() => this.#flushSubscribeGaps());
  }

  #flushSubscribeGaps(): void {
    clearImmediate(this.#endedGapsTimer);
    this.#endedGapsTimer = undefined;
    const to = Date.now();
    const ended = [...this.#endedGaps];
    this.#endedGaps.clear();
    for (const [from, topics] of ended) {
      this.#stats.gaps++;
      this.#emitGap({ kind: 'subscribe', topics, from, to, reason: this.#gapReason });
    }
  }

  #emitGap(gap: PubSubGap): void {
    if (!this.#onGap) return;
    try {
      this.#onGap(gap);
    } catch (err) {
      this.#reportError(err as Error);
    }
  }

  #reportError(err: Error): void {
    this.#outageReason ??= err.message;
    if (this.#onError) {
      try {
        this.#onError(err);
      } catch {
        // a hook that throws must not take the connection handling down with it
      }
      return;
    }
    if (this.#warned || this.#closed) return;
    this.#warned = true;
    process.emitWarning(`netloop/redis: ${err.message} (further errors are not shown until Redis is back; pass onError to see them all)`, 'NetloopRedisWarning');
  }
}

/**
 * A topics adapter on Redis pub/sub: `new Upgrader({ pubsub: redisPubSub({ url }) })`, or
 * `redisPubSub({ cluster: { rootNodes: [{ url }] } })` for sharded channels on a Redis Cluster.
 * Needs node-redis (`npm install redis`).
 */
export function redisPubSub(options: RedisPubSubOptions): PubSubAdapter & { readonly stats: Readonly<RedisPubSubStats>; connect(): Promise<void> } {
  return new RedisPubSub(options);
}
