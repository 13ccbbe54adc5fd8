// Real redis-server processes for the tests (Debian's /usr/bin/redis-server, installed by
// .ci/run): one node, or a 3-master cluster, each on free loopback ports with its own temporary
// directory, no persistence. Every process started here is stopped by stopAll() (call it from a
// teardown) and, as a last resort, when the test process exits.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REDIS_SERVER = process.env.NETLOOP_REDIS_SERVER ?? '/usr/bin/redis-server';
export const REDIS_CLI = process.env.NETLOOP_REDIS_CLI ?? '/usr/bin/redis-cli';

/** Why the Redis tests cannot run here, or null. */
export function redisMissing() {
  for (const bin of [REDIS_SERVER, REDIS_CLI]) {
    if (!fs.existsSync(bin)) return `${bin} is not installed (apt-get install redis-server redis-tools)`;
  }
  return null;
}

const running = new Set();
process.on('exit', () => {
  for (const node of running) node.proc.kill('SIGKILL');
});

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

// The kernel's ephemeral ports (net.ipv4.ip_local_port_range, 32768-60999 by default): what it
// gives a connect() or a listen(0). A redis node keeps its port across restart(), and while it is
// down any other test's connection may be given that port as its source port, so the restarted
// node could not bind it. Worse, the adapters keep reconnecting to it meanwhile, and a connect to
// a loopback port with no listener, given that same port as its source, connects to itself (TCP
// simultaneous open) and holds the port. The nodes' ports and their cluster bus ports (+10000)
// are picked below that range.
function ephemeralLow() {
  try {
    const low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : 32768;
  } catch {
    return 32768;  // not Linux: the default range's start
  }
}

/** A free port below the ephemeral range whose cluster bus port (port + 10000) is free too. */
async function freePort() {
  const low = ephemeralLow();
  // From 10000: clear of the ports people run things on (6379, 8080). With a range starting
  // below 21000 there is no room under it: take any port as before.
  const [from, to] = low >= 21000 ? [10000, low - 10000] : [20000, 50000];
  for (let i = 0; i < 200; i++) {
    const port = from + Math.floor(Math.random() * (to - from));
    if ((await portFree(port)) && (await portFree(port + 10000))) return port;
  }
  throw new Error('no free port pair found for redis-server');
}

function cli(port, ...args) {
  const r = spawnSync(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout.trim();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, cond, ms) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (cond()) return;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Starts (or restarts, with the same port and directory) one redis-server.
 * Returns { port, url, dir, proc, kill(signal), restart(), stop() }.
 */
export async function startRedis({ cluster = false, port, dir } = {}) {
  port ??= await freePort();
  dir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'netloop-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'];
  if (cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000');
  const proc = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const node = {
    port,
    dir,
    proc,
    url: `redis://127.0.0.1:${port}`,
    cli: (...a) => cli(port, ...a),
    async kill(signal = 'SIGKILL') {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill(signal);
      await exited;
      running.delete(node);
    },
    restart: () => startRedis({ cluster, port, dir }),
    async stop() {
      await node.kill('SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  running.add(node);
  await waitFor(`redis-server on port ${port} (${stderr})`, () => {
    if (proc.exitCode !== null) throw Object.assign(new Error(`redis-server exited: ${stderr}`), { fatal: true });
    return cli(port, 'PING') === 'PONG';
  }, 10_000);
  return node;
}

/** Three masters, no replicas, every slot assigned, the cluster state ok on every node. */
export async function startRedisCluster() {
  const nodes = [];
  for (let i = 0; i < 3; i++) nodes.push(await startRedis({ cluster: true }));
  const create = spawnSync(
    REDIS_CLI,
    ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
    { encoding: 'utf8', timeout: 30_000 },
  );
  if (create.status !== 0) throw new Error(`redis-cli --cluster create: ${create.stdout}\n${create.stderr}`);
  await waitFor('cluster_state:ok on every node', () => nodes.every((n) => /cluster_state:ok/.test(n.cli('CLUSTER', 'INFO'))), 20_000);
  return {
    nodes,
    rootNodes: nodes.map((n) => ({ url: n.url })),
    /** The node that owns the slot of `key` (from CLUSTER NODES: id addr flags master ... slot ranges). */
    ownerOf(key) {
      const slot = Number(nodes[0].cli('CLUSTER', 'KEYSLOT', key));
      for (const line of nodes[0].cli('CLUSTER', 'NODES').split('\n')) {
        const f = line.split(' ');
        const port = Number(f[1].split('@')[0].split(':').pop());
        for (const range of f.slice(8)) {
          const [a, b = a] = range.split('-').map(Number);
          if (slot >= a && slot <= b) return nodes.find((n) => n.port === port);
        }
      }
      return undefined;
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

export async function stopAll() {
  await Promise.all([...running].map((n) => n.stop()));
}

/** Runs `run` (which defines the tests), or skips saying why Redis is missing; stops every server at the end. */
export function withRedis(t, run) {
  const missing = redisMissing();
  if (missing) return t.skip(missing);
  t.teardown(stopAll);
  run();
}
