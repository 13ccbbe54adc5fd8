// The close reporting contract (DESIGN.md) in the blocking and mixed I/O
// modes: the same rows as test/websocket-close-contract.test.js, the same
// scenarios and wire bytes, with the blocking column's onClose errors. The
// mixed mode runs on both sides of maxBlockingOnline.
import t from 'tap';
import { runContract } from './helpers/close-contract.js';

t.setTimeout(120000);
const only = process.env.NETLOOP_CONTRACT_MODE;
for (const mode of ['blocking', 'mixed, under maxBlockingOnline', 'mixed, over maxBlockingOnline']) {
  if (only === undefined || only === mode) runContract(t, mode);
}
