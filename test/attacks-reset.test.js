// Attacks as tests (issue 8): connections reset in the middle of everything,
// and an application handler that throws. In every I/O mode, against a
// server in its own process (helpers/attack-server.js): no crash, every
// descriptor given back, onClose exactly once per upgraded connection, and
// an honest `ws` client unaffected.
import t from 'tap';
import { Peer, cframe, parseFrames, upgradeRequest } from './helpers/ws-peer.js';
import { MODES, checkHonest, fdsOf, honestClient, pool, sleep, startAttackServer, until } from './helpers/attack.js';

t.setTimeout(150_000);

const RESETS = 2000;
const RESET_WIDTH = 50; // connections being opened and reset at once

for (const mode of MODES) {
  t.test(`reset storm, ${mode}: ${RESETS} connections reset mid-handshake and mid-message`, async (t) => {
    const s = await startAttackServer(t, mode);
    const honest = await honestClient(t, s.url);
    await sleep(100);
    const baseline = fdsOf(s.pid);
    const head = upgradeRequest();
    let upgraded = 0;
    await pool(RESETS, RESET_WIDTH, async (i) => {
      if (i % 2 === 0) {
        // Mid-handshake: half a request head, then RST (SO_LINGER 0).
        const p = await Peer.connect(t, s.addr);
        p.write(head.subarray(0, head.length >> 1));
        await sleep(1);
        p.sock.resetAndDestroy();
      } else {
        // Mid-message: upgraded, a frame header announcing 1 KiB and 10 bytes of it, then RST.
        const p = await Peer.open(t, s.addr);
        upgraded++;
        p.write(cframe(0x2, Buffer.alloc(10, 1), { len: 1024 }));
        await sleep(1);
        p.sock.resetAndDestroy();
      }
    });
    await until(() => s.closes.length >= upgraded, 15_000, `onClose for the ${upgraded} upgraded connections (${s.closes.length} so far)`);
    await sleep(200); // a second onClose for any of them would come now
    t.equal(s.opens.length, upgraded + 1, `onOpen for each upgraded connection and the honest one (${upgraded + 1})`);
    t.equal(s.closes.length, upgraded, 'onClose once per reset upgraded connection');
    t.equal(new Set(s.closes.map((c) => c.id)).size, s.closes.length, 'no connection closed twice');
    // A reset mid-message is a reset: ECONNRESET, or EOF when the reader saw the FIN-less end as such.
    const kinds = new Set(s.closes.map((c) => `${c.err?.name} ${c.err?.code}`));
    t.ok([...kinds].every((k) => k === 'SysError ECONNRESET' || k === 'EOFError NETLOOP_EOF'), `onClose errors: ${[...kinds].join(', ')}`);
    await s.fdsBackTo(baseline);
    t.pass(`server descriptors back to ${baseline}`);
    checkHonest(t, await honest.stop(), 'reset storm');
    await s.stop();
    t.equal(s.exited.code, 0, 'the server exits cleanly after the storm');
  });

  t.test(`a throwing handler, ${mode}: close 1011 for that connection, the others keep echoing`, async (t) => {
    const s = await startAttackServer(t, mode, { throwOn: 'boom' });
    const honest = await honestClient(t, s.url);
    const bystander = await Peer.open(t, s.addr);
    const thrower = await Peer.open(t, s.addr);
    const key = `127.0.0.1:${thrower.sock.localPort}`;
    thrower.write(cframe(0x1, 'first'));
    thrower.write(cframe(0x1, 'boom'));
    await thrower.waitEnd(3000);
    const frames = parseFrames(thrower.rx).frames;
    t.equal(frames[0]?.payload.toString(), 'first', 'the message before the throw was echoed');
    const close = frames.find((f) => f.opcode === 0x8);
    t.equal(close?.payload.readUInt16BE(0), 1011, 'close 1011 (internal error) on the wire, then FIN');
    await until(() => s.closes.some((c) => c.remote === key), 3000, "the thrower's onClose");
    const c = s.closes.find((x) => x.remote === key);
    t.equal(c.err?.message, 'thrown on boom', 'onClose gets the thrown error');
    t.equal(c.err?.name, 'Error', 'as it was thrown (an Error is passed as it is)');
    bystander.write(cframe(0x1, 'still here'));
    await bystander.waitRx(12);
    t.equal(parseFrames(bystander.rx).frames[0]?.payload.toString(), 'still here', 'another connection keeps echoing');
    const sample = await s.sample();
    // README's contract: after failing its connection the exception is rethrown to the process
    // (not swallowed), exactly once; the server's uncaughtException handler counts it.
    t.equal(sample.uncaught, 1, 'the exception reached the process once, after the connection was failed');
    await sleep(500); // the honest client goes on echoing after the throw
    checkHonest(t, await honest.stop(), 'throwing handler');
    bystander.sock.destroy();
    thrower.sock.destroy();
    await s.stop();
  });
}
