// The scenarios `npm run bench -- <name>` knows. Add one by writing a module like echo.js (with
// cases()) or tcp-echo.js (one case) and listing it here.
//
// echo, latency, hold, broadcast, fanout, churn, modes: the scenarios of the harness; soak drives its
// server itself (run(): JS generators, samples over time) and reports its own way; ws-api and
// socketio: the ws-compatible API (netloop/ws) against ws, alone and under Socket.IO.
// tcp-echo, ws-echo, ws-hold: the first three, kept as they were (one case each; same flags,
// same tables), so earlier commands and figures stay reproducible.
import broadcast from './broadcast.js';
import churn from './churn.js';
import echo from './echo.js';
import fanout from './fanout.js';
import hold from './hold.js';
import latency from './latency.js';
import modes from './modes.js';
import socketio from './socketio.js';
import soak from './soak.js';
import tcpEcho from './tcp-echo.js';
import wsEcho from './ws-echo.js';
import wsApi from './ws-api.js';
import wsHold from './ws-hold.js';

export const scenarios = Object.fromEntries([echo, latency, hold, broadcast, fanout, churn, modes, soak, wsApi, socketio, tcpEcho, wsEcho, wsHold].map((s) => [s.name, s]));

// A scenario as a list of cases (what one load generator run measures): the one-case scenarios
// (tcp-echo, ws-echo, ws-hold) are their own single case.
export function casesOf(scenario, o) {
  if (scenario.cases) return scenario.cases(o);
  return [{
    id: scenario.name,
    label: scenario.title(o),
    kind: scenario.kind,
    proto: scenario.proto,
    role: 'echo',
    conns: o.conns,
    ratioAgainst: scenario.ratioAgainst,
    loadgenArgs: scenario.loadgenArgs(o),
    timeoutS: scenario.timeoutS(o),
    pauseS: scenario.pauseS,
  }];
}
