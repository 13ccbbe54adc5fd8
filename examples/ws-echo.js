// A WebSocket echo server: node examples/ws-echo.js [port]
// Try it from a browser console: new WebSocket('ws://127.0.0.1:9001').onmessage = (e) => console.log(e.data)
import { Engine, Upgrader } from 'netloop';

const port = Number(process.argv[2] ?? 9001);
const upgrader = new Upgrader({ keepaliveTime: 60_000 });
upgrader.onOpen((c) => console.log('open', c.remoteAddr, c.path));
upgrader.onMessage((c, type, data) => {
  if (!c.closed) c.writeMessage(type, data); // not after our close frame (stop() sends 1001)
});
upgrader.setCloseHandler((c, code, reason) => console.log('peer sent close', code, reason));
upgrader.onClose((c, err) => console.log('closed', c.remoteAddr, err === null ? 'cleanly' : `${err.name}: ${err.message}`, c.closeInfo));

const engine = new Engine({ addrs: [`127.0.0.1:${port}`], upgrader });
await engine.start();
console.log('listening on', engine.addresses().map((a) => `ws://${a}/`).join(', '));
process.once('SIGINT', () => void engine.stop()); // says goodbye (1001) to every client first
