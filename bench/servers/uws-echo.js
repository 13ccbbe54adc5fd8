// uWebSockets.js's WebSocket echo server: the fastest WebSocket server for Node that we know of,
// a peer in echo, latency, hold and churn; with --tls-cert/--tls-key it is its SSLApp (its own
// TLS on BoringSSL), the peer of the TLS scenarios (echo --tls, churn --tls).
//
//   node bench/servers/uws-echo.js --host 127.0.0.1 --port P [--tls-cert F --tls-key F]
//
// The unofficial npm build (bench/peers/uws.js installs it on demand; the harness asks before a
// run and reports uWS.js as skipped, with the reason, where it cannot load). Configured like the
// netloop server it is compared with: compression off, messages up to 16 MiB, 120 s idle timeout
// (netloop's keepalive), and up to 64 MiB of unsent data per connection (netloop's
// maxWriteBufferSize; uWS.js's default of 64 KiB would drop echoes of large messages instead of
// queueing them). Each message is echoed with its own type. Answers pings (uWS.js does so
// itself). Prints "listening HOST:PORT" when ready; exits on SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { loadUws, UWS_VERSION } from '../peers/uws.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
  },
});
const tls = values['tls-cert'] !== undefined || values['tls-key'] !== undefined;
if (tls && (!values['tls-cert'] || !values['tls-key'])) {
  console.error('uws-echo: --tls-cert and --tls-key go together');
  process.exit(2);
}

const uWS = loadUws({ install: false });

const app = (tls ? uWS.SSLApp({ cert_file_name: values['tls-cert'], key_file_name: values['tls-key'] }) : uWS.App()).ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  idleTimeout: 120,
  maxBackpressure: 64 * 1024 * 1024,
  message: (ws, message, isBinary) => {
    ws.send(message, isBinary);
  },
});

app.listen(values.host, Number(values.port), (token) => {
  if (!token) {
    console.error(`uws-echo: cannot listen on ${values.host}:${values.port}`);
    process.exit(1);
  }
  const port = uWS.us_socket_local_port(token);
  process.stdout.write(`listening ${values.host}:${port} (uWS.js ${UWS_VERSION}${tls ? ' SSLApp' : ''}, compression off)\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
