// The modes, one file each (mode_*.cc): the main thread's run_*() and the Worker methods that
// only that mode uses. Each returns the process exit code and prints the run's JSON line.
#ifndef NETLOOP_LOADGEN_MODES_H_
#define NETLOOP_LOADGEN_MODES_H_

#include "plan.h"

namespace loadgen {

// Echo (default): closed loop (--inflight per connection) or open loop (--rate).
int run_echo(Plan& plan);
// --churn: connect, (upgrade,) one message, close, again, per slot.
int run_churn(Plan& plan);
// --broadcast: connection 0 publishes, every connection receives every message.
int run_broadcast(Plan& plan);
// --hold: open, hold idle (and ping), report the server's RSS per connection.
int run_hold(Plan& plan);
// --self-test: the codecs and the pattern, without a server.
int self_test();

}  // namespace loadgen

#endif  // NETLOOP_LOADGEN_MODES_H_
