import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, StringCodec } from 'nats';
import { createClient } from '@clickhouse/client';
import { freePort } from '@cm/core';
import { isAlive, readPid, stackDown, stackStatus, stackUp } from '../src';

/** Integration: the real nats-server and clickhouse-server, started and stopped by the stack code. */
describe('local stack (real nats-server + clickhouse-server)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-stack-'));
  let ports: {
    natsPort: number;
    natsMonitorPort: number;
    clickhouseHttpPort: number;
    clickhouseTcpPort: number;
  };

  beforeAll(async () => {
    ports = {
      natsPort: await freePort(),
      natsMonitorPort: await freePort(),
      clickhouseHttpPort: await freePort(),
      clickhouseTcpPort: await freePort(),
    };
    await stackUp({ dir, ...ports });
  }, 90_000);

  afterAll(async () => {
    await stackDown(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports both servers running and healthy', async () => {
    const status = await stackStatus(dir);
    expect(status.map((s) => s.name)).toEqual(['nats', 'clickhouse']);
    for (const s of status) expect(s).toMatchObject({ running: true, healthy: true });
  });

  it('publishes and reads back a JetStream message', async () => {
    const nc = await connect({ servers: `nats://127.0.0.1:${ports.natsPort}` });
    try {
      const jsm = await nc.jetstreamManager();
      await jsm.streams.add({ name: 'SMOKE', subjects: ['smoke.>'] });
      const js = nc.jetstream();
      const sc = StringCodec();
      const ack = await js.publish('smoke.one', sc.encode('hello'));
      expect(ack.stream).toBe('SMOKE');
      const msg = await jsm.streams.getMessage('SMOKE', { seq: ack.seq });
      expect(sc.decode(msg.data)).toBe('hello');
    } finally {
      await nc.close();
    }
  });

  it('creates a table, inserts and selects rows', async () => {
    const ch = createClient({ url: `http://127.0.0.1:${ports.clickhouseHttpPort}` });
    try {
      await ch.command({
        query: 'CREATE TABLE IF NOT EXISTS smoke (id UInt32, name String) ENGINE = MergeTree ORDER BY id',
      });
      await ch.insert({
        table: 'smoke',
        values: [
          { id: 2, name: 'b' },
          { id: 1, name: 'a' },
        ],
        format: 'JSONEachRow',
      });
      const rows = await (
        await ch.query({ query: 'SELECT id, name FROM smoke ORDER BY id', format: 'JSONEachRow' })
      ).json();
      expect(rows).toEqual([
        { id: 1, name: 'a' },
        { id: 2, name: 'b' },
      ]);
    } finally {
      await ch.close();
    }
  });

  it('stops both and leaves no process behind', async () => {
    const pids = ['nats', 'clickhouse'].map((n) => readPid(dir, n)!);
    expect(pids.every((p) => p > 0 && isAlive(p))).toBe(true);
    const stopped = await stackDown(dir);
    expect(stopped.sort()).toEqual(['clickhouse', 'nats']);
    expect(pids.some((p) => isAlive(p))).toBe(false);
    expect((await stackStatus(dir)).length).toBe(0);
  });
});
