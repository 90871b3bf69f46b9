import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRun, waitFor } from '@cm/core';
import { isAlive, readPid, recordedClickHouseLayout, stackDown, stackStatus, stackUp } from '../src';

async function sql(port: number, query: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body: query });
  const text = await res.text();
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${text}`);
  return text.trim();
}

const NODES = ['clickhouse-s1r1', 'clickhouse-s1r2', 'clickhouse-s2r1', 'clickhouse-s2r2'];

describe('stack up with a 2 x 2 ClickHouse cluster (real ZooKeeper and clickhouse-server processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-stack-chcluster-'));
  let opts: Parameters<typeof stackUp>[0];

  beforeAll(async () => {
    opts = {
      dir,
      natsPort: await freePort(),
      natsMonitorPort: await freePort(),
      clickhouseHttpPort: await freePortRun(4),
      clickhouseTcpPort: await freePortRun(4),
      clickhouseInterserverPort: await freePortRun(4),
      zookeeperPort: await freePort(),
      clickhouseShards: 2,
      clickhouseReplicas: 2,
    };
  });
  afterAll(async () => {
    await stackDown(dir);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('starts ZooKeeper and four nodes, mends one killed node alone, and stops them all', async () => {
    const up = await stackUp(opts);
    expect(up.map((e) => [e.name, e.action, e.healthy])).toEqual([
      ['nats', 'started', true],
      ['zookeeper', 'started', true],
      ...NODES.map((n) => [n, 'started', true]),
    ]);
    expect(recordedClickHouseLayout(dir)).toEqual({ shards: 2, replicas: 2 });
    const state = JSON.parse(readFileSync(join(dir, 'stack.json'), 'utf8')) as { clickhouse: unknown };
    expect(state.clickhouse).toEqual({ shards: 2, replicas: 2 });
    // node k on base + k, and every node knows the whole cluster
    const s2r1 = opts.clickhouseHttpPort + 2;
    expect(
      await sql(
        s2r1,
        "SELECT shard_num, replica_num, port FROM system.clusters WHERE cluster = 'cm_cluster' ORDER BY shard_num, replica_num FORMAT CSV",
      ),
    ).toBe(
      [0, 1, 2, 3]
        .map((k) => `${Math.floor(k / 2) + 1},${(k % 2) + 1},${opts.clickhouseTcpPort + k}`)
        .join('\n'),
    );
    expect(await sql(s2r1, 'SELECT macro, substitution FROM system.macros ORDER BY macro FORMAT CSV')).toBe(
      '"replica","r1"\n"shard","2"',
    );

    const names = ['nats', 'zookeeper', ...NODES];
    const pids = names.map((n) => readPid(dir, n)!);
    const killed = names.indexOf('clickhouse-s2r2');
    process.kill(pids[killed], 'SIGKILL');
    expect(await waitFor(async () => !isAlive(pids[killed]), 5000, 50)).toBe(true);
    // a later `up` without the layout keeps the one it recorded and starts the dead node alone
    const mend = await stackUp({ ...opts, clickhouseShards: undefined, clickhouseReplicas: undefined });
    expect(mend.map((e) => [e.name, e.action, e.healthy])).toEqual(
      names.map((n) => [n, n === 'clickhouse-s2r2' ? 'started' : 'kept', true]),
    );
    const after = names.map((n) => readPid(dir, n)!);
    expect(after.filter((_, i) => i !== killed)).toEqual(pids.filter((_, i) => i !== killed));
    expect(after[killed]).not.toBe(pids[killed]);
    // the restarted node is back in the cluster: it reaches ZooKeeper
    expect(
      Number(await sql(opts.clickhouseHttpPort + 3, "SELECT count() FROM system.zookeeper WHERE path = '/'")),
    ).toBeGreaterThan(0);

    await expect(stackUp({ ...opts, clickhouseShards: 1, clickhouseReplicas: 1 })).rejects.toThrow(
      /runs ClickHouse as 2 x 2 .* cannot switch to 1 x 1/,
    );

    const all = (await stackStatus(dir)).map((s) => s.pid!);
    expect(all).toHaveLength(6);
    expect(await stackDown(dir)).toHaveLength(6);
    expect(all.filter(isAlive)).toEqual([]);
  }, 240_000);
});
