// ws-api: the same WebSocket echo program on the `ws` package and on netloop/ws (the
// ws-compatible API: bench/servers/netloop-ws-echo.js is ws-echo.js with its import changed),
// with netloop's own API beside them; the native generator, echo's grid and tables.
import echo from './echo.js';

export default {
  ...echo,
  name: 'ws-api',
  summary: 'the ws API echo: ws vs netloop/ws (same program), netloop\'s own API beside them',
  defaultServers: () => ['ws', 'netloop-ws', 'netloop'],
  options: {
    ...echo.options,
    proto: { ...echo.options.proto, default: 'ws', choices: ['ws'] },
    size: { ...echo.options.size, default: '64,16384' },
  },
  title: (o) => `ws API echo: ${o.conns.join('/')} conns x ${o.inflight.join('/')} in flight x ${o.size.join('/')} B, ${o['msg-type'].join(' and ')}`,
  cases: (o) => echo.cases(o).map((c) => ({ ...c, ratioAgainst: ['ws'] })),
};
