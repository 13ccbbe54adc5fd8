// A throwaway redis-server for a bench server's `--redis auto`: no persistence, a free loopback
// port, its own temporary directory; killed (and the directory removed) when the process exits.
// A SIGINT/SIGTERM that comes before the caller installs its own handlers exits at once (through
// 'exit', so the redis-server is not left behind); the caller calls stopBeforeStart() once its
// own handlers are in place.
//
//   const { url, stopBeforeStart } = await startRedisServer('netloop-broadcast');
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const freePort = () =>
  new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const p = probe.address().port;
      probe.close(() => resolve(p));
    });
  });

const answersPing = (port) =>
  new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write('PING\r\n'));
    sock.once('data', (d) => { sock.destroy(); resolve(d.toString().startsWith('+PONG')); });
    sock.once('error', () => resolve(false));
  });

export async function startRedisServer(who) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netloop-bench-redis-'));
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  redis.on('error', (err) => {
    console.error(`${who}: cannot start redis-server: ${err.message}`);
    process.exit(1);
  });
  process.on('exit', () => {
    redis.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const early = () => process.exit(0);
  process.once('SIGINT', early);
  process.once('SIGTERM', early);
  const stopBeforeStart = () => {
    process.off('SIGINT', early);
    process.off('SIGTERM', early);
  };
  for (let i = 0; i < 100; i++) {
    if (await answersPing(port)) return { url: `redis://127.0.0.1:${port}`, stopBeforeStart };
    await new Promise((r) => setTimeout(r, 50));
  }
  console.error(`${who}: redis-server did not answer`);
  process.exit(1);
}
