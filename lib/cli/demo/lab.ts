// The close lab of `netloop demo`: a page asks for rows of the close contract in some I/O modes,
// and compareModes plays them (its own engines on ephemeral loopback ports, a raw client per
// row, nothing shared with the demo's engine). Runs are serialized and the queue is short, so
// that what pages can ask of the server is bounded: a run is at most every row in every column
// (about 5 s on an idle machine).
import type { IoMode } from '../../engine.js';
import { CLOSE_EVENTS, compareModes, type ComparisonRow } from '../compare.js';

export const LAB_MODES: readonly IoMode[] = ['nonblocking', 'blocking', 'mixed'];

/** The rows the page offers first: peer 1000, peer 1001, a protocol error, a dropped TCP connection, a read timeout, a server close. */
export const FEATURED_EVENTS: readonly string[] = [
  'peer sends close 1000',
  'peer sends close 1001',
  'invalid UTF-8 in a text message',
  'TCP reset',
  'read deadline expired',
  'server writeClose(1000), peer answers',
];

// Runs waiting behind the running one. Past it a page is told the lab is busy: a queue of
// five full runs is already half a minute of waiting.
const MAX_WAITING = 4;

export interface LabRequest {
  events: string[];
  modes: IoMode[];
}

/** A page's request, checked: the request, or why it is refused. */
export function parseLabRequest(msg: Readonly<Record<string, unknown>>): LabRequest | string {
  const { events, modes } = msg;
  if (!Array.isArray(events) || events.length === 0) return 'events: a non-empty list of rows of the contract';
  const unknownEvent = events.find((e) => !CLOSE_EVENTS.includes(e as string));
  if (unknownEvent !== undefined) return `unknown event ${JSON.stringify(unknownEvent)}`;
  if (!Array.isArray(modes) || modes.length === 0) return 'modes: a non-empty list of nonblocking, blocking, mixed';
  const unknownMode = modes.find((m) => !LAB_MODES.includes(m as IoMode));
  if (unknownMode !== undefined) return `unknown mode ${JSON.stringify(unknownMode)}`;
  return { events: [...new Set(events as string[])], modes: [...new Set(modes as IoMode[])] };
}

export class CloseLab {
  #tail: Promise<void> = Promise.resolve();
  #pending = 0;
  #stopped = false;
  /** Runs finished since the start, for the page's figures. */
  runs = 0;

  /** Runs queued or running. */
  get pending(): number {
    return this.#pending;
  }

  /**
   * Queues a run; onRow is called with each row as it is played. Null when the queue is full;
   * otherwise how many runs are ahead of it, and its completion (rejects with what went wrong).
   */
  run(req: LabRequest, onRow: (row: ComparisonRow) => void): { ahead: number; done: Promise<void> } | null {
    if (this.#pending > MAX_WAITING) return null;
    const ahead = this.#pending++;
    const done = this.#tail
      .then(async () => {
        if (this.#stopped) throw new Error('the demo is stopping');
        await compareModes(onRow, req);
        this.runs++;
      })
      .finally(() => this.#pending--);
    this.#tail = done.catch(() => {});
    return { ahead, done };
  }

  /** Refuses what is queued and waits for the running run (its engines stop on their own). */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#tail;
  }
}
