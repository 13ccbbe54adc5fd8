// The scenarios `npm run bench -- <name>` knows. Add one by writing a module like tcp-echo.js and
// listing it here.
import tcpEcho from './tcp-echo.js';
import wsEcho from './ws-echo.js';
import wsHold from './ws-hold.js';

export const scenarios = {
  [tcpEcho.name]: tcpEcho,
  [wsEcho.name]: wsEcho,
  [wsHold.name]: wsHold,
};
