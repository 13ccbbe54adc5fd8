// Giving back the memory a burst of connections leaves behind.
//
// Accepting thousands of connections in a burst makes V8 grow its young
// generation: every connection's objects survive a scavenge or two, and V8
// doubles the young generation while many bytes survive (up to 16 MiB per
// semi-space here). Once the burst is over the connections sit idle, little
// is allocated, no garbage collection runs, and those megabytes stay
// resident. Before this, 15,000 idle WebSocket connections cost 1,806 B of
// RSS each (`npm run bench -- ws-hold`, README of the previous round), and
// v8.getHeapSpaceStatistics() showed a 16 MiB new space after the burst,
// about 1,100 B of it. A moderate memory-pressure notification makes V8
// collect with memory reduction, which shrinks the young generation back and
// returns its pages (test/engine-memory.test.js watches it shrink); with it
// and the changes after it, 714 B each (`npm run bench -- hold`, README). It
// is what Go's debug.FreeOSMemory() is to nbio servers.
import { binding } from './native.js';

/**
 * Asks V8 to collect garbage and give memory back to the system now
 * (`MemoryPressureNotification`): moderate runs an incremental collection
 * with memory reduction (a few ms on this thread); critical collects
 * everything at once (longer pause). Affects the whole process (its V8
 * isolate), not one engine. Engines call it on their own after a burst of
 * connections (EngineOptions.releaseMemoryAfterBurst). Also hands the C
 * allocator's free pages back (malloc_trim, on glibc).
 */
export function releaseMemory(level: 'moderate' | 'critical' = 'moderate'): void {
  if (level !== 'moderate' && level !== 'critical') throw new TypeError(`releaseMemory(level): level must be 'moderate' or 'critical'`);
  binding.releaseMemory(level === 'critical');
  // The C heap's free pages too (write queues of closed connections).
  binding.trimMemory();
}

// One notification per process at most this often, however many engines.
const MIN_INTERVAL_MS = 5000;
let lastAutoRelease = 0;
let autoReleases = 0;

/** @internal How many releases the engines of this thread made after bursts (tests). */
export function autoReleaseCount(): number {
  return autoReleases;
}

/**
 * Counts the connections an engine opens; once `threshold` have opened and
 * then none for `quietMs`, the burst is over: one moderate release.
 */
export class BurstWatcher {
  #count = 0;
  #lastOpen = 0;
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;
  readonly #check = (): void => this.#onTimer();

  constructor(
    readonly threshold: number,
    readonly quietMs = 1000,
  ) {}

  /** A connection opened at `now` (ms). */
  opened(now: number): void {
    this.#lastOpen = now;
    if (++this.#count >= this.threshold && this.#timer === undefined) this.#arm(this.quietMs);
  }

  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#check, ms);
    this.#timer.unref(); // never keeps the process alive
  }

  #onTimer(): void {
    this.#timer = undefined;
    const now = Date.now();
    const quiet = now - this.#lastOpen;
    if (quiet < this.quietMs) {
      this.#arm(this.quietMs - quiet); // still arriving
      return;
    }
    if (now - lastAutoRelease < MIN_INTERVAL_MS) {
      this.#arm(MIN_INTERVAL_MS - (now - lastAutoRelease));
      return;
    }
    lastAutoRelease = now;
    autoReleases++;
    this.#count = 0;
    binding.releaseMemory(false);
  }
}

// A write-queue or message peak smaller than this is not worth a collection:
// the allocator's free lists absorb it and the next burst reuses them.
export const PEAK_THRESHOLD = 32 * 1024 * 1024;
const PEAK_CHECK_MS = 1000;

/**
 * Gives back what a peak of queued or held bytes left behind (peers that
 * stopped reading, large messages in flight, an attack). The bytes were C
 * heap (write queues) and ArrayBuffers (messages): once they are freed, glibc
 * keeps the pages in its arenas, and a long-lived process stays at its peak
 * RSS. When the engine's bytes in flight went above 32 MiB and have then
 * been back under a quarter of that for a second: one moderate V8 release
 * (which frees the dead ArrayBuffers), then malloc_trim once that collection
 * had time to run.
 */
export class PeakWatcher {
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;
  #lowSince = 0;
  /** Memory releases made by this watcher (tests). */
  releases = 0;

  constructor(readonly inFlight: () => number) {}

  /** The bytes in flight may have grown: watch them until they are back down. */
  grew(): void {
    if (this.#timer !== undefined || this.inFlight() < PEAK_THRESHOLD) return;
    this.#lowSince = 0;
    this.#arm();
  }

  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    this.#timer = setTimeout(() => this.#check(), PEAK_CHECK_MS);
    this.#timer.unref();
  }

  #check(): void {
    const now = Date.now();
    if (this.inFlight() >= PEAK_THRESHOLD / 4) {
      this.#lowSince = 0;
      this.#arm();
      return;
    }
    if (this.#lowSince === 0) {
      this.#lowSince = now;
      this.#arm();
      return;
    }
    this.#timer = undefined;
    this.releases++;
    binding.releaseMemory(false);
    // The collection V8 starts frees the ArrayBuffers; trim after it.
    setTimeout(() => binding.trimMemory(), 250).unref();
  }
}
