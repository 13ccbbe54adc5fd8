// The batch layout is defined twice, in native/batch.h and lib/native.ts:
// the addon's exported constants must equal the TypeScript ones.
import t from 'tap';
import * as native from '../dist/native.js';
import { Engine } from '../dist/index.js';

const { binding } = native;
const LAYOUT = /^(RECORD_INTS|REC_|REASON_|CMD_|IO_|TLS_ERR_)/;

t.test('binding.constants equal the constants of dist/native.js', async (t) => {
  const ts = Object.fromEntries(Object.entries(native).filter(([k]) => LAYOUT.test(k)));
  const addon = Object.fromEntries(Object.entries(binding.constants).filter(([k]) => LAYOUT.test(k)));
  t.same(Object.keys(addon).sort(), Object.keys(ts).sort(), 'the same names on both sides');
  for (const [k, v] of Object.entries(ts)) {
    t.equal(typeof v, 'number', `${k} is a number`);
    t.equal(binding.constants[k], v, `${k} = ${v}`);
  }
  // The names this project relies on are all there (a rename on both sides
  // would otherwise pass the comparison above).
  const expected = {
    RECORD_INTS: 5,
    REC_OPEN: 1,
    REC_DATA: 2,
    REC_CLOSE: 3,
    REC_DRAIN: 4,
    REC_DIAL_FAIL: 5,
    REC_TLS_FAIL: 6,
    REASON_EOF: 1,
    REASON_ERRNO: 2,
    REASON_READ_TIMEOUT: 3,
    REASON_WRITE_TIMEOUT: 4,
    REASON_OVERFLOW: 5,
    REASON_LOCAL: 6,
    REASON_STOP: 7,
    REASON_BUDGET: 8,
    REASON_TLS_TRUNCATED: 9,
    REASON_TLS: 10,
    TLS_ERR_HANDSHAKE: 1,
    TLS_ERR_TIMEOUT: 2,
    TLS_ERR_TOO_LARGE: 3,
    TLS_ERR_EOF: 4,
    TLS_ERR_PROTOCOL: 5,
    TLS_ERR_VERIFY: 100,
    CMD_WRITE: 1,
    CMD_WRITE_REF: 2,
    CMD_CLOSE: 3,
    CMD_DEADLINE: 4,
    IO_NONBLOCKING: 0,
    IO_BLOCKING: 1,
    IO_MIXED: 2,
  };
  t.same(ts, expected, 'the documented layout (batch.h)');
  const others = Object.keys(binding.constants).filter((k) => !LAYOUT.test(k));
  t.same(others.sort(), ['ADOPTED_LISTENER', 'MAX_EVENTS'], 'the other constants are ADOPTED_LISTENER and MAX_EVENTS');
    t.equal(binding.constants.ADOPTED_LISTENER, native.ADOPTED_LISTENER, 'ADOPTED_LISTENER (an OPEN record of an adopted connection)');
  t.equal(binding.constants.MAX_EVENTS, 1024, 'MAX_EVENTS (the cap of maxEventsPerIteration)');
});

t.test('the record types, close reasons and commands are distinct', async (t) => {
  for (const prefix of ['REC_', 'REASON_', 'CMD_']) {
    const values = Object.entries(binding.constants)
      .filter(([k]) => k.startsWith(prefix))
      .map(([, v]) => v);
    t.equal(new Set(values).size, values.length, `${prefix}* values are distinct`);
    t.ok(
      values.every((v) => Number.isInteger(v) && v > 0),
      `${prefix}* values are positive integers (0 is never a valid type)`,
    );
  }
});

t.test('the backend', async (t) => {
  t.type(binding.EngineHandle, 'function', 'EngineHandle is exported');
  if (process.platform === 'linux') {
    t.equal(binding.backend, 'epoll', 'epoll on Linux');
  } else {
    t.equal(binding.backend, 'kqueue', 'kqueue elsewhere');
  }
  t.equal(Engine.backend, binding.backend, 'Engine.backend reports it');
});
