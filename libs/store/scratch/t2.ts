import { createClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
async function run(client: any, label: string) {
  const q = async (s: string) => { try { const r = await client.query({ query: s, format: 'JSONEachRow' }); console.log(label, s, JSON.stringify(await r.json())); } catch (e) { console.log(label, s, 'ERR', (e as Error).message.slice(0, 200)); } };
  await client.command({ query: 'CREATE DATABASE IF NOT EXISTS d2' });
  await client.command({ query: 'DROP TABLE IF EXISTS d2.f' });
  await client.command({ query: 'CREATE TABLE d2.f (t DateTime, v Float64, n Nested(k String, v Float64)) ENGINE = MergeTree ORDER BY t' });
  for (const v of [{ t: 1700000000, v: 1 }, { t: 1700000001, v: 'nan' }, { t: 1700000002, v: 'inf' }, { t: 1700000003, v: '-inf' }, { t: 1700000004, v: 1, 'n.k': ['a'], 'n.v': ['nan'] }]) {
    try { await client.insert({ table: 'd2.f', values: [v], format: 'JSONEachRow' }); console.log(label, 'ok', JSON.stringify(v)); } catch (e) { console.log(label, 'insert ERR', JSON.stringify(v), (e as Error).message.slice(0, 150)); }
  }
  await q('SELECT toUnixTimestamp(t) AS t, v, n.v FROM d2.f');
  await q('SELECT timezone() AS tz');
  await client.command({ query: 'USE d2' });
  await q('SELECT count() FROM f');
  await q("SELECT 'a\\'b' AS s, 'c''d' AS s2");
}
(async () => {
  const c1 = createClient({ connection: createChdbConnection({ path: '/tmp/st/chdbdata' }) } as any);
  await run(c1, 'chdb');
  await c1.close();
  const c2 = createClient({ url: 'http://127.0.0.1:28571' });
  await run(c2, 'ch18');
  await c2.close();
})().catch((e) => { console.error(e); process.exit(1); });
