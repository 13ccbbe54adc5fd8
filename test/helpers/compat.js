// Helpers of the netloop/ws tests (test/compat-*.test.js): the I/O modes,
// waiting for events with a bound, and closing what a test opened.
import { once } from 'node:events';

/** Every I/O mode; 'mixed' with one blocking slot, so that a test's second connection is non-blocking. */
export const MODES = [
  { name: 'nonblocking', engine: { ioMode: 'nonblocking' } },
  { name: 'blocking', engine: { ioMode: 'blocking' } },
  { name: 'mixed', engine: { ioMode: 'mixed', maxBlockingOnline: 1 } },
];

/** Resolves with an event's arguments, or rejects after `ms`. */
export async function next(emitter, event, ms = 5000) {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    return await once(emitter, event, { signal: ac.signal });
  } catch (err) {
    if (ac.signal.aborted) throw new Error(`no '${event}' within ${ms} ms`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when `cond()` holds, polling; rejects after `ms`. */
export async function until(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The port of a listening http.Server or WebSocketServer. */
export const portOf = (server) => server.address().port;

/** Closes a WebSocketServer (netloop/ws or ws) and waits for its 'close'. */
export function closeWss(wss) {
  return new Promise((resolve) => wss.close(() => resolve()));
}

/** Closes an http.Server, its idle keep-alive connections too. */
export function closeHttp(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}

/** netloop/ws: closes the server and waits for its engine to stop (the last connection gone). */
export async function closeNetloopWss(wss, ms = 8000) {
  await closeWss(wss);
  await until(() => !wss.netloopEngine.running, ms, 'the engine to stop');
}
