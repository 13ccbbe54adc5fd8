// netloop/redis, the adapter on its own against real redis-servers (one node, and a 3-master
// cluster): several adapters stand for several servers; each one's deliveries are recorded the
// way the engine makes them (what the adapter hands back through deliver, plus what publish()
// leaves to the engine by returning false). The same adapter behind real engines and ws clients
// is in pubsub-redis-engines.test.js.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { redisPubSub } from '../dist/pubsub/redis.js';
import { REDIS_CLI, startRedis, startRedisCluster, withRedis } from './helpers/redis.js';
import { until } from './helpers/engine.js';

withRedis(t, run);

/** An adapter with the engine's side of the contract around it, recording every delivery. */
function server(name, options, topics) {
  const received = []; // { topic, text, type }
  const errors = [];
  const gaps = [];
  const adapter = redisPubSub({ onError: (e) => errors.push(e), onGap: (g) => gaps.push(g), ...options });
  const local = new Set(topics);
  adapter.attach((topic, data, type) => {
    if (local.has(topic)) received.push({ topic, data: Buffer.from(data), type });
  });
  for (const topic of topics) adapter.subscribe(topic);
  return {
    name,
    adapter,
    received,
    errors,
    gaps,
    publish(topic, data, type) {
      if (!adapter.publish(topic, data, type) && local.has(topic)) received.push({ topic, data: Buffer.from(data), type });
    },
    unsubscribe(topic) {
      local.delete(topic);
      adapter.unsubscribe(topic);
    },
  };
}

const numsub = (node, channel, cmd = 'NUMSUB') => Number(node.cli('PUBSUB', cmd, channel).split('\n')[1]);

// A payload that says who sent it and its number, in text or in binary with every byte value.
function payload(from, seq) {
  if (seq % 2 === 0) return { data: Buffer.from(`${from}:${seq}:é`), type: 'text' };
  const b = Buffer.alloc(256 + 8);
  b.write(from.padEnd(4, ' '), 0, 'latin1');
  b.writeUInt32BE(seq, 4);
  for (let i = 0; i < 256; i++) b[8 + i] = i;
  return { data: b, type: 'binary' };
}

function parse(r) {
  if (r.type === 'text') {
    const [from, seq, tail] = r.data.toString('utf8').split(':');
    return { from, seq: Number(seq), ok: tail === 'é' };
  }
  const from = r.data.subarray(0, 4).toString('latin1').trim();
  const seq = r.data.readUInt32BE(4);
  let ok = r.data.length === 264;
  for (let i = 0; ok && i < 256; i++) ok = r.data[8 + i] === i;
  return { from, seq, ok };
}

/** Every publisher's messages exactly once, in its order, intact. */
function checkExactlyOnce(t, srv, topic, publishers, count) {
  const got = srv.received.filter((r) => r.topic === topic).map(parse);
  t.equal(got.length, publishers.length * count, `${srv.name}: ${publishers.length * count} deliveries on ${topic}`);
  t.ok(got.every((g) => g.ok), `${srv.name}: every payload intact, types kept`);
  for (const p of publishers) {
    const seqs = got.filter((g) => g.from === p).map((g) => g.seq);
    t.same(seqs, Array.from({ length: count }, (_, i) => i), `${srv.name}: ${p}'s ${count} messages once each, in order`);
  }
}

function run() {
  t.test('three servers on one Redis: every publish once to every subscriber, order per publisher kept', async (t) => {
    const redis = await startRedis();
    const servers = ['s1', 's2', 's3'].map((n) => server(n, { url: redis.url }, ['room']));
    t.teardown(() => Promise.all(servers.map((s) => s.adapter.close())));
    await until(() => numsub(redis, 'netloop:room') === 3, 10_000, 'three subscriptions');
    // Redis has them; let the adapters read its confirmations (until then a publish is delivered
    // locally at once, which is right but would change the interleaving checked below).
    await new Promise((r) => setTimeout(r, 100));
    const COUNT = 300;
    for (let seq = 0; seq < COUNT; seq++) {
      for (const s of servers) {
        const { data, type } = payload(s.name, seq);
        s.publish('room', data, type);
      }
    }
    await until(() => servers.every((s) => s.received.length >= 3 * COUNT), 15_000, 'every delivery');
    await new Promise((r) => setTimeout(r, 200)); // a duplicate would arrive within this
    for (const s of servers) checkExactlyOnce(t, s, 'room', ['s1', 's2', 's3'], COUNT);
    // Every server saw the one order Redis gave the messages (delivery on the way back).
    const order = (s) => s.received.map((r) => { const p = parse(r); return `${p.from}:${p.seq}`; }).join(',');
    t.equal(order(servers[1]), order(servers[0]), 's2 saw the same interleaving as s1');
    t.equal(order(servers[2]), order(servers[0]), 's3 saw the same interleaving as s1');
    t.same(servers.map((s) => s.errors.length), [0, 0, 0], 'no errors');
    t.same(servers.map((s) => s.adapter.stats.published), [COUNT, COUNT, COUNT], 'each server published its messages to Redis once');
    await redis.stop();
  });

  t.test('connect() before attach: resolves once Redis answers, once; attach reuses the connection', async (t) => {
    const redis = await startRedis();
    const errors = [];
    const adapter = redisPubSub({ url: redis.url, onError: (e) => errors.push(e) });
    t.teardown(() => adapter.close());
    const clients = () => redis.cli('CLIENT', 'LIST').split('\n').filter((l) => l.includes('id=')).length;
    const before = clients();
    const first = adapter.connect();
    t.equal(adapter.connect(), first, 'a second call returns the same promise');
    await first;
    const connected = clients();
    t.ok(connected > before, `connected to Redis before the engine's attach (${before} -> ${connected} clients)`);
    // The subscription made at the first local subscriber is live at once: a message from another
    // server published right after Redis confirmed it reaches this one.
    const got = [];
    adapter.attach((topic, data) => got.push(`${topic}:${Buffer.from(data).toString()}`));
    t.equal(clients(), connected, 'attach opened no further connection');
    adapter.subscribe('room');
    await until(() => numsub(redis, 'netloop:room') === 1, 5000, 'the subscription');
    const other = server('other', { url: redis.url }, []);
    t.teardown(() => other.adapter.close());
    await other.adapter.connect();
    other.publish('room', Buffer.from('hi'), 'text');
    await until(() => got.length === 1, 5000, 'the delivery');
    t.same(got, ['room:hi']);
    t.same(errors, [], 'no errors');
    await redis.stop();
  });

  t.test('a Redis channel only while there are local subscribers (PUBSUB NUMSUB and SHARDNUMSUB)', async (t) => {
    const redis = await startRedis();
    for (const sharded of [false, true]) {
      const cmd = sharded ? 'SHARDNUMSUB' : 'NUMSUB';
      const a = server('a', { url: redis.url, sharded, prefix: 'p:' }, []);
      const b = server('b', { url: redis.url, sharded, prefix: 'p:' }, []);
      t.equal(numsub(redis, 'p:t', cmd), 0, `${cmd}: no subscription before a local subscriber`);
      a.adapter.subscribe('t');
      b.adapter.subscribe('t');
      await until(() => numsub(redis, 'p:t', cmd) === 2, 5000, 'two subscriptions');
      a.unsubscribe('t');
      await until(() => numsub(redis, 'p:t', cmd) === 1, 5000, 'one left');
      // Subscribe again at once after leaving: the adapter orders its commands per topic.
      b.adapter.unsubscribe('t');
      b.adapter.subscribe('t');
      b.adapter.unsubscribe('t');
      await until(() => numsub(redis, 'p:t', cmd) === 0, 5000, 'none left');
      await new Promise((r) => setTimeout(r, 100));
      t.equal(numsub(redis, 'p:t', cmd), 0, `${cmd}: 0 once the last local subscriber left`);
      // A publish with no local subscriber anywhere still goes out, and nobody gets it.
      a.publish('t', Buffer.from('x'), 'text');
      await until(() => a.adapter.stats.published === 1, 5000, 'the publish acknowledged');
      t.equal(a.received.length + b.received.length, 0, 'nothing delivered without subscribers');
      await Promise.all([a.adapter.close(), b.adapter.close()]);
    }
    await redis.stop();
  });

  t.test('Redis killed and restarted mid-stream: gap reported, resubscribed, delivering again', async (t) => {
    let redis = await startRedis();
    const servers = ['s1', 's2'].map((n) => server(n, { url: redis.url, pingInterval: 500 }, ['live']));
    t.teardown(() => Promise.all(servers.map((s) => s.adapter.close())));
    await until(() => numsub(redis, 'netloop:live') === 2, 10_000, 'two subscriptions');
    let seq = 0;
    const send = () => {
      const { data, type } = payload('s1', seq++);
      servers[0].publish('live', data, type);
    };
    for (let i = 0; i < 50; i++) send();
    await until(() => servers.every((s) => s.received.length === 50), 5000, 'the first 50 everywhere');

    const killedAt = Date.now();
    await redis.kill('SIGKILL');
    await until(() => servers.every((s) => s.errors.length > 0), 5000, 'both adapters saw the connection fail');
    // During the outage: the publishing server's own subscribers still get its messages (the
    // topic has no live Redis subscription), the other server cannot; nothing is queued.
    for (let i = 0; i < 20; i++) send();
    t.equal(servers[0].received.length, 70, 'local subscribers served during the outage');
    t.equal(servers[1].received.length, 50, 'the other server got none of them');
    await new Promise((r) => setTimeout(r, 300));

    const restartedAt = Date.now();
    redis = await redis.restart();
    await until(() => numsub(redis, 'netloop:live') === 2, 15_000, 'both resubscribed after the restart');
    // The publishing connection reconnects on its own backoff: probe (on another topic) until a
    // publish gets through.
    await until(() => {
      servers[0].adapter.publish('probe', Buffer.from('p'), 'text');
      return servers[0].adapter.stats.published > 50;
    }, 15_000, 'the publisher back');
    await new Promise((r) => setTimeout(r, 50));
    await until(() => servers.every((s) => s.gaps.some((g) => g.kind === 'subscribe')), 5000, 'the subscribe gap reports');
    for (const s of servers) {
      const g = s.gaps.find((g) => g.kind === 'subscribe');
      t.same(g.topics, ['live'], `${s.name}: the gap names the topic`);
      t.ok(g.from >= killedAt - 50 && g.from <= restartedAt, `${s.name}: the gap starts at the failure`);
      t.ok(g.to >= restartedAt - 50 && g.to <= Date.now(), `${s.name}: and ends after the restart`);
    }
    for (let i = 0; i < 30; i++) send();
    await until(() => servers[1].received.length === 80 && servers[0].received.length === 100, 10_000, 'delivering again');
    await until(() => servers[0].gaps.some((g) => g.kind === 'publish'), 5000, 'the publish gap report');
    const pg = servers[0].gaps.find((g) => g.kind === 'publish');
    t.ok(pg.count >= 20, `the 20 publishes that could not reach Redis are reported (${pg.count} with the probes)`);
    t.equal(pg.topics[0], 'live', 'with their topic');
    const seqs = (s) => s.received.map((r) => parse(r).seq);
    t.same(seqs(servers[0]), Array.from({ length: 100 }, (_, i) => i), 'the publishing server: all 100, in order');
    t.same(seqs(servers[1]), [...Array.from({ length: 50 }, (_, i) => i), ...Array.from({ length: 30 }, (_, i) => 70 + i)], 'the other: all but the outage, in order');
    await redis.stop();
  });

  t.test('messages on the channel that are not netloop envelopes are dropped and reported', async (t) => {
    const redis = await startRedis();
    const s = server('s', { url: redis.url }, ['t']);
    t.teardown(() => s.adapter.close());
    await until(() => numsub(redis, 'netloop:t') === 1, 5000, 'subscribed');
    const pub = (hex) => spawnSync(REDIS_CLI, ['-p', String(redis.port), '-x', 'PUBLISH', 'netloop:t'], { input: Buffer.from(hex, 'hex') });
    pub('01'); // shorter than the header
    pub('0900' + '00'.repeat(12) + '41'); // unknown version
    pub('01f0' + '00'.repeat(12) + '41'); // unknown flags
    pub('0100' + '00'.repeat(12) + 'c328'); // text, invalid UTF-8
    pub('0101' + '00'.repeat(12) + 'c328'); // binary: any bytes
    await until(() => s.received.length === 1 && s.adapter.stats.malformed === 4, 5000, 'all five handled');
    t.same(s.received[0].data, Buffer.from('c328', 'hex'), 'the valid binary envelope delivered');
    t.equal(s.errors.filter((e) => e.code === 'NETLOOP_PUBSUB_MALFORMED').length, 4, 'four reported as malformed');
    t.match(s.errors.map((e) => e.message).join('\n'), /not valid UTF-8/, 'with the reason');
    await redis.stop();
  });

  t.test('maxPendingBytes bounds what waits for Redis: past it publishes are dropped and reported', async (t) => {
    const redis = await startRedis();
    const s = server('s', { url: redis.url, maxPendingBytes: 100 }, ['t']);
    t.teardown(() => s.adapter.close());
    await until(() => numsub(redis, 'netloop:t') === 1, 5000, 'subscribed');
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 3; i++) s.publish('t', Buffer.alloc(60, i), 'binary'); // 74 bytes each with the header
    await until(() => s.received.length === 1, 5000, 'the first delivered');
    s.publish('t', Buffer.alloc(60, 9), 'binary');
    await until(() => s.gaps.some((g) => g.kind === 'publish'), 5000, 'the drop report');
    const g = s.gaps.find((g) => g.kind === 'publish');
    t.equal(g.count, 2, 'two publishes dropped');
    t.match(g.reason, /maxPendingBytes/, 'the reason names the limit');
    await until(() => s.received.length === 2, 5000, 'the next one delivered');
    t.same(s.received.map((r) => r.data[0]), [0, 9], 'the dropped ones delivered nowhere, the others in order');
    t.equal(s.adapter.stats.pendingBytes, 0, 'nothing pending');
    await redis.stop();
  });

  t.test('without node-redis installed: a clear error, and only when the adapter is made', async (t) => {
    // A copy of dist/ where no node_modules can be found above it.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'netloop-no-redis-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.cpSync(fileURLToPath(new URL('../dist/', import.meta.url)), path.join(dir, 'dist'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}');
    const script = `
      const m = await import('./dist/pubsub/redis.js');
      console.log('loaded');
      try { m.redisPubSub({ url: 'redis://127.0.0.1:1' }); } catch (e) { console.log(e.code, e.message); }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: dir, encoding: 'utf8', env: { ...process.env, NODE_PATH: '' } });
    t.equal(r.status, 0, 'exits normally');
    t.match(r.stdout, /^loaded\n/, 'importing netloop/redis loads no Redis client');
    t.match(r.stdout, /NETLOOP_REDIS_MISSING .*npm install redis/, 'making an adapter says what to install');
  });

  t.test('options are validated', async (t) => {
    t.throws(() => redisPubSub({ url: 'redis://x', cluster: { rootNodes: [{ url: 'redis://y' }] } }), TypeError);
    t.throws(() => redisPubSub({ cluster: { rootNodes: [] } }), /rootNodes/);
    t.throws(() => redisPubSub({ url: 'redis://127.0.0.1:1', maxPendingBytes: -1 }), /maxPendingBytes/);
    t.throws(() => redisPubSub({ url: 'redis://127.0.0.1:1', prefix: 3 }), /prefix/);
  });

  t.test('a 3-master cluster, sharded channels over every master', async (t) => {
    const cluster = await startRedisCluster();
    t.teardown(() => cluster.stop());
    // Topics until every master owns at least one of them.
    const topics = [];
    const owners = new Set();
    for (let i = 0; owners.size < 3 || topics.length < 6; i++) {
      topics.push(`topic-${i}`);
      owners.add(cluster.ownerOf(`netloop:topic-${i}`).port);
    }
    const servers = ['s1', 's2', 's3'].map((n) => server(n, { cluster: { rootNodes: cluster.rootNodes } }, topics));
    t.teardown(() => Promise.all(servers.map((s) => s.adapter.close())));
    for (const topic of topics) {
      const owner = cluster.ownerOf(`netloop:${topic}`);
      await until(() => numsub(owner, `netloop:${topic}`, 'SHARDNUMSUB') === 3, 10_000, `three shard subscriptions of ${topic}`);
    }
    const COUNT = 60;
    for (let seq = 0; seq < COUNT; seq++) {
      for (const s of servers) {
        for (const topic of topics) {
          const { data, type } = payload(s.name, seq);
          s.publish(topic, data, type);
        }
      }
    }
    const total = 3 * COUNT * topics.length;
    await until(() => servers.every((s) => s.received.length >= total), 20_000, 'every delivery');
    await new Promise((r) => setTimeout(r, 200));
    for (const s of servers) for (const topic of topics) checkExactlyOnce(t, s, topic, ['s1', 's2', 's3'], COUNT);
    t.same(servers.map((s) => s.errors.length), [0, 0, 0], 'no errors');
    // The last local subscriber leaves: the shard channel is gone from its master.
    const topic = topics[0];
    for (const s of servers) s.unsubscribe(topic);
    const owner = cluster.ownerOf(`netloop:${topic}`);
    await until(() => numsub(owner, `netloop:${topic}`, 'SHARDNUMSUB') === 0, 5000, 'SSUBSCRIBE undone');
    t.pass(`SHARDNUMSUB of ${topic} is 0 on its master`);
  });

  t.test('a cluster master killed and restarted: only its topics have a gap, the others keep flowing', async (t) => {
    const cluster = await startRedisCluster();
    t.teardown(() => cluster.stop());
    const topics = ['a', 'b', 'c', 'd', 'e', 'f'];
    let victim = cluster.ownerOf('netloop:a');
    const onVictim = topics.filter((x) => cluster.ownerOf(`netloop:${x}`) === victim);
    const others = topics.filter((x) => !onVictim.includes(x));
    t.ok(others.length > 0, `topics elsewhere: ${others}`);
    const servers = ['s1', 's2'].map((n) => server(n, { cluster: { rootNodes: cluster.rootNodes }, pingInterval: 500 }, topics));
    t.teardown(() => Promise.all(servers.map((s) => s.adapter.close())));
    const subscribedEverywhere = (node) => (x) => numsub(node ?? cluster.ownerOf(`netloop:${x}`), `netloop:${x}`, 'SHARDNUMSUB') === 2;
    await until(() => topics.every(subscribedEverywhere()), 15_000, 'every topic subscribed by both');
    await new Promise((r) => setTimeout(r, 100));
    const publishAll = (k) => topics.forEach((x) => servers[0].publish(x, Buffer.from(`${k}`), 'text'));
    const on = (s, k) => s.received.filter((r) => r.data.toString() === `${k}`).map((r) => r.topic).sort();
    publishAll(1);
    await until(() => servers.every((s) => on(s, 1).length === 6), 5000, 'round 1 everywhere');

    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    await until(() => servers[1].errors.length > 0, 5000, 's2 saw the master go');
    await new Promise((r) => setTimeout(r, 300));
    publishAll(2);
    await until(() => on(servers[1], 2).length === others.length, 5000, 'round 2 on the other masters');
    await new Promise((r) => setTimeout(r, 200));
    t.same(on(servers[1], 2), others, 's2: the topics of the live masters kept flowing, the dead one\'s did not');
    t.same(on(servers[0], 2), topics, 's1: all its own publishes to its subscribers (those of the dead master at once)');

    victim = await victim.restart();
    await until(() => /cluster_state:ok/.test(victim.cli('CLUSTER', 'INFO')), 20_000, 'the cluster ok again');
    await until(() => onVictim.every(subscribedEverywhere(victim)), 20_000, 'resubscribed on the restarted master');
    await until(() => servers.every((s) => s.gaps.some((g) => g.kind === 'subscribe')), 5000, 'the gap reports');
    for (const s of servers) {
      const g = s.gaps.find((g) => g.kind === 'subscribe');
      t.same([...g.topics].sort(), onVictim, `${s.name}: the gap names exactly the dead master's topics`);
      t.ok(g.from >= killedAt - 50 && g.to > g.from, `${s.name}: from the kill to the resubscription`);
    }
    // The publishing connection to that master comes back on its own backoff.
    for (let k = 3; on(servers[1], k).length < 6; k++) {
      if (k > 100) throw new Error('round k never reached every topic');
      publishAll(k);
      await new Promise((r) => setTimeout(r, 200));
      if (on(servers[1], k).length === 6) break;
    }
    t.pass('a later round reached every topic on both servers');
  });
}
