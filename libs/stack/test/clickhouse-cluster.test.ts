import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@cm/core';
import {
  freeClickHouseClusterPorts,
  isAlive,
  startClickHouseCluster,
  type ClickHouseCluster,
  type ClickHouseNodePorts,
} from '../src';

/** A 2-shard x 2-replica clickhouse-server 18.16 cluster with ZooKeeper, started by the stack code. */
const dir = mkdtempSync(join(tmpdir(), 'cm-ch-cluster-'));
let cluster: ClickHouseCluster;
let nodes: ClickHouseNodePorts[][];

async function sql(port: number, query: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', body: query });
  const text = await res.text();
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${text}`);
  return text.trim();
}

beforeAll(async () => {
  nodes = await freeClickHouseClusterPorts(2, 2);
  cluster = await startClickHouseCluster({ dir, zookeeperPort: await freePort(), nodes });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

it('every node knows the 2 x 2 cluster and reaches ZooKeeper', async () => {
  for (const replicas of nodes) {
    for (const n of replicas) {
      expect(
        await sql(
          n.httpPort,
          `SELECT shard_num, replica_num FROM system.clusters WHERE cluster = '${cluster.cluster}' ORDER BY shard_num, replica_num FORMAT CSV`,
        ),
      ).toBe('1,1\n1,2\n2,1\n2,2');
      expect(await sql(n.httpPort, `SELECT count() > 0 FROM system.zookeeper WHERE path = '/'`)).toBe('1');
    }
  }
});

it('DDL ON CLUSTER reaches every node; one replica restarted keeps its data', async () => {
  await sql(nodes[0][0].httpPort, `CREATE DATABASE IF NOT EXISTS cmt ON CLUSTER ${cluster.cluster}`);
  await sql(
    nodes[0][0].httpPort,
    `CREATE TABLE IF NOT EXISTS cmt.t_local ON CLUSTER ${cluster.cluster} (k String, v UInt32) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/cmt/t_local', '{replica}') ORDER BY k`,
  );
  for (const replicas of nodes)
    for (const n of replicas) expect(await sql(n.httpPort, `EXISTS TABLE cmt.t_local`)).toBe('1');
  await sql(nodes[1][0].httpPort, `INSERT INTO cmt.t_local VALUES ('a', 1), ('b', 2)`);
  const old = cluster.nodes[1][1].pid;
  await cluster.nodes[1][1].stop();
  expect(isAlive(old)).toBe(false);
  await cluster.restartNode(1, 1);
  // the replica catches up from its peer through ZooKeeper and the interserver port
  let count = '';
  for (let i = 0; i < 100 && count !== '2'; i++) {
    count = await sql(nodes[1][1].httpPort, `SELECT count() FROM cmt.t_local`).catch(() => '');
    if (count !== '2') await new Promise((r) => setTimeout(r, 200));
  }
  expect(count).toBe('2');
}, 120_000);
