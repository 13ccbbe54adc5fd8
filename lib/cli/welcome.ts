// What `netloop echo --proto ws` says about itself: the lines printed at start and the page a
// plain HTTP request gets (a browser pointed at the port, curl), so that a first try ends with a
// command that works instead of a bare 400. Each command named works on a machine with only
// this package installed (no global WebSocket in Node 20, no network for `npx wscat`).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HttpAnswer } from '../websocket/upgrader.js';
import type { RequestHead } from '../http/request-parser.js';

/**
 * The command line, from the server's working directory, that talks to `url` with `netloop
 * client`. Installed as a package (a dependency or global), that is `npx netloop client`: npx
 * finds the bin in node_modules/.bin at once. Run from a checkout (npm start), it is this CLI's
 * own file: `npx netloop` works there too, but first installs the checkout into npx's cache,
 * which takes seconds to minutes on a busy machine.
 */
export function clientCommand(url: string): string {
  // main.js is this file's neighbour in dist/cli/.
  const main = path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.js');
  if (main.split(path.sep).includes('node_modules')) return `npx netloop client ${url}`;
  const rel = path.relative(process.cwd(), main);
  return `node ${rel.startsWith('..') || path.isAbsolute(rel) ? main : rel} client ${url}`;
}

/** The lines printed once the echo server listens on `url` (`certFile`: the --tls-cert of a wss:// one). */
export function tryIt(url: string, certFile?: string): string {
  if (url.startsWith('wss:')) {
    // A browser speaks wss:// once it accepts the certificate; netloop's client once told to trust it.
    const page = `https:${url.slice(4)}`;
    return (
      `Try it: ${clientCommand(url)} --tls-ca ${certFile ?? '<the certificate or its CA>'}   (a self-signed certificate is trusted that way)\n` +
      `or open ${page} in a browser. A self-signed certificate gets a warning first ("not private",\n` +
      '"potential security risk"): accept it for this address, and the page shows a line to paste into the\n' +
      "browser's console that opens the wss:// connection.\n"
    );
  }
  return `Try it: ${clientCommand(url)}   (type a line, get it back; Ctrl-D to end)\n`;
}

// A Host header is echoed into the page only when it is a plain host[:port] (names, IPv4,
// bracketed IPv6): nothing that could be markup.
const AUTHORITY = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * Upgrader's httpHandler for the echo server: GET and HEAD get a short page saying how to
 * connect (to the authority the request named, else `fallback()`: the listening address; wss://
 * when the server speaks TLS), other methods 405.
 */
export function welcomeHandler(fallback: () => string, path = '/', secure = false): (head: RequestHead) => HttpAnswer {
  return (head): HttpAnswer => {
    if (head.method !== 'GET' && head.method !== 'HEAD') {
      return { status: 405, headers: { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }, body: 'This is a WebSocket echo server: GET a page, or upgrade.\n' };
    }
    const host = head.get('host');
    const url = `${secure ? 'wss' : 'ws'}://${host !== undefined && AUTHORITY.test(host) ? host : fallback()}${path}`;
    const body = `<!doctype html>
<meta charset="utf-8">
<title>netloop echo</title>
<h1>netloop echo</h1>
<p>This is a WebSocket echo server: every message sent to <code>${url}</code> comes back with its type.
This page is what a plain HTTP request gets.</p>
${secure ? '' : `<p>From a shell: <code>${clientCommand(url)}</code>, then type a line.</p>\n`}
<p>From this browser's console: <code>const ws = new WebSocket('${url}'); ws.onmessage = (e) =&gt; console.log(e.data); ws.onopen = () =&gt; ws.send('hello');</code></p>
`;
    return { status: 200, headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }, body };
  };
}
