// The interop suites rerun unchanged over TLS (NETLOOP_TEST_TLS=1, read by
// test/helpers/interop-server.js and helpers/chromium.js): ws, undici and
// Chromium talk wss:// to the engine's native TLS, in every I/O mode, and
// every assertion of the plain run must hold. The test PKI is made here
// (helpers/certs.js) and handed to each suite's process (helpers/tls-env.js).
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { tlsSuiteEnv } from './helpers/tls-env.js';

const env = tlsSuiteEnv();
const SUITES = ['interop-ws', 'interop-undici', 'interop-chromium'];
for (const mode of ['nonblocking', 'blocking', 'mixed']) {
  for (const suite of SUITES) {
    const file = fileURLToPath(new URL(`./${suite}.test.js`, import.meta.url));
    t.spawn(process.execPath, [file], { env: { ...process.env, ...env, NETLOOP_TEST_IO_MODE: mode } }, `${suite} over TLS (${mode})`);
  }
}
