import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor, freePort } from '@cm/core';
import { isAlive, readPid, stackDown, stackStatus, stackUp } from '../src';

/** Three consecutive free ports on 127.0.0.1 (a cluster's nodes take base, base + 1, base + 2). */
async function consecutiveFree(count: number): Promise<number> {
  const free = (p: number): Promise<boolean> =>
    new Promise((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(p, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    let ok = true;
    for (let i = 0; i < count && ok; i++) ok = await free(base + i);
    if (ok) return base;
  }
  throw new Error('no run of free ports found');
}

describe('stack up with a 3-node NATS JetStream cluster (real nats-server processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-stack-cluster-'));
  let opts: Parameters<typeof stackUp>[0];

  beforeAll(async () => {
    opts = {
      dir,
      natsPort: await consecutiveFree(3),
      natsMonitorPort: await consecutiveFree(3),
      natsRoutePort: await consecutiveFree(3),
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
