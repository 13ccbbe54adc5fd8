// The servers under test. Each entry says how to start it for a protocol on a host and port; the
// harness pins, starts, waits for and stops it. Add a server by adding an entry here.
//
//   describe            one line for --help and the report
//   protocols           the --proto values it serves (a scenario only runs servers that serve its)
//   roles               what it does with a message: 'echo' (back to its sender) and/or
//                       'broadcast' (to every connection); default ['echo']
//   command({ proto, role, host, port, nodeFlags, opts }) -> { file, args }   the program to exec
//                       (not through a shell, so the pid the harness sees is the server's own)
//   missing()           null when it can start, else why not (checked before any run; such a
//                       server is reported as failed with this reason, the others still run)
//   tls                 the protocols it also serves over TLS (a --tls case): command() then gets
//                       tls = { cert, key } (files) and passes them as --tls-cert/--tls-key
//   tlsOnly             true for a server that only runs in --tls cases (uWS.js's SSLApp)
//   tlsMissing()        like missing(), for --tls cases
//   optional            true for a peer that may be absent (uWS.js): a default run leaves it
//                       out with a printed note instead of reporting it as failed
//
// A server that starts but cannot serve the protocol (e.g. a netloop CLI without --proto ws yet)
// exits or fails its handshakes; the harness reports that run as failed with the reason.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { benchDir, echoCPath, netloopCliPath } from '../harness/paths.js';
import { tlsServerArgs } from '../harness/tls.js';
import { UWS_VERSION, uwsModulePath } from '../peers/uws.js';

const node = process.execPath;
// uWS.js (both entries): installed on demand unless NETLOOP_BENCH_INSTALL_PEERS=0 (the tests: use an
// installed copy only, never download 114 MB); null when it loads, else why not.
const uwsMissing = () =>
  uwsModulePath({ install: process.env.NETLOOP_BENCH_INSTALL_PEERS !== '0', log: (line) => process.stderr.write(`bench: ${line}\n`) }).skip ?? null;

// --node-flags: the same V8/Node flags for every Node server, so that a
// tuning (a smaller young generation for idle connections, say) is compared
// like for like.
const flags = (nodeFlags) => (nodeFlags ? nodeFlags.split(/\s+/).filter(Boolean) : []);

const cliMissing = () => (existsSync(netloopCliPath) ? null : `${netloopCliPath} not found: run \`npm run build\``);

// Whether the CLI's echo command takes --mode (asked once: its --help mentions it).
let echoHelp = null;
function cliEchoHelp() {
  if (echoHelp === null) {
    const r = spawnSync(node, [netloopCliPath, 'echo', '--help'], { encoding: 'utf8', timeout: 10_000 });
    echoHelp = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  }
  return echoHelp;
}
export const cliHasModeFlag = () => /--mode\b/.test(cliEchoHelp());
// Whether it takes --tls-cert/--tls-key (netloop's own TLS).
const cliHasTls = () => /--tls-cert\b/.test(cliEchoHelp());

// netloop started in one I/O mode (undefined: the engine's default, no flag passed): the CLI's
// echo server, or bench/servers/netloop-broadcast.js for the broadcast role, both with the same
// --mode. --max-blocking (the modes scenario's option) is passed on when given.
function netloopServer(mode) {
  const modeArgs = (opts) => [
    ...(mode ? ['--mode', mode] : []),
    ...(mode && opts?.['max-blocking'] ? ['--max-blocking', String(opts['max-blocking'])] : []),
  ];
  return {
    describe: mode
      ? `netloop in ${mode} mode: node dist/cli/main.js echo --mode ${mode} (broadcast: bench/servers/netloop-broadcast.js --mode ${mode})`
      : 'netloop engine: node dist/cli/main.js echo --proto tcp|ws (broadcast: bench/servers/netloop-broadcast.js)',
    protocols: ['tcp', 'ws'],
    roles: ['echo', 'broadcast'],
    tls: ['tcp', 'ws'],
    tlsMissing: () => cliMissing() ?? (cliHasTls() ? null : `${path.relative(process.cwd(), netloopCliPath)} echo has no --tls-cert flag (netloop's TLS is not in this build)`),
    // Past one process (a hold of more connections than 20,000 open files allow): the CLI's
    // supervised worker processes on one port. The workers inherit the Node flags.
    workers: true,
    command: ({ proto, role, host, port, nodeFlags, opts, workers, tls }) =>
      role === 'broadcast'
        ? { file: node, args: [...flags(nodeFlags), path.join(benchDir, 'servers', 'netloop-broadcast.js'), '--host', host, '--port', String(port), ...modeArgs(opts)] }
        : {
            file: node,
            args: [
              ...flags(nodeFlags), netloopCliPath, 'echo', '--proto', proto, '--host', host, '--port', String(port), ...modeArgs(opts),
              ...(workers ? ['--workers', String(workers)] : []), ...tlsServerArgs(tls),
            ],
          },
    missing: () => {
      const why = cliMissing();
      if (why || !mode) return why;
      return cliHasModeFlag() ? null : `${path.relative(process.cwd(), netloopCliPath)} echo has no --mode flag yet (its --help does not mention it)`;
    },
  };
}

// An echo server that is one script of bench/servers/, started with --host and --port.
// tls: the protocols it also serves over TLS (the script takes --tls-cert/--tls-key).
function scriptServer({ describe, protocols, script, missing, tls }) {
  return {
    describe,
    protocols,
    ...(tls ? { tls } : {}),
    command: ({ host, port, nodeFlags, tls: cert }) => ({
      file: node,
      args: [...flags(nodeFlags), path.join(benchDir, 'servers', script), '--host', host, '--port', String(port), ...tlsServerArgs(cert)],
    }),
    missing,
  };
}

// Socket.IO and its client are devDependencies: a checkout without them says so.
function socketIoMissing() {
  try {
    import.meta.resolve('socket.io');
    import.meta.resolve('socket.io-client');
    return null;
  } catch {
    return 'socket.io and socket.io-client are not installed: run `npm install`';
  }
}

// bench/servers/socketio-echo.js with engine.io's default wsEngine (ws) or netloop/ws's.
function socketIoServer(engine) {
  return {
    describe: `Socket.IO 4 with ${engine === 'ws' ? 'its default wsEngine (ws)' : 'netloop/ws as wsEngine'}: bench/servers/socketio-echo.js --engine ${engine}`,
    protocols: ['socketio'],
    command: ({ host, port, nodeFlags }) => ({
      file: node,
      args: [...flags(nodeFlags), path.join(benchDir, 'servers', 'socketio-echo.js'), '--engine', engine, '--host', host, '--port', String(port)],
    }),
    missing: () => (engine === 'netloop' ? cliMissing() : null) ?? socketIoMissing(),
  };
}

// A redis-server to start, node-redis and (for Socket.IO) its adapter: null when all are there.
function redisMissing(...packages) {
  if (spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status !== 0) return 'redis-server is not installed (apt-get install redis-server)';
  for (const pkg of ['redis', ...packages]) {
    try {
      import.meta.resolve(pkg);
    } catch {
      return `the ${pkg} package is not installed: run \`npm install\``;
    }
  }
  return null;
}

// bench/servers/socketio-broadcast.js: rooms in one process (0), or that many server processes
// sharing one Redis (@socket.io/redis-adapter).
function socketIoBroadcastServer(redisServers) {
  return {
    describe: redisServers
      ? `Socket.IO 4 rooms across ${redisServers} server processes sharing one Redis (@socket.io/redis-adapter): bench/servers/socketio-broadcast.js --redis-servers ${redisServers}`
      : 'Socket.IO 4 rooms in one process (its in-memory adapter): bench/servers/socketio-broadcast.js',
    protocols: ['socketio'],
    roles: ['broadcast'],
    command: ({ host, port, nodeFlags }) => ({
      file: node,
      args: [...flags(nodeFlags), path.join(benchDir, 'servers', 'socketio-broadcast.js'), '--host', host, '--port', String(port), ...(redisServers ? ['--redis-servers', String(redisServers)] : [])],
    }),
    missing: () => socketIoMissing() ?? (redisServers ? redisMissing('@socket.io/redis-adapter') : null),
  };
}

export const servers = {
  netloop: netloopServer(undefined),
  'netloop-nonblocking': netloopServer('nonblocking'),
  'netloop-blocking': netloopServer('blocking'),
  'netloop-mixed': netloopServer('mixed'),
  'netloop-http': scriptServer({
    describe: 'netloop mounted on an http.Server: every upgrade taken over with handleUpgrade (bench/servers/netloop-http-echo.js)',
    protocols: ['ws'],
    script: 'netloop-http-echo.js',
    missing: cliMissing, // the same build (dist/) as the CLI
  }),
  net: scriptServer({
    describe: "Node's net module (with --tls: Node's tls module): bench/servers/net-echo.js",
    protocols: ['tcp'],
    tls: ['tcp'],
    script: 'net-echo.js',
    missing: () => null,
  }),
  ws: {
    describe: 'the ws package (8, with bufferutil; with --tls on Node\'s https): bench/servers/ws-echo.js (broadcast: ws-broadcast.js)',
    protocols: ['ws'],
    roles: ['echo', 'broadcast'],
    tls: ['ws'],
    command: ({ role, host, port, nodeFlags, tls }) => ({
      file: node,
      args: [
        ...flags(nodeFlags), path.join(benchDir, 'servers', role === 'broadcast' ? 'ws-broadcast.js' : 'ws-echo.js'), '--host', host, '--port', String(port),
        ...tlsServerArgs(tls),
      ],
    }),
    missing: () => {
      try {
        import.meta.resolve('ws');
        return null;
      } catch {
        return 'the ws package is not installed: run `npm install`';
      }
    },
  },
  'netloop-ws': scriptServer({
    describe: "netloop/ws, netloop's ws-compatible API: bench/servers/netloop-ws-echo.js (ws-echo.js with the import changed)",
    protocols: ['ws'],
    script: 'netloop-ws-echo.js',
    missing: cliMissing, // netloop/ws is dist/compat/ws.js: built with the CLI
  }),
  // uWebSockets.js in one process: its echo (echo, latency, hold, churn) and its own topics
  // (app.publish) for the broadcast and fanout cases. Installed on demand (bench/peers/uws.js).
  uws: {
    describe: `uWebSockets.js ${UWS_VERSION} (the unofficial npm build, installed on demand): bench/servers/uws-echo.js (broadcast: uws-broadcast.js, its topics)`,
    protocols: ['ws'],
    roles: ['echo', 'broadcast'],
    command: ({ role, host, port, nodeFlags }) => ({
      file: node,
      args: [...flags(nodeFlags), path.join(benchDir, 'servers', role === 'broadcast' ? 'uws-broadcast.js' : 'uws-echo.js'), '--host', host, '--port', String(port)],
    }),
    missing: uwsMissing,
    optional: true,
  },
  'uws-ssl': {
    ...scriptServer({
      describe: `uWebSockets.js ${UWS_VERSION} SSLApp (its own TLS; --tls cases only; installed on demand): bench/servers/uws-echo.js --tls-cert F --tls-key F`,
      protocols: ['ws'],
      tls: ['ws'],
      script: 'uws-echo.js',
      missing: uwsMissing,
    }),
    tlsOnly: true,
    optional: true,
  },
  'socketio-ws': socketIoServer('ws'),
  'socketio-netloop': socketIoServer('netloop'),
  // The fanout scenario's servers: topics in one engine (netloop), across worker processes, and
  // uWebSockets.js's own topics in one process.
  'netloop-workers': {
    describe: 'netloop topics across 6 worker processes (the primary relays): bench/servers/netloop-broadcast.js --workers 6',
    protocols: ['ws'],
    roles: ['broadcast'],
    manyProcesses: true, // holds past one process's open files (the fanout scenario's large runs)
    command: ({ host, port, nodeFlags, opts }) => ({
      file: node,
      args: [...flags(nodeFlags), path.join(benchDir, 'servers', 'netloop-broadcast.js'), '--host', host, '--port', String(port), '--workers', String(opts?.['server-workers'] ?? 6)],
    }),
    missing: cliMissing,
  },
  // Three netloop servers sharing one Redis: three worker processes on the port (the kernel
  // spreads the subscribers), each with its own netloop/redis adapter, which the workers use
  // instead of the primary's relay; the server starts its own redis-server.
  'netloop-redis': {
    describe: 'netloop topics across 3 servers sharing one Redis (3 worker processes, each its own netloop/redis adapter): bench/servers/netloop-broadcast.js --workers 3 --redis auto',
    protocols: ['ws'],
    roles: ['broadcast'],
    manyProcesses: true, // holds past one process's open files (the fanout scenario's large runs)
    command: ({ host, port, nodeFlags, opts }) => ({
      file: node,
      args: [...flags(nodeFlags), path.join(benchDir, 'servers', 'netloop-broadcast.js'), '--host', host, '--port', String(port), '--workers', String(opts?.['redis-servers'] ?? 3), '--redis', 'auto'],
    }),
    missing: () => {
      return cliMissing() ?? redisMissing();
    },
  },
  // The fanout scenario's Socket.IO peers: rooms in one process, and 3 Socket.IO server processes
  // sharing one Redis through @socket.io/redis-adapter (the script starts its own redis-server).
  'socketio-rooms': socketIoBroadcastServer(0),
  'socketio-redis': socketIoBroadcastServer(3),
  c: {
    describe: 'C epoll echo server (the ceiling): bench/native/bin/netloop-echo-c [--proto ws]',
    protocols: ['tcp', 'ws'],
    command: ({ proto, host, port }) => ({ file: echoCPath, args: ['--host', host, '--port', String(port), '--proto', proto] }),
    missing: () => (existsSync(echoCPath) ? null : `${echoCPath} not found`),
  },
};
