// A real node-redis 4 client (Debian's node-redis) against respgate:
// node respgate... PORT PASSWORD -> prints one JSON line with what it saw.
const { createClient } = require('redis');

async function main() {
  const [port, password] = process.argv.slice(2);
  const client = createClient({ url: `redis://127.0.0.1:${port}`, password, name: 'node-app' });
  const errors = [];
  client.on('error', (e) => errors.push(String(e)));
  await client.connect();
  const out = { name: await client.clientGetName(), ping: await client.ping() };
  // Many commands at once: node-redis pipelines them on one connection.
  const keys = Array.from({ length: 500 }, (_, i) => `node:${i}`);
  await Promise.all(keys.map((k) => client.set(k, `v:${k}`)));
  const values = await Promise.all(keys.map((k) => client.get(k)));
  out.values_ok = values.every((v, i) => v === `v:${keys[i]}`);
  out.del = (await Promise.all(keys.map((k) => client.del(k)))).reduce((a, b) => a + b, 0);
  out.info_version = (await client.info('server')).match(/redis_version:(\S+)/)[1];
  // A transaction on one slot, and a subscriber on its own connection (node-redis's way).
  out.multi = await client.multi().set('node:{t}a', '1').incr('node:{t}a').get('node:{t}a').del('node:{t}a').exec();
  const sub = client.duplicate();
  sub.on('error', (e) => errors.push(String(e)));
  await sub.connect();
  const heard = new Promise((resolve) => sub.subscribe('node:news', (message) => resolve(message)));
  while ((await client.publish('node:news', 'hello')) === 0) await new Promise((r) => setTimeout(r, 50));
  out.message = await heard;
  await sub.unsubscribe('node:news');
  out.after_unsubscribe = await sub.ping();
  await sub.quit();
  await client.quit();
  out.errors = errors;
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.log(JSON.stringify({ fatal: String(e) })); process.exit(1); });
