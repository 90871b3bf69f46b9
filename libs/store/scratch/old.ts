import { createClient } from '@clickhouse/client';
(async () => {
  const client = createClient({ url: 'http://127.0.0.1:28571', username: 'default', password: '' });
  const r = await client.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' });
  console.log(await r.json());
  await client.command({ query: 'CREATE DATABASE IF NOT EXISTS d1' });
  for (const q of [
    "SELECT toTypeName(toLowCardinality('a')) AS t",
    "SELECT name FROM system.settings WHERE name LIKE '%low_card%'",
    "SELECT name FROM system.data_type_families WHERE name IN ('LowCardinality','Map','DateTime64','Nested')",
  ]) { try { const x = await client.query({ query: q, format: 'JSONEachRow' }); console.log(q, await x.json()); } catch (e) { console.log(q, 'ERR', (e as Error).message); } }
  await client.command({ query: 'DROP TABLE IF EXISTS d1.t' });
  await client.command({ query: 'CREATE TABLE IF NOT EXISTS d1.t (a String, b Array(String), c Nested(k String, v Float64), t DateTime, d Date DEFAULT toDate(t), u UInt8) ENGINE = ReplacingMergeTree(t) PARTITION BY toYYYYMM(d) ORDER BY a' });
  await client.insert({ table: 'd1.t', values: [{ a: "x'y", b: ['1'], 'c.k': ['q'], 'c.v': [1.5], t: '2024-01-01 00:00:00', u: true }], format: 'JSONEachRow' });
  await client.insert({ table: 'd1.t', values: [{ a: "x'y", b: ['1'], 'c.k': ['q'], 'c.v': [1.5], t: 1700000000, u: 1 }], format: 'JSONEachRow' });
  const r2 = await client.query({ query: 'SELECT * FROM d1.t FINAL', format: 'JSONEachRow' });
  console.log(await r2.json());
  const r3 = await client.query({ query: 'SELECT count() c FROM d1.t', format: 'JSONEachRow' });
  console.log(await r3.json());
  await client.close();
})().catch((e) => { console.error(e); process.exit(1); });
