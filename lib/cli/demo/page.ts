// The page of `netloop demo`: plain HTML, CSS and JavaScript, no framework, no build step and
// nothing loaded from elsewhere (the machine may be offline; the server's Content-Security-Policy
// holds it to that). Kept in a TypeScript string so that it ships inside dist/ with no copy
// step; the script avoids backquotes and dollar-brace so that String.raw keeps it verbatim.
// Protocol: see server.ts. Elements the tests read carry ids and data- attributes.
export const PAGE = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>netloop demo</title>
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --bg: #f7f8fa; --card: #fff; --accent: #2563eb; --thread: #d97706; --bad: #b42318; --badbg: #fef3f2; --ok: #027a48; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 20px; }
  header .sub { color: var(--muted); }
  #status { margin-left: auto; font-weight: 600; }
  #status[data-state="open"] { color: var(--ok); }
  #status[data-state="closed"] { color: var(--bad); }
  main { display: grid; grid-template-columns: minmax(320px, 1fr) minmax(420px, 1.2fr); gap: 16px; padding: 16px 20px; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 0; }
  section h2 { margin: 0 0 8px; font-size: 15px; }
  #lab { grid-column: 1 / -1; }
  form { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
  input, select, button { font: inherit; padding: 4px 8px; border: 1px solid #cbd2dc; border-radius: 6px; background: #fff; }
  button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
  button.secondary { background: #fff; color: var(--accent); }
  #message { flex: 1; min-width: 120px; }
  #log { list-style: none; margin: 8px 0; padding: 8px; height: 250px; overflow-y: auto; background: var(--bg); border-radius: 6px; }
  #log li { padding: 1px 0; overflow-wrap: anywhere; }
  #log li .from { font-weight: 600; }
  #log li .time { color: var(--muted); font-size: 12px; margin-right: 6px; }
  #log li[data-kind="joined"], #log li[data-kind="left"], #log li[data-kind="renamed"], #log li[data-kind="system"] { color: var(--muted); font-style: italic; }
  #figures .grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 10px; }
  .fig { border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; }
  .fig .label { color: var(--muted); font-size: 12px; }
  .fig .value { font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
  .fig svg { display: block; width: 100%; height: 40px; }
  .fig polyline { fill: none; stroke-width: 1.5; vector-effect: non-scaling-stroke; }
  .key { font-size: 12px; color: var(--muted); }
  .key .nb { color: var(--accent); } .key .bl { color: var(--thread); }
  #figures .note { color: var(--muted); font-size: 12px; margin: 8px 0 0; }
  #lab p { margin: 4px 0 8px; color: var(--muted); }
  #lab fieldset { border: 0; padding: 0; margin: 0; display: flex; gap: 10px; }
  #lab-status { min-height: 1.4em; }
  table { border-collapse: collapse; width: 100%; margin-top: 8px; font-size: 12px; table-layout: fixed; }
  th, td { border: 1px solid var(--line); padding: 4px 6px; vertical-align: top; text-align: left; overflow-wrap: anywhere; }
  th { background: var(--bg); font-weight: 600; }
  th .conn { display: block; font-weight: 400; color: var(--muted); }
  th.event { width: 17%; }
  td .k { color: var(--muted); }
  td .v { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
  td .bad { color: var(--bad); }
  td[data-ok="false"] { background: var(--badbg); }
  td[data-ok="none"] { color: var(--muted); text-align: center; }
  tr.fresh td { animation: fresh 1.2s ease-out; }
  @keyframes fresh { from { background: #eef4ff; } }
</style>
</head>
<body>
<header>
  <h1>netloop</h1>
  <span class="sub">an event-loop network engine for Node.js: <span id="engine-mode">…</span></span>
  <span id="status" data-state="connecting">connecting…</span>
</header>
<main>
  <section id="chat">
    <h2>Chat room <span class="key" id="online-line"></span></h2>
    <form id="name-form"><label>Name <input id="name" maxlength="24" autocomplete="off"></label><button class="secondary">rename</button></form>
    <ol id="log" aria-live="polite"></ol>
    <form id="send-form"><input id="message" maxlength="500" placeholder="Say something to everyone here" autocomplete="off"><button>send</button></form>
  </section>
  <section id="figures">
    <h2>The engine, live <span class="key">(engine.stats() and process.memoryUsage(), every second, the last 30 s)</span></h2>
    <div class="grid">
      <div class="fig" id="fig-conns"><div class="label">connections by I/O mode: <span class="key"><span class="nb">■ poller</span> <span class="bl">■ thread</span></span></div><div class="value" data-value></div><svg viewBox="0 0 120 40" preserveAspectRatio="none"></svg></div>
      <div class="fig" id="fig-messages"><div class="label">WebSocket messages per second (in + out)</div><div class="value" data-value></div><svg viewBox="0 0 120 40" preserveAspectRatio="none"></svg></div>
      <div class="fig" id="fig-queued"><div class="label">bytes queued for the kernel</div><div class="value" data-value></div><svg viewBox="0 0 120 40" preserveAspectRatio="none"></svg></div>
      <div class="fig" id="fig-rss"><div class="label">resident memory (RSS) of the server <span class="key" data-heap></span></div><div class="value" data-value></div><svg viewBox="0 0 120 40" preserveAspectRatio="none"></svg></div>
    </div>
    <p class="note" id="figures-note"></p>
  </section>
  <section id="lab">
    <h2>Close lab: what each I/O mode reports when a connection ends</h2>
    <p>Pick a scenario and the modes: the server starts fresh engines on ephemeral loopback ports, one per mode,
    and a raw client plays the scenario against each. Each cell is what the server saw: the <code>err</code> given to
    <code>onClose</code>, the close handler's call, <code>closeInfo</code> (code, clean, initiator) and what went on the wire.
    A red cell differs from the close contract in DESIGN.md. "mixed, under N" is a connection that got a reader thread;
    "over N" came after <code>maxBlockingOnline</code> (1 here) and is served by the poller.</p>
    <form id="lab-form">
      <select id="lab-event"></select>
      <fieldset id="lab-modes">
        <label><input type="checkbox" value="nonblocking" checked> non-blocking</label>
        <label><input type="checkbox" value="blocking" checked> blocking</label>
        <label><input type="checkbox" value="mixed" checked> mixed</label>
      </fieldset>
      <button id="lab-run">run</button>
      <button type="button" class="secondary" id="lab-featured">run the six featured</button>
      <button type="button" class="secondary" id="lab-all">run every row</button>
    </form>
    <div id="lab-status" role="status"></div>
    <table id="lab-table"><thead></thead><tbody></tbody></table>
  </section>
</main>
<script>
'use strict';
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var SVG = 'http://www.w3.org/2000/svg';
  var POINTS = 30; // seconds of history per chart
  var ws = null;
  var me = '';
  var columns = [];
  var labSeq = 0;
  var labRows = {};
  var series = { poller: [], thread: [], messages: [], queued: [], rss: [] };
  var reconnectTimer = null;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function time(at) {
    var d = new Date(at);
    return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0') + ':' + String(d.getSeconds()).padStart(2, '0');
  }
  function logLine(kind, parts, at) {
    var log = $('log');
    var li = el('li', { 'data-kind': kind });
    li.append(el('span', { class: 'time' }, time(at || Date.now())));
    for (var i = 0; i < parts.length; i++) li.append(parts[i]);
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(li);
    while (log.children.length > 200) log.firstChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }
  function chatLine(m) {
    logLine('chat', [el('span', { class: 'from' }, m.from), document.createTextNode(': ' + m.text)], m.at);
  }
  function setStatus(state, text) {
    $('status').dataset.state = state;
    $('status').textContent = text;
  }
  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(msg)); return true; }
    return false;
  }
  function bytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1048576).toFixed(1) + ' MiB';
  }

  // ---- the chat
  // The name to join with: the box, else the page's own ?name= (a bookmark, a reload after a rename).
  function connect() {
    reconnectTimer = null;
    var name = $('name').value.trim() || new URLSearchParams(location.search).get('name') || '';
    setStatus('connecting', 'connecting…');
    ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws' + (name ? '?name=' + encodeURIComponent(name) : ''));
    ws.onmessage = function (ev) { receive(JSON.parse(ev.data)); };
    ws.onclose = function (ev) {
      setStatus('closed', 'disconnected (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + '): retrying in 2 s');
      logLine('system', [document.createTextNode('connection closed, code ' + ev.code)]);
      if (reconnectTimer === null) reconnectTimer = setTimeout(connect, 2000);
    };
  }
  $('send-form').onsubmit = function (e) {
    e.preventDefault();
    var text = $('message').value.trim();
    if (text && send({ type: 'chat', text: text })) $('message').value = '';
  };
  $('name-form').onsubmit = function (e) {
    e.preventDefault();
    var name = $('name').value.trim();
    if (name && name !== me) send({ type: 'name', name: name });
  };

  function receive(m) {
    switch (m.type) {
      case 'hello':
        me = m.name;
        $('name').value = me;
        history.replaceState(null, '', '?name=' + encodeURIComponent(me));
        setStatus('open', 'connected as ' + me);
        $('engine-mode').textContent = 'this server runs in ' + m.ioMode + ' mode' + (m.ioMode === 'mixed' ? ' (reader threads for at most ' + m.maxBlockingOnline + ' connection' + (m.maxBlockingOnline === 1 ? '' : 's') + ', the poller beyond)' : '') + '; this page is read by ' + (m.conn === 'blocking' ? 'a thread' : 'the poller');
        $('log').replaceChildren();
        m.history.forEach(chatLine);
        setupLab(m);
        break;
      case 'chat': chatLine(m); break;
      case 'joined':
        logLine('joined', [document.createTextNode(m.name + ' joined (read by ' + (m.conn === 'blocking' ? 'a thread' : 'the poller') + ')')]);
        online(m.online);
        break;
      case 'left':
        logLine('left', [document.createTextNode(m.name + ' left: onClose got ' + m.onClose + (m.closeInfo ? ', close code ' + m.closeInfo.code : ''))]);
        online(m.online);
        break;
      case 'renamed':
        if (m.from === me) {
          me = m.to;
          setStatus('open', 'connected as ' + me);
          history.replaceState(null, '', '?name=' + encodeURIComponent(me));
        }
        logLine('renamed', [document.createTextNode(m.from + ' is now ' + m.to)]);
        break;
      case 'stats': figures(m); break;
      case 'lab-queued': labStatus(m.id, m.ahead > 0 ? 'waiting for ' + m.ahead + ' run(s) ahead…' : 'running…'); break;
      case 'lab-row': labRow(m.row); break;
      case 'lab-done': labStatus(m.id, 'done in ' + (m.ms / 1000).toFixed(1) + ' s'); break;
      case 'lab-error': labStatus(m.id, 'error: ' + m.message); break;
      case 'error': logLine('system', [document.createTextNode('server: ' + m.message)]); break;
    }
  }
  function online(n) {
    $('online-line').textContent = n + ' online';
    $('online-line').dataset.online = String(n);
  }

  // ---- the figures: a sparkline per figure, the last POINTS seconds
  function push(a, v) { a.push(v); if (a.length > POINTS) a.shift(); }
  function draw(id, lines) {
    var svg = $(id).querySelector('svg');
    svg.replaceChildren();
    var max = 1;
    lines.forEach(function (l) { l.data.forEach(function (v) { if (v > max) max = v; }); });
    lines.forEach(function (l) {
      var p = document.createElementNS(SVG, 'polyline');
      var pts = l.data.map(function (v, i) {
        var x = (POINTS - l.data.length + i) * (120 / (POINTS - 1));
        return x.toFixed(1) + ',' + (38 - (v / max) * 36).toFixed(1);
      });
      p.setAttribute('points', pts.join(' '));
      p.setAttribute('stroke', l.color);
      svg.append(p);
    });
  }
  function figures(s) {
    push(series.poller, s.nonblocking); push(series.thread, s.blocking);
    push(series.messages, s.messagesInPerSec + s.messagesOutPerSec);
    push(series.queued, s.queuedBytes); push(series.rss, s.rss);
    var set = function (id, text) { var v = $(id).querySelector('[data-value]'); v.textContent = text; };
    set('fig-conns', s.nonblocking + ' poller · ' + s.blocking + ' thread');
    set('fig-messages', s.messagesInPerSec + ' in · ' + s.messagesOutPerSec + ' out');
    set('fig-queued', bytes(s.queuedBytes));
    set('fig-rss', bytes(s.rss));
    $('fig-rss').querySelector('[data-heap]').textContent = '· JS heap ' + bytes(s.heapUsed);
    draw('fig-conns', [{ data: series.poller, color: '#2563eb' }, { data: series.thread, color: '#d97706' }]);
    draw('fig-messages', [{ data: series.messages, color: '#2563eb' }]);
    draw('fig-queued', [{ data: series.queued, color: '#2563eb' }]);
    draw('fig-rss', [{ data: series.rss, color: '#2563eb' }]);
    $('figures').dataset.updates = String(Number($('figures').dataset.updates || 0) + 1);
    $('figures-note').textContent = 'engine totals: ' + bytes(s.bytesIn) + ' in, ' + bytes(s.bytesOut) + ' out; close-lab runs: ' + s.labRuns + (s.labPending ? ' (' + s.labPending + ' pending)' : '');
    online(s.online);
  }

  // ---- the close lab
  var featured = [];
  var allEvents = [];
  function setupLab(m) {
    columns = m.columns;
    featured = m.featured;
    allEvents = m.events;
    var select = $('lab-event');
    var keep = select.value;
    select.replaceChildren();
    var g1 = el('optgroup', { label: 'featured' });
    var g2 = el('optgroup', { label: 'every other row of the contract' });
    m.events.forEach(function (e) { (featured.indexOf(e) >= 0 ? g1 : g2).append(el('option', { value: e }, e)); });
    select.append(g1, g2);
    if (keep) select.value = keep;
    var tr = el('tr');
    tr.append(el('th', { class: 'event' }, 'scenario'));
    columns.forEach(function (c) {
      var th = el('th', { 'data-column': c.name }, c.name);
      th.append(el('span', { class: 'conn' }, c.conn === 'blocking' ? 'read by a thread' : 'read by the poller'));
      tr.append(th);
    });
    $('lab-table').tHead.replaceChildren(tr);
  }
  function modes() {
    return Array.prototype.map.call($('lab-modes').querySelectorAll('input:checked'), function (i) { return i.value; });
  }
  function runLab(events) {
    var id = ++labSeq;
    if (!send({ type: 'lab', id: id, events: events, modes: modes() })) { labStatus(id, 'not connected'); return; }
    labStatus(id, 'asking the server…');
  }
  function labStatus(id, text) {
    $('lab-status').textContent = 'run ' + id + ': ' + text;
    $('lab-status').dataset.run = String(id);
    $('lab-status').dataset.state = text.split(' ')[0];
  }
  $('lab-form').onsubmit = function (e) { e.preventDefault(); runLab([$('lab-event').value]); };
  $('lab-featured').onclick = function () { runLab(featured); };
  $('lab-all').onclick = function () { runLab(allEvents); };

  function line(td, key, cell) {
    var div = el('div');
    div.append(el('span', { class: 'k' }, key + ' '), el('span', { class: 'v' + (cell.ok ? '' : ' bad') }, (cell.ok ? '' : '✗ ') + cell.observed));
    if (!cell.ok) div.append(el('div', { class: 'bad' }, 'contract: ' + cell.expected));
    td.append(div);
  }
  function labRow(row) {
    var tr = el('tr', { 'data-event': row.event, class: 'fresh' });
    tr.append(el('th', { scope: 'row' }, row.event));
    columns.forEach(function (c) {
      var got = row.columns.filter(function (x) { return x.column === c.name; })[0];
      if (!got) { tr.append(el('td', { 'data-column': c.name, 'data-ok': 'none' }, 'not run')); return; }
      var ok = got.onClose.ok && got.handler.ok && got.info.ok && got.wire.ok;
      var td = el('td', { 'data-column': c.name, 'data-ok': String(ok), 'data-onclose': got.onClose.observed });
      line(td, 'onClose', got.onClose);
      line(td, 'handler', got.handler);
      line(td, 'closeInfo', got.info);
      line(td, 'wire', got.wire);
      tr.append(td);
    });
    var body = $('lab-table').tBodies[0];
    var old = labRows[row.event];
    if (old && old.parentNode === body) body.replaceChild(tr, old);
    else body.append(tr);
    labRows[row.event] = tr;
  }

  connect();
})();
</script>
</body>
</html>
`;
