// uWebSockets.js's SSLApp (its own TLS on BoringSSL) as a wss echo server: the peer of the TLS
// scenarios (echo --tls, churn --tls).
//
//   node bench/servers/uws-ssl-echo.js --host 127.0.0.1 --port P --tls-cert F --tls-key F
//
// The unofficial npm build (bench/peers/uws.js installs it on demand; the harness reports it as
// skipped, with the reason, where it cannot load). Configured like the netloop server it is
// compared with: compression off, messages up to 16 MiB, 120 s idle timeout, up to 64 MiB of
// unsent data per connection (uWS.js's default of 64 KiB would drop echoes of large messages).
// Each message is echoed with its own type. Prints "listening HOST:PORT" when ready; exits on
// SIGINT/SIGTERM.
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
if (!values['tls-cert'] || !values['tls-key']) {
  console.error('uws-ssl-echo: --tls-cert and --tls-key are required');
  process.exit(2);
}

const uWS = loadUws({ install: false });

const app = uWS.SSLApp({ cert_file_name: values['tls-cert'], key_file_name: values['tls-key'] }).ws('/*', {
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
    console.error(`uws-ssl-echo: cannot listen on ${values.host}:${values.port}`);
    process.exit(1);
  }
  const port = uWS.us_socket_local_port(token);
  process.stdout.write(`listening ${values.host}:${port} (uWS.js ${UWS_VERSION} SSLApp, compression off)\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
