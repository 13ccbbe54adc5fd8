// The WebSocket suites written for the non-blocking mode, run again with the
// servers in the blocking and mixed I/O modes (NETLOOP_TEST_IO_MODE, read by
// test/helpers/ws-peer.js): conformance, the handshake, permessage-deflate
// with context takeover and with work spread over loop turns, and interop
// with ws, undici and Chromium. The same
// code must behave the same in every mode; where the close contract says
// the modes differ, the contract tests (close-contract-*.test.js) check it.
import t from 'tap';
import { fileURLToPath } from 'node:url';

const SUITES = ['websocket-conformance', 'websocket-handshake', 'interop-ws', 'interop-compression', 'websocket-deflate-async', 'interop-undici', 'interop-chromium'];

for (const mode of ['blocking', 'mixed']) {
  for (const suite of SUITES) {
    const file = fileURLToPath(new URL(`./${suite}.test.js`, import.meta.url));
    t.spawn(process.execPath, [file], { env: { ...process.env, NETLOOP_TEST_IO_MODE: mode } }, `${suite} (${mode})`);
  }
}

// The interop suites once more with netloop mounted on a Node http.Server
// (NETLOOP_TEST_MOUNT=http, read by test/helpers/interop-server.js): every
// connection taken over from Node through handleUpgrade, in every I/O mode,
// against ws, undici and Chromium.
const MOUNTED = ['interop-ws', 'interop-undici', 'interop-chromium'];
for (const mode of ['nonblocking', 'blocking', 'mixed']) {
  for (const suite of MOUNTED) {
    const file = fileURLToPath(new URL(`./${suite}.test.js`, import.meta.url));
    t.spawn(process.execPath, [file], { env: { ...process.env, NETLOOP_TEST_IO_MODE: mode, NETLOOP_TEST_MOUNT: 'http' } }, `${suite} (${mode}, on an http.Server)`);
  }
}
