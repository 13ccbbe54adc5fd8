// netloop/redis behind real engines: three netloop servers (three engines on three loopback
// ports, in this process) share a real redis-server (and then a 3-master Redis Cluster with
// sharded channels); `ws` clients subscribe on each and publish through each. Every publish must
// reach every subscriber exactly once, in its publisher's order, never the publishing connection
// itself; Redis killed and restarted mid-stream must not stop the servers.
import t from 'tap';
import WebSocket from 'ws';
import { redisPubSub } from '../dist/pubsub/redis.js';
import { startRedis, startRedisCluster, withRedis } from './helpers/redis.js';
import { startServer, until, sleep } from './helpers/ws-peer.js';

withRedis(t, run);

/** A server whose connections subscribe to the topics their path names and publish "topic|text". */
async function server(t, name, adapterOptions) {
  const gaps = [];
  const errors = [];
  const pubsub = redisPubSub({ onGap: (g) => gaps.push(g), onError: (e) => errors.push(e), ...adapterOptions });
  const s = await startServer(t, { pubsub }, {
    onOpen: (c) => c.path.slice(1).split(',').filter(Boolean).forEach((topic) => c.subscribe(topic)),
    // "topic|text" is published; anything else is echoed (plain traffic, no topics).
    onMessage: (c, _type, data) => {
      const [topic, text] = data.toString().split('|');
      if (text === undefined) c.writeMessage('text', `echo:${topic}`);
      else c.publish(topic, text, 'text');
    },
  });
  return Object.assign(s, { name, pubsub, gaps, errors });
}

async function client(t, addr, path = '') {
  const ws = new WebSocket(`ws://${addr}/${path}`);
  ws.got = [];
  ws.on('message', (d) => ws.got.push(d.toString()));
  ws.on('error', () => {});
  t.teardown(() => ws.terminate());
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

/** Messages of the form "sender:seq" grouped by sender, in arrival order. */
function bySender(got, topic) {
  const m = new Map();
  for (const text of got) {
    const [top, sender, seq] = text.split(':');
    if (top !== topic) continue;
    if (!m.has(sender)) m.set(sender, []);
    m.get(sender).push(Number(seq));
  }
  return m;
}

const range = (n, from = 0) => Array.from({ length: n }, (_, i) => from + i);

/**
 * Three servers, on each a subscriber that only listens and a subscriber that also publishes
 * COUNT messages on every topic: each listener gets 3 x COUNT per topic, each publishing
 * subscriber 2 x COUNT (not its own).
 */
async function exactlyOnce(t, servers, topics, COUNT, waitSubscribed) {
  const path = topics.join(',');
  const listeners = [];
  const talkers = [];
  for (const s of servers) {
    listeners.push(await client(t, s.addr, path));
    talkers.push(await client(t, s.addr, path));
  }
  await waitSubscribed();
  await sleep(100);
  for (let seq = 0; seq < COUNT; seq++) {
    for (let i = 0; i < servers.length; i++) {
      for (const topic of topics) talkers[i].send(`${topic}|${topic}:${servers[i].name}:${seq}`);
    }
  }
  const want = topics.length * COUNT;
  await until(
    () => listeners.every((l) => l.got.length >= 3 * want) && talkers.every((w) => w.got.length >= 2 * want),
    20_000,
    'every delivery',
  );
  await sleep(200); // a duplicate would show up within this
  for (let i = 0; i < servers.length; i++) {
    for (const topic of topics) {
      const l = bySender(listeners[i].got, topic);
      const w = bySender(talkers[i].got, topic);
      for (const s of servers) {
        t.same(l.get(s.name), range(COUNT), `${servers[i].name}'s listener: ${s.name}'s ${COUNT} on ${topic}, once each, in order`);
        if (s === servers[i]) t.equal(w.get(s.name), undefined, `${servers[i].name}'s publisher: none of its own on ${topic}`);
        else t.same(w.get(s.name), range(COUNT), `${servers[i].name}'s publisher: ${s.name}'s ${COUNT} on ${topic}, once each, in order`);
      }
    }
    t.equal(listeners[i].got.length, 3 * want, `${servers[i].name}'s listener: nothing else`);
    t.equal(talkers[i].got.length, 2 * want, `${servers[i].name}'s publisher: nothing else`);
  }
  for (const s of servers) t.same(s.errors.map((e) => e.message), [], `${s.name}: no adapter error`);
  return { listeners, talkers };
}

const numsub = (node, channel, cmd = 'NUMSUB') => Number(node.cli('PUBSUB', cmd, channel).split('\n')[1]);

function run() {
  t.test('three netloop servers on one Redis: exactly once to each subscriber, publisher order, publisher skipped', async (t) => {
    const redis = await startRedis();
    const servers = [];
    for (const name of ['s1', 's2', 's3']) servers.push(await server(t, name, { url: redis.url }));
    const { listeners, talkers } = await exactlyOnce(t, servers, ['room'], 200, () =>
      until(() => numsub(redis, 'netloop:room') === 3, 10_000, 'three Redis subscriptions'),
    );
    // The last local subscriber leaves: the server's Redis subscription goes.
    listeners[0].terminate();
    talkers[0].terminate();
    await until(() => numsub(redis, 'netloop:room') === 2, 5000, 'two Redis subscriptions left');
    t.equal(servers[0].up.numSubscribers('room'), 0, 's1 has no local subscriber');
    t.pass('PUBSUB NUMSUB went from 3 to 2 when s1 lost its last subscriber');
    for (const s of servers) await s.engine.stop();
    await until(() => numsub(redis, 'netloop:room') === 0, 5000, 'no subscription once the engines stopped');
    t.pass('the engines stopped closed their adapters');
    await redis.stop();
  });

  t.test('the same over a 3-master Redis Cluster, sharded channels on every master', async (t) => {
    const cluster = await startRedisCluster();
    t.teardown(() => cluster.stop());
    const topics = [];
    const owners = new Set();
    for (let i = 0; owners.size < 3; i++) {
      topics.push(`t${i}`);
      owners.add(cluster.ownerOf(`netloop:t${i}`).port);
    }
    const servers = [];
    for (const name of ['s1', 's2', 's3']) servers.push(await server(t, name, { cluster: { rootNodes: cluster.rootNodes } }));
    await exactlyOnce(t, servers, topics, 40, async () => {
      for (const topic of topics) {
        const owner = cluster.ownerOf(`netloop:${topic}`);
        await until(() => numsub(owner, `netloop:${topic}`, 'SHARDNUMSUB') === 3, 10_000, `${topic} on its master`);
      }
    });
    t.pass(`${topics.length} topics over ${owners.size} masters`);
  });

  t.test('Redis killed (SIGKILL) and restarted mid-stream: the servers keep serving, report the gap, deliver again', async (t) => {
    let redis = await startRedis();
    const servers = [];
    for (const name of ['s1', 's2']) servers.push(await server(t, name, { url: redis.url, pingInterval: 500 }));
    const [sub1, sub2] = [await client(t, servers[0].addr, 'live'), await client(t, servers[1].addr, 'live')];
    const pub = await client(t, servers[0].addr);
    await until(() => numsub(redis, 'netloop:live') === 2, 10_000, 'two Redis subscriptions');
    await sleep(100);
    let seq = 0;
    const send = (n) => {
      for (let i = 0; i < n; i++) pub.send(`live|live:p:${seq++}`);
    };
    send(50);
    await until(() => sub1.got.length === 50 && sub2.got.length === 50, 5000, 'the first 50 on both servers');

    const killedAt = Date.now();
    await redis.kill('SIGKILL');
    await until(() => servers.every((s) => s.errors.length > 0), 5000, 'both servers saw Redis go');
    send(20);
    await until(() => sub1.got.length === 70, 5000, 's1 delivers its own publishes during the outage');
    // WebSocket traffic goes on: the old connections, and a new one.
    const fresh = await client(t, servers[1].addr);
    fresh.send('ping');
    await until(() => fresh.got.includes('echo:ping'), 5000, 'a new connection served during the outage');
    t.equal(sub2.got.length, 50, 's2 got none of the outage publishes (at most once)');

    const restartAt = Date.now();
    redis = await redis.restart();
    await until(() => numsub(redis, 'netloop:live') === 2, 15_000, 'resubscribed after the restart');
    await until(() => servers.every((s) => s.gaps.some((g) => g.kind === 'subscribe')), 5000, 'the gap hook');
    for (const s of servers) {
      const g = s.gaps.find((g) => g.kind === 'subscribe');
      t.same(g.topics, ['live'], `${s.name}: the gap names the topic`);
      t.ok(g.from >= killedAt - 50 && g.to >= restartAt - 50 && g.to >= g.from, `${s.name}: from the kill to after the restart`);
    }
    // The publishing connection comes back on its own backoff: resend until one gets through.
    for (let i = 0; !(sub2.got.length > 50) && i < 150; i++) {
      send(1);
      await sleep(100);
    }
    await until(() => sub2.got.length > 50, 5000, 's2 delivers again');
    await sleep(200);
    const seqs = (ws) => ws.got.map((m) => Number(m.split(':')[2]));
    const after = seqs(sub2).slice(50);
    t.ok(after.every((v, i) => i === 0 || v > after[i - 1]), 's2: the later messages in order');
    t.same(seqs(sub1), range(seq), 's1: every message of its own publisher, in order, once');
    t.ok(servers[0].gaps.some((g) => g.kind === 'publish' && g.count >= 1), 's1 reported the publishes Redis never got');
  });
}
