// Dials a server, sends lines, prints what comes back, then closes:
//   node examples/tcp-client.js 127.0.0.1:9000
import { Engine } from 'netloop';

const addr = process.argv[2] ?? '127.0.0.1:9000';
let received = '';
const engine = new Engine({
  onData: (conn, data) => {
    received += data.toString();
    if (received.endsWith('bye\n')) conn.close();
  },
  onClose: (conn, err) => {
    console.log(received.trimEnd());
    console.log('closed:', err === null ? 'cleanly' : err.message);
    void engine.stop();
  },
});
await engine.start();
const conn = await engine.dial(addr, { timeout: 3000 });
conn.write('hello\n');
conn.writev(['from ', 'netloop\n', 'bye\n']);
