// The Redis side of the adapter: loading node-redis (an optional peer dependency, loaded only
// when a Redis adapter is made) and the two topologies behind one small contract.
//
// - single node: two connections, one that publishes and one that subscribes (with RESP2 a
//   subscribed connection takes no other command; with two, a publish never waits behind a
//   resubscription either);
// - cluster: node-redis's cluster client, which keeps one subscriber connection per master for
//   sharded channels, follows MOVED and moves the listeners of a slot that migrates.
//
// Both are created with `disableOfflineQueue`: while a connection is down, a command fails at
// once instead of waiting in an unbounded queue. The adapter decides what a failure means.
import { createRequire } from 'node:module';
import { NetloopError } from '../errors.js';
import { clusterSlot } from './redis-slot.js';

/** A listener in node-redis's buffer mode: the message and the channel as Buffers. */
export type BufferListener = (message: Buffer, channel: Buffer) => void;

/** The few members of a node-redis client (v5 or v6) the adapter uses. */
interface NodeRedisClient {
  readonly isReady: boolean;
  connect(): Promise<unknown>;
  duplicate(options?: Record<string, unknown>): NodeRedisClient;
  on(event: string, listener: (...args: any[]) => void): unknown;
  publish(channel: string, message: Buffer): Promise<unknown>;
  sPublish(channel: string, message: Buffer): Promise<unknown>;
  subscribe(channel: string, listener: BufferListener, bufferMode: true): Promise<unknown>;
  sSubscribe(channel: string, listener: BufferListener, bufferMode: true): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  sUnsubscribe(channel: string): Promise<unknown>;
  close(): Promise<unknown>;
  destroy(): void;
}

interface NodeRedisMaster {
  host?: string;
  port?: number;
  address?: string;
  client?: { isReady: boolean };
  pubSub?: { client: { isReady: boolean } };
}

interface NodeRedisCluster extends Omit<NodeRedisClient, 'duplicate' | 'isReady'> {
  /** v6; v5's cluster client has only isOpen. */
  readonly isReady?: boolean;
  readonly isOpen: boolean;
  readonly slots: Array<{ master: NodeRedisMaster } | undefined>;
  readonly pubSubNode?: { address?: string; client: { isReady: boolean } };
}

interface NodeRedisModule {
  createClient(options: Record<string, unknown>): NodeRedisClient;
  createCluster(options: Record<string, unknown>): NodeRedisCluster;
}

let nodeRedis: NodeRedisModule | undefined;

/** node-redis, loaded on first use; a clear error when it is not installed. */
export function loadNodeRedis(): NodeRedisModule {
  if (nodeRedis) return nodeRedis;
  try {
    nodeRedis = createRequire(import.meta.url)('redis') as NodeRedisModule;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && /'redis'/.test(String((err as Error).message))) {
      throw new NetloopError(
        'NETLOOP_REDIS_MISSING',
        "netloop/redis needs node-redis, an optional peer dependency that is not installed: run `npm install redis`",
      );
    }
    throw err;
  }
  if (typeof nodeRedis.createClient !== 'function' || typeof nodeRedis.createCluster !== 'function') {
    nodeRedis = undefined;
    throw new NetloopError('NETLOOP_REDIS_MISSING', "the installed 'redis' package has no createClient/createCluster: netloop/redis needs node-redis v5 or v6");
  }
  return nodeRedis;
}

/** What a topology tells the adapter about its connections. */
export interface ConnectionEvents {
  /** Something failed (a connection error, a failed reconnection attempt). */
  error(err: Error): void;
  /**
   * A connection that carried subscriptions failed: `affects(channel)` says which channels rode
   * on it; whatever Redis sent them since is lost.
   */
  subscriptionsLost(affects: (channel: string) => boolean): void;
  /** A subscriber connection is ready again (node-redis resubscribed what it knew). */
  subscriberReady(): void;
}

export interface Connections {
  connect(): Promise<void>;
  /** True when a publish on `channel` can be sent now (it may still fail on the way). */
  canPublish(channel: string): boolean;
  publish(channel: string, message: Buffer): Promise<unknown>;
  /** Subscribes (idempotent for the same listener); resolves once Redis confirmed it. */
  subscribe(channel: string, listener: BufferListener): Promise<unknown>;
  unsubscribe(channel: string): Promise<unknown>;
  /** True when the connection that carries `channel`'s subscription is up. */
  subscriberUp(channel: string): boolean;
  close(): Promise<void>;
}

export interface SingleNodeOptions {
  url?: string;
  clientOptions?: Record<string, unknown>;
  sharded: boolean;
  pingInterval: number;
}

export interface ClusterOptions {
  clusterOptions: Record<string, unknown>;
  sharded: boolean;
  pingInterval: number;
}

const RESILIENT = { disableOfflineQueue: true };

async function closeClient(client: { close(): Promise<unknown>; destroy(): void }, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  // close() waits for replies still due; a Redis that is away would make it wait for ever.
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  await Promise.race([client.close().catch(() => undefined), timeout]);
  clearTimeout(timer);
  try {
    client.destroy();
  } catch {
    // already closed
  }
}

export function singleNode(opts: SingleNodeOptions, events: ConnectionEvents): Connections {
  const redis = loadNodeRedis();
  const base = { ...opts.clientOptions, ...(opts.url !== undefined ? { url: opts.url } : {}), ...RESILIENT };
  const publisher = redis.createClient(base);
  // PING on the subscriber finds a connection that died silently (a network drop with no reset).
  const subscriber = publisher.duplicate({ ...base, pingInterval: opts.pingInterval });
  let subscriberWasReady = false;
  publisher.on('error', (err: Error) => events.error(err));
  subscriber.on('error', (err: Error) => {
    events.error(err);
    if (subscriberWasReady && !subscriber.isReady) {
      subscriberWasReady = false;
      events.subscriptionsLost(() => true);
    }
  });
  subscriber.on('ready', () => {
    subscriberWasReady = true;
    events.subscriberReady();
  });
  const pub = opts.sharded ? publisher.sPublish.bind(publisher) : publisher.publish.bind(publisher);
  return {
    async connect() {
      await Promise.all([publisher.connect(), subscriber.connect()]);
    },
    canPublish: () => publisher.isReady,
    publish: pub,
    subscribe: (channel, listener) =>
      opts.sharded ? subscriber.sSubscribe(channel, listener, true) : subscriber.subscribe(channel, listener, true),
    unsubscribe: (channel) => (opts.sharded ? subscriber.sUnsubscribe(channel) : subscriber.unsubscribe(channel)),
    subscriberUp: () => subscriber.isReady,
    async close() {
      await Promise.all([closeClient(publisher, 2000), closeClient(subscriber, 2000)]);
    },
  };
}

function addressOf(node: { host?: string; port?: number; address?: string } | undefined): string | undefined {
  if (!node) return undefined;
  if (node.host !== undefined && node.port !== undefined) return `${node.host}:${node.port}`;
  return node.address;
}

export function cluster(opts: ClusterOptions, events: ConnectionEvents): Connections {
  const redis = loadNodeRedis();
  const userDefaults = (opts.clusterOptions.defaults ?? {}) as Record<string, unknown>;
  const c = redis.createCluster({
    ...opts.clusterOptions,
    defaults: { ...userDefaults, ...RESILIENT, pingInterval: opts.pingInterval },
  });
  // The master that serves a channel now: for sharded channels, the one owning its slot; for
  // classic channels, the one node the cluster client subscribes on.
  const masterOf = (channel: string): NodeRedisMaster | undefined =>
    opts.sharded ? c.slots[clusterSlot(channel)]?.master : undefined;
  const clusterUp = () => c.isReady ?? c.isOpen;
  c.on('error', (err: Error) => events.error(err));
  c.on('node-error', (err: Error, node: { host?: string; port?: number }) => {
    events.error(err);
    const failed = addressOf(node);
    if (opts.sharded) events.subscriptionsLost((channel) => addressOf(masterOf(channel)) === failed);
    else if (addressOf(c.pubSubNode) === failed || c.pubSubNode === undefined) events.subscriptionsLost(() => true);
  });
  // node-redis reports a node's readiness once only (its first 'ready'); the adapter retries
  // its subscriptions with backoff instead and asks `subscriberUp` before it believes them.
  c.on('sharded-channel-moved-error', (err: Error) => events.error(err));
  return {
    async connect() {
      await c.connect();
    },
    canPublish(channel) {
      // The connection to the master that takes this publish, when node-redis has one yet.
      const client = (opts.sharded ? masterOf(channel) : undefined)?.client;
      return client ? client.isReady : clusterUp();
    },
    publish: opts.sharded ? c.sPublish.bind(c) : c.publish.bind(c),
    subscribe: (channel, listener) => (opts.sharded ? c.sSubscribe(channel, listener, true) : c.subscribe(channel, listener, true)),
    unsubscribe: (channel) => (opts.sharded ? c.sUnsubscribe(channel) : c.unsubscribe(channel)),
    subscriberUp(channel) {
      if (!clusterUp()) return false;
      const client = opts.sharded ? masterOf(channel)?.pubSub?.client : c.pubSubNode?.client;
      return client?.isReady === true;
    },
    async close() {
      await closeClient(c, 2000);
    },
  };
}
