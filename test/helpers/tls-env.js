// NETLOOP_TEST_TLS=1: the WebSocket suites rerun over TLS (wss://), unchanged.
// The runner (test/tls-suites.test.js) makes the test PKI (helpers/certs.js)
// and passes it to each suite's process: the server certificate's directory,
// the CA for every Node client through NODE_EXTRA_CA_CERTS (read at startup,
// so it must be set before the process starts), and the SPKI hash Chromium
// is told to accept.
import fs from 'node:fs';
import path from 'node:path';
import { certs } from './certs.js';

/** The Engine's `tls` option for a suite's server, or undefined when the suite runs in plain TCP. */
export function testTls() {
  if (process.env.NETLOOP_TEST_TLS !== '1') return undefined;
  const dir = process.env.NETLOOP_TEST_TLS_DIR;
  if (dir === undefined || process.env.NODE_EXTRA_CA_CERTS === undefined) {
    throw new Error('NETLOOP_TEST_TLS=1 needs NETLOOP_TEST_TLS_DIR and NODE_EXTRA_CA_CERTS: run the suite through test/tls-suites.test.js');
  }
  return { cert: fs.readFileSync(path.join(dir, 'server.crt'), 'utf8'), key: fs.readFileSync(path.join(dir, 'server.key'), 'utf8') };
}

/** The environment that makes a child process run its suite over TLS. */
export function tlsSuiteEnv() {
  const c = certs();
  return {
    NETLOOP_TEST_TLS: '1',
    NETLOOP_TEST_TLS_DIR: c.dir,
    NETLOOP_TEST_TLS_SPKI: c.spki,
    NODE_EXTRA_CA_CERTS: path.join(c.dir, 'ca.crt'),
  };
}
