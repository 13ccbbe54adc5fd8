// Bounded zlib work per loop turn (DESIGN.md, "Limits": "compression work
// bounded per loop turn or off the JS thread").
//
// Every permessage-deflate operation is a job run in slices (a slice inflates
// at most STEP_BYTES of output, or compresses at most STEP_BYTES of input).
// The slices of all the jobs of a JS thread share one budget of
// TURN_BUDGET_MS per turn of the event loop: a job submitted while the budget
// lasts runs at once, in the caller's stack, and when it finishes there (any
// message of ordinary size) its result is returned synchronously, exactly as
// before; what does not fit goes on in later turns (at most MAX_ACTIVE jobs
// taking slices in round robin, the others waiting in order): a setImmediate
// callback works through, TURN_BUDGET_MS at a time, so that the poll phase,
// and with it every other connection's reads and writes, comes around
// between two slices.
//
// Why here and not on libuv's thread pool, as ws does (measured on this
// machine, Node 20, `node bench/micro/deflate-offload.js`; two runs, at load
// averages of about 5 and 14 on 2 cores, so read ratios, not absolutes):
//   - a 2.4 KB JSON message compressed and inflated back cost 6.5 / 31.6 us
//     synchronously, 184 / 634 us through zlib streams (a thread-pool round
//     trip each way): async costs 20-28 times more for the messages most
//     servers send, and those stay synchronous here;
//   - a 16 KiB message inflating to 16 MiB kept the JS thread busy 17-25 /
//     51-123 ms in one go, 23-88 ms in slices in the second run (all of it
//     on this thread, none of it in one stretch); through an async stream
//     with zlib's default 16 KiB chunks
//     (what ws uses) 39-57 / 18-62 ms (a 'data' event and a Buffer per
//     16 KiB, then a concat). With 256 KiB chunks the stream needed only
//     5-13 ms of this thread: for the rare huge message the thread pool is
//     cheaper, but the chunk is an output buffer every stream keeps, 256 KiB
//     more per connection and direction;
//   - the thread pool is shared with fs and dns, 4 threads by default, on a
//     2-core machine here.
// The bound is what matters for the other connections, and a slice gives it
// without either cost. What it does not give is a second core: scale with one
// engine per worker thread (DESIGN.md, "Context-aware").
//
// Per-connection order is the callers' business (the receiver stops
// delivering while one of its messages is inflating, the connection queues
// its writes behind a message being compressed); this file only guarantees
// that a job's done() is called once, after its last slice, unless it was
// cancelled first.
import { performance } from 'node:perf_hooks';

/**
 * zlib work per loop turn, across all connections of this thread, before
 * the rest waits for the next turn. 2 ms keeps the added delay of other
 * connections' round trips in the low milliseconds while a loop turn still
 * does a useful amount of compression: about 1.5 MiB of inflation here.
 */
export const TURN_BUDGET_MS = 2;

/**
 * Bytes of output a slice of inflation may produce, or of input a slice of
 * compression may consume: about 0.2 to 0.4 ms of zlib here, small against
 * the budget, so the budget is overshot by little.
 */
export const STEP_BYTES = 256 * 1024;

/** One operation run in slices. */
export interface ZlibJob {
  /** Runs one bounded slice; true when the job has finished (done() is called next). Exceptions end the job too. */
  step(): boolean;
  /** Called once, after the last slice, with the exception a slice threw (if any). */
  done(err: unknown): void;
  /** Set by cancel(); a cancelled job is dropped without further slices or done(). */
  cancelled: boolean;
  /** A compression: it ends by giving back what it holds (a message to send), so it goes before waiting inflations. */
  readonly compressing: boolean;
}

/**
 * Jobs that go on over several turns take their slices in round robin, at
 * most MAX_ACTIVE of them at a time, the others waiting in order,
 * compressions first. Each holds its output so far (an inflation up to the
 * message length limit, 16 MiB by default, and as much again while it is
 * copied out). Measured with 30 messages of 16 MiB arriving together and
 * echoed (bench/micro/deflate-stall.js): all 30 in flight at once peaked at
 * 914 MiB of RSS, 4 at a time at 560 MiB; the synchronous codec, one at a
 * time, at 170 MiB. Four keep short messages from waiting behind one long
 * one. Compressions go first because each delivered message an application
 * echoes waits in memory until it is compressed and sent, while a waiting
 * inflation holds only its compressed bytes.
 */
export const MAX_ACTIVE = 4;

const active: ZlibJob[] = [];
let next = 0; // the active job whose turn it is

/** Jobs waiting their turn, in order: an array with a head index, compacted once the head passes half of it. */
class Fifo {
  #jobs: ZlibJob[] = [];
  #head = 0;

  push(job: ZlibJob): void {
    this.#jobs.push(job);
  }

  /** The next job that was not cancelled, or undefined. */
  shift(): ZlibJob | undefined {
    while (this.#head < this.#jobs.length) {
      const job = this.#jobs[this.#head]!;
      this.#jobs[this.#head++] = undefined as unknown as ZlibJob;
      if (!job.cancelled) return job;
    }
    this.#jobs.length = 0;
    this.#head = 0;
    return undefined;
  }

  get empty(): boolean {
    return this.#head === this.#jobs.length;
  }

  compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#jobs.length) {
      this.#jobs = this.#jobs.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Jobs not cancelled. */
  count(): number {
    let n = 0;
    for (let i = this.#head; i < this.#jobs.length; i++) if (!this.#jobs[i]!.cancelled) n++;
    return n;
  }
}

const waitingCompressions = new Fifo();
const waitingInflations = new Fifo();

let used = 0; // ms of slices in this loop turn
let armed = false;
let running = 0; // jobs submitted and neither finished nor cancelled (for tests and monitoring)

function arm(): void {
  if (armed) return;
  armed = true;
  setImmediate(onTurn);
}

/** Runs one slice of `job`, counted against the budget; true when it finished (done() has been called). */
function slice(job: ZlibJob): boolean {
  const t0 = performance.now();
  let finished: boolean;
  let err: unknown = undefined;
  try {
    finished = job.step();
  } catch (e) {
    finished = true;
    err = e;
  }
  used += performance.now() - t0;
  if (!finished) return false;
  running--;
  job.done(err);
  return true;
}

/**
 * Starts `job`: at once if this loop turn's budget allows, otherwise (or for
 * what does not fit) in later turns. Returns true when it finished
 * synchronously, in which case done() has been called before this returns.
 */
export function submit(job: ZlibJob): boolean {
  running++;
  // The budget is given back at the next turn (onTurn resets it).
  arm();
  while (used < TURN_BUDGET_MS) if (slice(job)) return true;
  // It has started (it holds output): among the active ones if there is room.
  if (active.length < MAX_ACTIVE) active.push(job);
  else (job.compressing ? waitingCompressions : waitingInflations).push(job);
  return false;
}

/** Drops `job` (no more slices, no done()). */
export function cancel(job: ZlibJob): void {
  if (job.cancelled) return;
  job.cancelled = true;
  running--;
}

/** The check phase of a loop turn: a new budget, spent on the active jobs in round robin. */
function onTurn(): void {
  armed = false;
  used = 0;
  try {
    while (used < TURN_BUDGET_MS) {
      while (active.length < MAX_ACTIVE) {
        const job = waitingCompressions.shift() ?? waitingInflations.shift();
        if (job === undefined) break;
        active.push(job);
      }
      if (active.length === 0) break;
      if (next >= active.length) next = 0;
      const job = active[next]!;
      // One slice, then the next job: a long inflation does not hold up
      // short ones. A done() may submit more work (an echo), which runs at
      // once if the budget allows, or cancel other jobs.
      if (job.cancelled || slice(job)) active.splice(next, 1);
      else next++;
    }
  } finally {
    // Also when a done() threw (a user handler): the other jobs still run.
    waitingCompressions.compact();
    waitingInflations.compact();
    if (active.length > 0 || !waitingCompressions.empty || !waitingInflations.empty) arm();
  }
}

/** Jobs of this thread not yet finished or cancelled, and of those, waiting for a later turn. For tests and monitoring. */
export function zlibWork(): { running: number; queued: number } {
  let queued = waitingCompressions.count() + waitingInflations.count();
  for (const job of active) if (!job.cancelled) queued++;
  return { running, queued };
}
