// A chat room: every text message is sent to everyone else.
//   node examples/chat.js [port]
// then open two browser tabs on http://127.0.0.1:9002/ (the page is served by
// the same engine, through the upgrader's plain HTTP handler).
import { Engine, Upgrader } from 'netloop';

const port = Number(process.argv[2] ?? 9002);
const page = `<!doctype html><meta charset="utf-8"><title>netloop chat</title>
<ul id="log"></ul><form id="f"><input id="m" autofocus><button>send</button></form>
<script>
const ws = new WebSocket('ws://' + location.host + '/chat', ['chat']);
const add = (t) => { const li = document.createElement('li'); li.textContent = t; log.append(li); };
ws.onmessage = (e) => add(e.data);
ws.onclose = (e) => add('closed: ' + e.code + ' ' + e.reason);
f.onsubmit = (e) => { e.preventDefault(); ws.send(m.value); add('me: ' + m.value); m.value = ''; };
</script>`;

const members = new Set();
const upgrader = new Upgrader({
  path: '/chat',
  subprotocols: ['chat'],
  httpHandler: (head) =>
    head.target === '/' ? { status: 200, headers: { 'Content-Type': 'text/html; charset=utf-8' }, body: page } : { status: 404, body: 'not found\n' },
});
upgrader.onOpen((c) => {
  c.setSession({ name: `guest-${c.remoteAddr.split(':').pop()}` });
  members.add(c);
});
upgrader.onMessage((from, type, data) => {
  if (type !== 'text') return;
  const line = `${from.session.name}: ${data.toString()}`;
  for (const c of members) if (c !== from && !c.closed) c.writeMessage('text', line);
});
upgrader.onClose((c) => members.delete(c));

const engine = new Engine({ addrs: [`127.0.0.1:${port}`], upgrader });
await engine.start();
console.log(`chat on http://127.0.0.1:${port}/`);
process.once('SIGINT', () => void engine.stop());
