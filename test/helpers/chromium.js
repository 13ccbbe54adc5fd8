// Headless Chromium (Debian's /usr/bin/chromium, installed by .ci/run) driven
// by playwright-core, for the interop tests: launched on a fresh profile with
// the flags this machine needs, closed and its profile removed at teardown.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { within } from './interop-server.js';

export const CHROMIUM = '/usr/bin/chromium';

// As root the browser needs --no-sandbox; the background-networking flags
// keep it from reaching for the network, which this machine refuses.
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'];

// NETLOOP_TEST_TLS=1 (helpers/tls-env.js): the browser accepts the test
// server's certificate by its public key's hash, and nothing else.
function tlsArgs() {
  const spki = process.env.NETLOOP_TEST_TLS_SPKI;
  return process.env.NETLOOP_TEST_TLS === '1' && spki !== undefined ? [`--ignore-certificate-errors-spki-list=${spki}`] : [];
}

/** Fails `t` (CI installs the browser, so its absence is an error, not a skip); returns whether it is there. */
export function requireChromium(t) {
  if (fs.existsSync(CHROMIUM)) return true;
  t.fail(`${CHROMIUM} is missing: run .ci/run, or install it with \`apt-get install -y chromium\` (CI installs it)`);
  return false;
}

// npm run test:asan preloads the AddressSanitizer runtime for Node; the
// browser is not ours to sanitize and does not start with it.
function browserEnv() {
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  delete env.ASAN_OPTIONS;
  delete env.LSAN_OPTIONS;
  delete env.UBSAN_OPTIONS;
  return env;
}

/**
 * A browser context on a fresh profile directory (playwright refuses
 * --user-data-dir in launch()'s args; a persistent context on a new
 * directory is the same thing). Closed, then the profile removed, at t's teardown.
 */
export async function launchChromium(t, ms = 15000) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'netloop-chromium-'));
  let context;
  t.teardown(async () => {
    await context?.close(); // the browser first, then its profile
    fs.rmSync(profile, { recursive: true, force: true });
  });
  context = await within(
    chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, timeout: ms, env: browserEnv(), args: [...ARGS, ...tlsArgs()] }),
    ms,
    'chromium to launch',
  );
  return context;
}
