// The servers under test. Each entry says how to start it for a protocol on a host and port; the
// harness pins, starts, waits for and stops it. Add a server by adding an entry here.
//
//   describe            one line for --help and the report
//   protocols           the --proto values it serves (a scenario only runs servers that serve its)
//   command({ proto, host, port }) -> { file, args }   the program to exec (not through a shell,
//                       so the pid the harness sees is the server's own)
//   missing()           null when it can start, else why not (checked before any run; such a
//                       server is reported as failed with this reason, the others still run)
//
// A server that starts but cannot serve the protocol (e.g. a netloop CLI without --proto ws yet)
// exits or fails its handshakes; the harness reports that run as failed with the reason.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { benchDir, echoCPath, netloopCliPath } from '../harness/paths.js';

const node = process.execPath;
// --node-flags: the same V8/Node flags for every Node server, so that a
// tuning (a smaller young generation for idle connections, say) is compared
// like for like.
const flags = (nodeFlags) => (nodeFlags ? nodeFlags.split(/\s+/).filter(Boolean) : []);

export const servers = {
  netloop: {
    describe: 'netloop engine: node dist/cli.js echo --proto tcp|ws',
    protocols: ['tcp', 'ws'],
    command: ({ proto, host, port, nodeFlags }) => ({
      file: node,
      args: [...flags(nodeFlags), netloopCliPath, 'echo', '--proto', proto, '--host', host, '--port', String(port)],
    }),
    missing: () => (existsSync(netloopCliPath) ? null : `${netloopCliPath} not found: run \`npm run build\``),
  },
  net: {
    describe: "Node's net module: bench/servers/net-echo.js",
    protocols: ['tcp'],
    command: ({ host, port, nodeFlags }) => ({
      file: node,
      args: [...flags(nodeFlags), path.join(benchDir, 'servers', 'net-echo.js'), '--host', host, '--port', String(port)],
    }),
    missing: () => null,
  },
  ws: {
    describe: 'the ws package (8, with bufferutil): bench/servers/ws-echo.js',
    protocols: ['ws'],
    command: ({ host, port, nodeFlags }) => ({
      file: node,
      args: [...flags(nodeFlags), path.join(benchDir, 'servers', 'ws-echo.js'), '--host', host, '--port', String(port)],
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
  c: {
    describe: 'C epoll echo server (the ceiling): build/Release/netloop-echo-c [--proto ws]',
    protocols: ['tcp', 'ws'],
    command: ({ proto, host, port }) => ({ file: echoCPath, args: ['--host', host, '--port', String(port), '--proto', proto] }),
    missing: () => (existsSync(echoCPath) ? null : `${echoCPath} not found`),
  },
};
