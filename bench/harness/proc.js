// Processes: pinning, ports, starting and stopping servers, running the load generator.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

// Decides how server and generator are placed on CPUs (taskset lists such as "0" or "2-3").
// Returns { pinned, serverCpu, loadgenCpu, note }: pinned is false, the CPUs null and the note
// says why when taskset is missing or unusable, or there are not two CPUs to separate them.
export function planPinning(serverCpu, loadgenCpu) {
  const unpinned = (why) => ({ pinned: false, serverCpu: null, loadgenCpu: null, note: `${why}: server and load generator ran unpinned` });
  const cpus = os.availableParallelism();
  if (cpus < 2) return unpinned(`${cpus} CPU`);
  if (serverCpu === loadgenCpu) return unpinned(`server and load generator CPUs are the same (${serverCpu})`);
  for (const list of [serverCpu, loadgenCpu]) {
    const probe = spawnSync('taskset', ['-c', list, 'true'], { stdio: 'ignore' });
    if (probe.error) return unpinned('taskset not found');
    if (probe.status !== 0) return unpinned(`taskset -c ${list} failed`);
  }
  return { pinned: true, serverCpu, loadgenCpu, note: `server pinned to CPU ${serverCpu}, load generator to CPU ${loadgenCpu} (taskset)` };
}

// Every child still running, so an interrupted harness leaves no server behind.
export const liveChildren = new Set();

export function track(child) {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  child.once('error', () => liveChildren.delete(child));
  return child;
}

// taskset execs the program, so the child's pid is the program's pid.
export function pinnedCommand(cpu, file, args) {
  return cpu === null ? { file, args } : { file: 'taskset', args: ['-c', cpu, file, ...args] };
}

export function freePort(host) {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(host, port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
    sock.setTimeout(500, () => done(false));
  });
}

// Keeps the last bytes a child wrote, for error messages.
function tail(stream, limit = 4096) {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (s) => {
    text = (text + s).slice(-limit);
  });
  return () => text.trim();
}

// Starts a server and resolves once it accepts TCP connections. Rejects (after killing it) if it
// exits first or is not accepting within timeoutMs.
export async function startServer({ file, args, cpu, host, port, timeoutMs = 10_000 }) {
  const cmd = pinnedCommand(cpu, file, args);
  const child = track(spawn(cmd.file, cmd.args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = tail(child.stdout);
  const err = tail(child.stderr);
  let exited = null;
  const exit = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.once('error', (e) => {
      exited = { code: null, signal: null, error: e.message };
      resolve(exited);
    });
  });
  const server = { child, exit, output: () => [out(), err()].filter(Boolean).join('\n') };
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited) {
      const why = exited.error ?? (exited.signal ? `signal ${exited.signal}` : `exit code ${exited.code}`);
      // The first line the server wrote to stderr usually says why (e.g. an unsupported --proto).
      const first = err().split('\n').find((l) => l.trim()) ?? '';
      throw new Error(`server exited before accepting connections (${why})${first ? `: ${first.trim()}` : ''}\n${server.output()}`);
    }
    if (await canConnect(host, port)) return server;
    await sleep(25);
  }
  await stopServer(server);
  throw new Error(`server not accepting on ${host}:${port} after ${timeoutMs} ms\n${server.output()}`);
}

// SIGTERM, then SIGKILL if it has not exited after graceMs. Resolves to { code, signal }.
export async function stopServer(server, graceMs = 5000) {
  if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), graceMs);
  const result = await server.exit;
  clearTimeout(timer);
  return result;
}

// Runs the load generator to completion. Resolves to { code, signal, json, stderr }: json is the
// parsed result line, or null when there was none (then stderr says why).
export function runLoadgen({ file, args, cpu, timeoutMs }) {
  const cmd = pinnedCommand(cpu, file, args);
  return new Promise((resolve) => {
    const child = track(spawn(cmd.file, cmd.args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s) => {
      stdout += s;
    });
    const stderr = tail(child.stderr, 8192);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    let finished = false;
    const finish = (code, signal, error) => {
      if (finished) return; // 'error' can be followed by 'close'
      finished = true;
      clearTimeout(timer);
      let json = null;
      const line = stdout.trim().split('\n').pop();
      try {
        json = line ? JSON.parse(line) : null;
      } catch {
        json = null;
      }
      resolve({ code, signal, json, stderr: [error, stderr()].filter(Boolean).join('\n') });
    };
    child.once('error', (e) => finish(null, null, e.message));
    child.once('close', (code, signal) => finish(code, signal, null));
  });
}

// The pid's program name, to check that the measured pid is the server and not a wrapper.
export function commOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}

// Sockets of one TCP port (local or remote) that are not yet released: every state but
// TIME_WAIT (a TIME_WAIT entry holds no memory worth waiting for and blocks nothing: the next
// server gets a new port). Read from /proc/net/tcp and tcp6; null where they cannot be read.
export function socketsOnPort(port) {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  let readAny = false;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = readFileSync(file, 'latin1');
    } catch {
      continue;
    }
    readAny = true;
    let at = text.indexOf('\n') + 1; // skip the header
    while (at > 0 && at < text.length) {
      const end = text.indexOf('\n', at);
      const line = text.slice(at, end < 0 ? text.length : end);
      at = end < 0 ? -1 : end + 1;
      const f = line.trim().split(/\s+/);
      if (f.length < 4 || f[3] === '06') continue;
      if (f[1].endsWith(`:${hex}`) || f[2].endsWith(`:${hex}`)) n++;
    }
  }
  return readAny ? n : null;
}

// Waits until the server's port holds no socket any more (the server exited and the kernel tore
// down every connection), polling every 100 ms for at most timeoutMs. Resolves to
// { released, seconds, left }.
export async function waitReleased(port, timeoutMs = 30_000) {
  const t0 = Date.now();
  for (;;) {
    const left = socketsOnPort(port);
    const seconds = (Date.now() - t0) / 1000;
    if (left === null || left === 0) return { released: true, seconds, left: left ?? 0 };
    if (Date.now() - t0 >= timeoutMs) return { released: false, seconds, left };
    await sleep(100);
  }
}

// CPU accounting for the contention check, in clock ticks (USER_HZ, 100 on Linux).
//   machineBusyTicks()  busy time of all CPUs together (/proc/stat: everything but idle and iowait)
//   selfAndChildrenTicks()  this process's CPU plus that of its children it has waited for
//                       (utime, stime, cutime, cstime): a finished load generator is in there
//   pidTicks(pid)       a live process's utime + stime
function statFields(pid) {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on
}

export function machineBusyTicks() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]; // "cpu  user nice system idle iowait irq softirq steal ..."
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    return v.reduce((a, b) => a + b, 0) - v[3] - v[4];
  } catch {
    return null;
  }
}

export function selfAndChildrenTicks() {
  try {
    const f = statFields('self');
    return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]); // fields 14-17
  } catch {
    return null;
  }
}

export function pidTicks(pid) {
  try {
    const f = statFields(pid);
    return Number(f[11]) + Number(f[12]);
  } catch {
    return null;
  }
}
