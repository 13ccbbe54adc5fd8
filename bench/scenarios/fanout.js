// fanout: topics. One publisher, N subscribers, every message delivered to every subscriber
// (the publisher among them) through the server's topics: netloop's Upgrader.publish in one
// engine (netloop), the same across 6 worker processes whose primary relays publishes
// (netloop-workers), and uWebSockets.js's app.publish in one process (uws). The generator is the
// native load generator's broadcast mode (bench/native/loadgen/mode_broadcast.cc): at most
// `inflight` messages on their way to everyone at once, every delivery checked byte for byte and
// counted, publish-to-deliver latency per delivery (p50/p99) and to the last subscriber.
//
// 100,000 subscribers: one generator process holds them all (a closed loop needs the publisher
// and every subscriber in one process), and a process may open 20,000 files here, so the
// scenario refuses more than harness/hold-levels.js's PER_PROCESS_CONNS and says so; a fan-out to
// 100,000 needs a generator split over processes that this scenario does not have yet.
import broadcast from './broadcast.js';
import { int, sizeLabel } from './common.js';
import { PER_PROCESS_CONNS } from '../harness/hold-levels.js';

export default {
  ...broadcast,
  name: 'fanout',
  summary: 'topics: one publisher to N subscribers (netloop, netloop across 6 workers, 3 netloop servers sharing a Redis, uWS.js): deliveries/s, publish-to-deliver p50/p99',
  defaultServers: ['netloop', 'netloop-workers', 'netloop-redis', 'uws'],
  options: {
    ...broadcast.options,
    conns: { ...broadcast.options.conns, help: `subscribers (the publisher among them), at most ${int(PER_PROCESS_CONNS)} (one generator process)` },
    'server-workers': { default: 6, min: 1, integer: true, help: 'worker processes of netloop-workers' },
    'redis-servers': { default: 3, min: 1, integer: true, help: 'netloop servers sharing one Redis in netloop-redis' },
  },
  title: (o) => `fanout: 1 publisher to ${int(o.conns)} subscribers, ${sizeLabel(o.size)} ${o['msg-type']}, ${o.inflight} in flight`,
  cases: (o) => {
    if (o.conns > PER_PROCESS_CONNS) {
      throw new Error(
        `fanout --conns ${o.conns}: impossible here: one generator process holds every subscriber and the publisher, and a process may hold ${int(PER_PROCESS_CONNS)} (20,000 open files); a multi-process fan-out generator is not written yet`,
      );
    }
    return broadcast.cases(o).map((c) => ({ ...c, id: 'fanout', label: `${int(o.conns)} subscribers, ${sizeLabel(o.size)}`, ratioAgainst: ['uws'] }));
  },
};
