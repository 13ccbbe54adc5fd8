// A raw TCP echo server: node examples/tcp-echo.js [port]
// Try it: printf 'hello' | nc 127.0.0.1 9000
import { Engine } from 'netloop';

const port = Number(process.argv[2] ?? 9000);
const engine = new Engine({
  addrs: [`127.0.0.1:${port}`],
  onOpen: (conn) => console.log('open', conn.remoteAddr),
  // `data` is only valid during the callback; write() copies what it needs.
  onData: (conn, data) => conn.write(data),
  onClose: (conn, err) => console.log('close', conn.remoteAddr, err === null ? 'null' : `${err.name}: ${err.message}`),
});
await engine.start();
console.log('listening on', engine.addresses().join(', '));
process.once('SIGINT', () => void engine.stop());
