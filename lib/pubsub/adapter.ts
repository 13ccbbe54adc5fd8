// The pub/sub adapter interface: how topics reach beyond one engine (other
// worker processes, other machines through Redis). A layer above the engine:
// the engine and the upgrader only call these five methods, and never wait
// for them.
import type { MessageType } from '../websocket/opcodes.js';

export type { MessageType } from '../websocket/opcodes.js';

/**
 * Delivers a message to this server's own subscribers of `topic`. `origin`
 * is what publish() received (a publish made here, excluding its publishing
 * connection), handed back unchanged; undefined for a message from elsewhere.
 */
export type PubSubDeliver = (topic: string, data: Uint8Array, type: MessageType, origin?: object) => void;

/**
 * Carries publishes between servers (or worker processes). One adapter
 * serves one topic owner: an Upgrader (`new Upgrader({ pubsub })`) or an
 * Engine's raw TCP topics (`new Engine({ pubsub })`).
 *
 * Contract:
 * - Every method returns at once; the engine never awaits one (close()
 *   aside). Whatever it sends goes out asynchronously.
 * - A method that throws is reported (the owner's onPubSubError, else a
 *   process warning) and the server goes on: subscriptions and local
 *   deliveries do not depend on the adapter.
 * - Delivery is at most once: an adapter that loses its link (Redis restarts)
 *   says so through its own hooks, not by throwing here.
 */
export interface PubSubAdapter {
  /**
   * Called once, when the owner starts using the adapter (its engine
   * starts); `deliver` delivers to the local subscribers.
   */
  attach(deliver: PubSubDeliver): void;
  /** The first local subscriber of `topic` appeared: start receiving it. */
  subscribe(topic: string): void;
  /** The last local subscriber of `topic` left: stop receiving it. */
  unsubscribe(topic: string): void;
  /**
   * A publish made on this server. Return false to have the owner deliver
   * it to the local subscribers now (the adapter only carries it to the
   * others); return true when the adapter delivers it locally itself, later
   * (e.g. when it comes back from Redis, for one order across servers): it
   * must then pass `origin` back to deliver() so that a connection's own
   * publish skips that connection. `data` is the adapter's to keep.
   */
  publish(topic: string, data: Uint8Array, type: MessageType, origin?: object): boolean;
  /** The owner's engine stopped: release everything. */
  close(): Promise<void>;
}
