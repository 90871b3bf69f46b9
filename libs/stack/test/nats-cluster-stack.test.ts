import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRun, waitFor } from '@cm/core';
import { isAlive, readPid, stackDown, stackStatus, stackUp } from '../src';

describe('stack up with a 3-node NATS JetStream cluster (real nats-server processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-stack-cluster-'));
  let opts: Parameters<typeof stackUp>[0];

  beforeAll(async () => {
    opts = {
      dir,
      natsPort: await freePortRun(3),
      natsMonitorPort: await freePortRun(3),
      natsRoutePort: await freePortRun(3),
      natsNodes: 3,
      clickhouseHttpPort: await freePort(),
      clickhouseTcpPort: await freePort(),
    };
  });
  afterAll(async () => {
    await stackDown(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts three nodes, mends one killed node alone, and stops them all', async () => {
    const up = await stackUp(opts);
    expect(up.map((e) => [e.name, e.action, e.healthy])).toEqual([
      ['nats-1', 'started', true],
      ['nats-2', 'started', true],
      ['nats-3', 'started', true],
      ['clickhouse', 'started', true],
    ]);
    const pids = ['nats-1', 'nats-2', 'nats-3', 'clickhouse'].map((n) => readPid(dir, n)!);

    process.kill(pids[1], 'SIGKILL');
    expect(await waitFor(async () => !isAlive(pids[1]), 5000, 50)).toBe(true);
    // a later `up` without the node count keeps the cluster it recorded
    const mend = await stackUp({ ...opts, natsNodes: undefined });
    expect(mend.map((e) => [e.name, e.action])).toEqual([
      ['nats-1', 'kept'],
      ['nats-2', 'started'],
      ['nats-3', 'kept'],
      ['clickhouse', 'kept'],
    ]);
    expect(readPid(dir, 'nats-2')).not.toBe(pids[1]);
    expect([readPid(dir, 'nats-1'), readPid(dir, 'nats-3'), readPid(dir, 'clickhouse')]).toEqual([
      pids[0],
      pids[2],
      pids[3],
    ]);
    await expect(stackUp({ ...opts, natsNodes: 1 })).rejects.toThrow(
      /runs 3 nats-server node\(s\); it cannot switch to 1/,
    );

    const all = (await stackStatus(dir)).map((s) => s.pid!);
    expect(await stackDown(dir)).toHaveLength(4);
    expect(all.filter(isAlive)).toEqual([]);
  }, 180_000);
});
