import { createClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
(async () => {
  const client = createClient({ connection: createChdbConnection({ path: '/tmp/st/chdbdata' }) } as any);
  const r = await client.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' });
  console.log(await r.json());
  await client.command({ query: 'CREATE DATABASE IF NOT EXISTS d1' });
  await client.command({ query: 'CREATE TABLE IF NOT EXISTS d1.t (a String, b Array(String), c Nested(k String, v Float64), t DateTime) ENGINE = ReplacingMergeTree(t) ORDER BY a' });
  await client.insert({ table: 'd1.t', values: [{ a: "x'y", b: ['1'], 'c.k': ['q'], 'c.v': [1.5], t: '2024-01-01 00:00:00' }], format: 'JSONEachRow' });
  const r2 = await client.query({ query: 'SELECT * FROM d1.t FINAL', format: 'JSONEachRow' });
  console.log(await r2.json());
  await client.close();
})().catch((e) => { console.error(e); process.exit(1); });
