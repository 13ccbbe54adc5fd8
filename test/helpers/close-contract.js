// The close reporting contract (DESIGN.md, "Close reporting contract") as
// data, and the runner that plays it against one I/O mode: every row over
// real loopback sockets against Node's own `net` socket. For each row the
// scenario is played and the runner asserts what onClose receives (class,
// code, message, closeCode), the close handler's calls, the exact bytes the
// server put on the wire and how the TCP connection ended, and
// conn.closeInfo, which must be the same in every mode. Every row also
// checks that onClose came exactly once and that the connection refuses
// writes after it. Used by test/close-contract-*.test.js and
// test/websocket-close-contract.test.js.
import { performance } from 'node:perf_hooks';
import { ProtocolError, CloseError, EOFError, SysError, TimeoutError, NetClosedError } from '../../dist/index.js';
import { hex, cframe, cclose, sframe, sclose, Peer, startServer, closedOnce } from './ws-peer.js';

// What the blocking column says where it differs from the non-blocking one.
const NET_CLOSED = { cls: NetClosedError, code: 'NETLOOP_CLOSED', message: 'use of closed network connection' };
const IO_TIMEOUT = { cls: TimeoutError, code: 'NETLOOP_TIMEOUT', message: 'i/o timeout' };
const EOF = { cls: EOFError, code: 'NETLOOP_EOF', message: 'EOF' };

const text = (s) => Buffer.from(s).toString('hex');

/** onClose hook of every server here: what writeMessage does inside onClose. */
export function probeWrites(c, err, rec) {
  try {
    c.writeMessage('text', 'from onClose');
    rec.writeInOnClose = 'no exception';
  } catch (e) {
    rec.writeInOnClose = e;
  }
}

/**
 * The rows. `err`: null, 'user' (the very error the server closed with), or
 * the expected { cls, code, message, closeCode?, reason? }. `wire`: the
 * server's bytes after the 101, in hex. `end`: how the TCP connection
 * ended for the peer ('fin', 'rst', or 'any' when the peer itself tore it
 * down). `info`: closeInfo without `error` (checked to be onClose's err).
 */
export const ROWS = [
  {
    event: 'peer sends close 1000',
    run: async ({ peer }) => {
      peer.write(cclose(1000, 'bye'));
      await peer.waitEnd();
    },
    err: null,
    blocking: NET_CLOSED,
    handler: [[1000, 'bye']],
    wire: '880203e8',
    end: 'fin',
    info: { code: 1000, reason: 'bye', wasClean: true, initiator: 'peer' },
  },
  {
    event: 'peer sends close 1000 and FIN at once',
    run: async ({ peer }) => {
      peer.write(cclose(1000, 'bye'));
      peer.sock.end();
      await peer.waitClosed();
    },
    err: null,
    blocking: EOF, // the reader saw the FIN before any close of ours
    handler: [[1000, 'bye']],
    wire: '880203e8', // the echo is attempted, and on loopback it arrives
    end: 'fin',
    info: { code: 1000, reason: 'bye', wasClean: true, initiator: 'peer' },
  },
  ...[
    [1001, 'going away'],
    [3000, 'registered'],
    [4999, 'private'],
    [1014, ''],
  ].map(([code, reason]) => ({
    event: `peer sends close ${code}`,
    run: async ({ peer }) => {
      peer.write(cclose(code, reason));
      await peer.waitEnd();
    },
    err: { cls: CloseError, code: 'NETLOOP_WS_CLOSE', message: `websocket: close ${code}${reason ? ' ' + reason : ''}`, closeCode: code, reason },
    handler: [[code, reason]],
    wire: hex(sclose(code)),
    end: 'fin',
    info: { code, reason, wasClean: true, initiator: 'peer' },
  })),
  {
    event: 'peer sends an empty close',
    run: async ({ peer }) => {
      peer.write(cclose(undefined));
      await peer.waitEnd();
    },
    err: { cls: CloseError, code: 'NETLOOP_WS_CLOSE', message: 'websocket: close 1005', closeCode: 1005, reason: '' },
    handler: [[1005, '']],
    wire: '8800',
    end: 'fin',
    info: { code: 1005, reason: '', wasClean: true, initiator: 'peer' },
  },
  ...[999, 1005, 1006, 2999, 5000].map((code) => ({
    event: `peer sends an invalid close code (${code})`,
    run: async ({ peer }) => {
      peer.write(cclose(code, 'x'));
      await peer.waitEnd();
    },
    err: { cls: ProtocolError, code: 'WS_ERR_INVALID_CLOSE_CODE', message: `invalid close code ${code}`, closeCode: 1002 },
    handler: [],
    wire: '880203ea',
    end: 'fin',
    info: { code: 1002, reason: '', wasClean: false, initiator: 'local' },
  })),
  {
    event: 'peer sends a 1-byte close payload',
    run: async ({ peer }) => {
      peer.write(cframe(8, [0x03]));
      await peer.waitEnd();
    },
    err: { cls: ProtocolError, code: 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', closeCode: 1002 },
    handler: [],
    wire: '880203ea',
    end: 'fin',
    info: { code: 1002, reason: '', wasClean: false, initiator: 'local' },
  },
  {
    event: 'invalid UTF-8 in a text message',
    run: async ({ peer }) => {
      peer.write(cframe(1, [0x68, 0x69, 0xf8]));
      await peer.waitEnd();
    },
    err: { cls: ProtocolError, code: 'WS_ERR_INVALID_UTF8', message: 'invalid UTF-8 in a text message', closeCode: 1007 },
    handler: [],
    wire: '880203ef',
    end: 'fin',
    info: { code: 1007, reason: '', wasClean: false, initiator: 'local' },
  },
  {
    event: 'invalid UTF-8 in a close reason',
    run: async ({ peer }) => {
      peer.write(cclose(1000, Buffer.from([0xc3, 0x28])));
      await peer.waitEnd();
    },
    err: { cls: ProtocolError, code: 'WS_ERR_INVALID_UTF8', message: 'invalid UTF-8 in the close reason', closeCode: 1007 },
    handler: [],
    wire: '880203ef',
    end: 'fin',
    info: { code: 1007, reason: '', wasClean: false, initiator: 'local' },
  },
  {
    event: 'other protocol violation: an unmasked frame',
    run: async ({ peer }) => {
      peer.write(cframe(1, 'not masked', { masked: false }));
      await peer.waitEnd();
    },
    err: { cls: ProtocolError, code: 'WS_ERR_EXPECTED_MASK', message: 'frames from a client must be masked', closeCode: 1002 },
    handler: [],
    wire: '880203ea',
    end: 'fin',
    info: { code: 1002, reason: '', wasClean: false, initiator: 'local' },
  },
  {
    event: 'message over the limit (messageLengthLimit 1000)',
    options: { messageLengthLimit: 1000 },
    run: async ({ peer }) => {
      peer.write(cframe(2, Buffer.alloc(1001)));
      await peer.waitEnd();
    },
    err: { cls: ProtocolError, code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', closeCode: 1009 },
    handler: [],
    wire: '880203f1',
    end: 'fin',
    info: { code: 1009, reason: '', wasClean: false, initiator: 'local' },
  },
  {
    event: 'TCP FIN without a close frame',
    run: async ({ peer }) => {
      peer.sock.end();
      await peer.waitClosed();
    },
    err: { cls: EOFError, code: 'NETLOOP_EOF', message: 'EOF' },
    handler: [],
    wire: '',
    end: 'fin',
    info: { code: 1006, reason: '', wasClean: false, initiator: 'network' },
  },
  {
    event: 'TCP reset',
    run: async ({ peer }) => {
      peer.sock.resetAndDestroy();
      await peer.waitClosed();
    },
    err: { cls: SysError, code: 'ECONNRESET', message: 'connection reset by peer', errno: 104 },
    handler: [],
    wire: '',
    end: 'any',
    info: { code: 1006, reason: '', wasClean: false, initiator: 'network' },
  },
  {
    event: 'read deadline (setReadDeadline(Date.now() + 200))',
    onOpen: (c) => c.setReadDeadline(Date.now() + 200),
    run: async ({ peer }) => {
      await peer.waitClosed();
    },
    within: [150, 700],
    err: { cls: TimeoutError, code: 'NETLOOP_TIMEOUT', message: 'read timeout' },
    blocking: IO_TIMEOUT,
    handler: [],
    wire: '',
    end: 'fin',
    info: { code: 1006, reason: '', wasClean: false, initiator: 'network' },
  },
  {
    event: 'server writeClose(1000), the peer answers',
    run: async ({ peer, rec }) => {
      rec.conn.writeMessage('text', 'last words');
      rec.conn.writeClose(1000, 'done');
      await peer.waitRx(12 + 8);
      peer.write(cclose(1000, 'ok'));
      await peer.waitEnd();
    },
    err: null,
    blocking: NET_CLOSED,
    handler: [[1000, 'ok']],
    wire: '810a' + text('last words') + '880603e8' + text('done'),
    end: 'fin',
    info: { code: 1000, reason: 'ok', wasClean: true, initiator: 'local' },
  },
  {
    event: 'server writeClose(4000), the peer answers with another code',
    run: async ({ peer, rec }) => {
      rec.conn.writeClose(4000, 'kick');
      await peer.waitRx(8);
      peer.write(cclose(1001, 'leaving anyway'));
      await peer.waitEnd();
    },
    err: null,
    blocking: NET_CLOSED,
    handler: [[1001, 'leaving anyway']],
    wire: '88060fa0' + text('kick'),
    end: 'fin',
    info: { code: 1001, reason: 'leaving anyway', wasClean: true, initiator: 'local' },
  },
  {
    event: 'server writeClose(1000), the peer never answers (closeTimeout 300)',
    options: { closeTimeout: 300 },
    run: async ({ peer, rec }) => {
      rec.conn.writeClose(1000, 'done');
      await peer.waitClosed();
    },
    within: [250, 900],
    // Not a row of the table: the unanswered closing handshake is reported as the read timeout it is.
    err: { cls: TimeoutError, code: 'NETLOOP_TIMEOUT', message: 'read timeout' },
    blocking: IO_TIMEOUT,
    handler: [],
    wire: '880603e8' + text('done'),
    end: 'fin',
    info: { code: 1006, reason: '', wasClean: false, initiator: 'local' },
  },
  {
    event: 'server closeWithError(e)',
    run: async ({ peer, rec, userError }) => {
      rec.conn.writeMessage('text', 'flushed first');
      rec.conn.closeWithError(userError);
      await peer.waitClosed();
    },
    err: 'user',
    handler: [],
    wire: '810d' + text('flushed first'),
    end: 'fin',
    info: { code: 1006, reason: '', wasClean: false, initiator: 'local' },
  },
  {
    event: 'server closeAndClean(e)',
    run: async ({ peer, rec, userError }) => {
      rec.conn.closeAndClean(userError);
      await peer.waitClosed();
    },
    err: 'user',
    handler: [],
    wire: '',
    end: 'rst',
    info: { code: 1006, reason: '', wasClean: false, initiator: 'local' },
  },
  {
    event: 'engine stops, the peer answers',
    run: async ({ peer, s }) => {
      const stopped = s.engine.stop();
      await peer.waitRx(4);
      peer.write(cclose(1001, 'ok, bye'));
      await stopped;
    },
    err: null,
    blocking: NET_CLOSED,
    handler: [[1001, 'ok, bye']],
    wire: '880203e9',
    end: 'fin',
    info: { code: 1001, reason: 'ok, bye', wasClean: true, initiator: 'local' },
  },
  {
    event: 'engine stops, the peer never answers (closeTimeout 300)',
    options: { closeTimeout: 300 },
    run: async ({ peer, s }) => {
      const t0 = performance.now();
      await s.engine.stop();
      const took = performance.now() - t0;
      if (took > 1500) throw new Error(`engine.stop() took ${took.toFixed(0)} ms`);
      await peer.waitClosed();
    },
    err: null,
    blocking: IO_TIMEOUT, // the close timeout is the reader's read deadline
    handler: [],
    wire: '880203e9',
    end: 'fin',
    info: { code: 1006, reason: '', wasClean: false, initiator: 'local' },
  },
];

function checkErr(t, got, want, userError) {
  if (want === null) {
    t.equal(got, null, 'onClose: null');
    return;
  }
  if (want === 'user') {
    t.equal(got, userError, 'onClose: the very error the server closed with');
    return;
  }
  t.type(got, want.cls, `onClose: ${want.cls.name}`);
  const fields = {};
  for (const k of ['code', 'message', 'closeCode', 'reason', 'errno']) if (k in want) fields[k] = got?.[k];
  const expected = { ...want };
  delete expected.cls;
  t.same(fields, expected, 'onClose: error fields');
}


/**
 * The I/O modes the table runs in. `expect` is the ioMode every tested
 * connection must get; `holder` first opens one connection that takes the
 * only blocking place of a mixed engine, so the tested one lands past the
 * threshold.
 */
export const MODES = {
  nonblocking: { engine: {}, expect: 'nonblocking' },
  blocking: { engine: { ioMode: 'blocking' }, expect: 'blocking' },
  'mixed, under maxBlockingOnline': { engine: { ioMode: 'mixed', maxBlockingOnline: 1 }, expect: 'blocking' },
  'mixed, over maxBlockingOnline': { engine: { ioMode: 'mixed', maxBlockingOnline: 1 }, holder: true, expect: 'nonblocking' },
};

/** Runs every row of the table as a subtest of t, in one mode. */
export function runContract(t, modeName) {
  const mode = MODES[modeName];
  for (const row of ROWS) {
    t.test(`close contract (${modeName}): ${row.event}`, async (t) => {
      const s = await startServer(t, row.options ?? {}, { onOpen: row.onOpen, onClose: probeWrites, engine: mode.engine });
      if (mode.holder) {
        const holder = await Peer.open(t, s.addr);
        t.equal((await s.rec(holder)).conn.ioMode, 'blocking', 'the holder took the blocking place');
      }
      const peer = await Peer.open(t, s.addr);
      const rec = await s.rec(peer);
      t.equal(rec.conn.ioMode, mode.expect, `conn.ioMode is ${mode.expect}`);
      const blocking = rec.conn.ioMode === 'blocking';
      const want = blocking && 'blocking' in row ? row.blocking : row.err;
      const userError = new Error('closed by the application');
      const t0 = performance.now();
      await row.run({ t, s, peer, rec, userError });
      const c = await closedOnce(t, rec, 5000);
      checkErr(t, c.err, want, userError);
      if (row.within) {
        const took = c.at - t0;
        t.ok(took >= row.within[0] && took <= row.within[1], `onClose after ${took.toFixed(0)} ms, expected ${row.within[0]}-${row.within[1]}`);
      }
      t.same(rec.handler, row.handler, row.handler.length ? `close handler ${JSON.stringify(row.handler)}` : 'close handler not called');
      t.same(c.info, { ...row.info, error: c.err }, 'closeInfo in onClose');
      t.equal(rec.conn.closeInfo?.error, c.err, 'closeInfo.error is what onClose received');
      await peer.waitClosed();
      t.equal(hex(peer.rx), row.wire, `wire: ${row.wire || 'nothing'}`);
      if (row.end === 'fin') {
        t.ok(peer.ended, 'the server ended with FIN');
        t.equal(peer.error, null, 'no reset');
      } else if (row.end === 'rst') {
        t.equal(peer.error?.code, 'ECONNRESET', 'the server reset the connection');
      }
      t.type(rec.writeInOnClose, NetClosedError, 'writeMessage inside onClose throws NetClosedError');
      t.throws(() => rec.conn.writeMessage('text', 'late'), NetClosedError, 'writeMessage after onClose throws NetClosedError');
      t.throws(() => rec.conn.ping(), NetClosedError, 'ping after onClose throws NetClosedError');
      t.equal(rec.conn.closed, true);
      t.same(rec.messages, [], 'no message delivered');
    });
  }
}
