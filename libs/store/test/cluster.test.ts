import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@cm/core';
import {
  freeClickHouseClusterPorts,
  startClickHouseCluster,
  LOCAL_CLICKHOUSE_CLUSTER,
  type ClickHouseCluster,
  type ClickHouseNodePorts,
} from '@cm/stack';
import {
  clusterTableNames,
  describeThinning,
  MIGRATIONS,
  thinLabels,
  thinningRecords,
  neuronLabelsSql,
  openStore,
  runsOverviewSql,
  sqlString,
  type Store,
} from '../src';
import { labelsRecord, sampleRun } from './fixtures';

/**
 * Cluster mode on real servers: clickhouse-server 18.16, 2 shards x 2 replicas with ZooKeeper,
 * started by the stack code. The migrations make replicated local tables and Distributed tables ON
 * CLUSTER; the shipped queries run unchanged on any node; one replica stopped mid-run changes no
 * count (Distributed FINAL exact) and catches up when it is back.
 */
const DB = 'cm_cluster_test';
const dir = mkdtempSync(join(tmpdir(), 'cm-store-cluster-'));
let cluster: ClickHouseCluster;
let nodes: ClickHouseNodePorts[][];
const stores: Store[] = [];

const target = (s: number, r: number) => ({
  kind: 'server' as const,
  url: `http://127.0.0.1:${nodes[s][r].httpPort}`,
  user: 'default',
  password: '',
  database: DB,
  cluster: LOCAL_CLICKHOUSE_CLUSTER,
});
async function open(s: number, r: number): Promise<Store> {
  const store = await openStore(target(s, r));
  stores.push(store);
  return store;
}

beforeAll(async () => {
  nodes = await freeClickHouseClusterPorts(2, 2);
  cluster = await startClickHouseCluster({ dir, zookeeperPort: await freePort(), nodes });
}, 120_000);

afterAll(async () => {
  for (const s of stores) await s.close();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

/** Polls until `store` reads `expected` label rows of the run (at most 20 s; the caller asserts). */
async function replicated(store: Store, runId: string, expected: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await labelCounts(store, runId)).final === expected) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function labelCounts(store: Store, runId: string): Promise<{ final: number; distinct: number }> {
  const [row] = await store.query<{ final: string; distinct: string }>(
    `SELECT count() AS final, uniqExact(layer, step, neuron) AS distinct FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  return { final: Number(row.final), distinct: Number(row.distinct) };
}

it('migrations make every table ON CLUSTER: replicated local tables and a Distributed table over each, on every node', async () => {
  const store = await open(0, 0);
  expect(await store.migrate()).toEqual(MIGRATIONS.map((m) => m.version));
  expect(await store.migrate()).toEqual([]);
  for (let s = 0; s < 2; s++) {
    for (let r = 0; r < 2; r++) {
      const node = await open(s, r);
      expect(await node.missingTables()).toEqual([]);
      const engines = await node.query<{ name: string; engine: string }>(
        `SELECT name, engine FROM system.tables WHERE database = '${DB}' ORDER BY name`,
      );
      expect(engines.map((e) => e.name).sort()).toEqual([...clusterTableNames()].sort());
      const byName = Object.fromEntries(engines.map((e) => [e.name, e.engine]));
      expect(byName.neuron_labels).toBe('Distributed');
      expect(byName.neuron_labels_local).toBe('ReplicatedReplacingMergeTree');
      expect(byName.schema_migrations).toBe('ReplicatedReplacingMergeTree');
      // the ledger is replicated to every node
      expect(await node.appliedMigrations()).toEqual(MIGRATIONS.map((m) => m.version));
      const topImages = await node.query<{ n: string }>(
        `SELECT count() AS n FROM system.columns WHERE database = '${DB}' AND name = 'top_images'`,
      );
      expect(Number(topImages[0].n)).toBe(2); // neuron_labels and neuron_labels_local
    }
  }
}, 120_000);

it('a run written on one node reads the same on every node with the shipped queries; all its rows on one shard', async () => {
  const writer = stores[0];
  await writer.insertRecords([...sampleRun('run-a', 3), ...sampleRun('run-b', 2)]);
  // a redelivered batch changes nothing (ReplacingMergeTree per shard, read with FINAL)
  await writer.insertRecords(sampleRun('run-a', 3));
  for (const reader of stores.slice(1)) {
    // a write is acknowledged once one replica of the shard has it; the other replica fetches it
    // asynchronously, and a Distributed read may pick either: wait for it (bounded), then compare
    await replicated(reader, 'run-a', 21);
    await replicated(reader, 'run-b', 14);
    expect(await labelCounts(reader, 'run-a')).toEqual({ final: 21, distinct: 21 });
    const runs = await reader.query<{ run_id: string; last_step: number | string }>(runsOverviewSql(DB));
    expect(runs.map((r) => [r.run_id, Number(r.last_step)]).sort()).toEqual([
      ['run-a', 200],
      ['run-b', 100],
    ]);
    expect((await reader.query(neuronLabelsSql(DB, { runId: 'run-b' }))).length).toBe(14);
  }
  // one shard holds all of run-a's rows: the shard key is the run
  const perShard = await Promise.all(
    [stores[1], stores[3]].map(async (s) => {
      const [row] = await s.query<{ n: string }>(
        `SELECT count() AS n FROM ${DB}.neuron_labels_local WHERE run_id = 'run-a'`,
      );
      return Number(row.n);
    }),
  );
  expect(perShard.filter((n) => n > 0)).toHaveLength(1);
}, 60_000);

it('one replica stopped mid-run: writes and reads go on, Distributed FINAL counts stay exact, and it catches up', async () => {
  const writer = stores[0];
  const steps = 6;
  for (let step = 0; step < steps; step++) {
    if (step === 2) await cluster.nodes[1][1].stop();
    await writer.insertRecords([
      labelsRecord('run-c', 'fc', step * 100, 8),
      labelsRecord('run-c', 'conv', step * 100, 16),
    ]);
  }
  expect(await labelCounts(writer, 'run-c')).toEqual({ final: steps * 24, distinct: steps * 24 });
  await cluster.restartNode(1, 1);
  const back = await open(1, 1);
  // the restarted replica fetches what it missed from its peer
  let local = 0;
  for (let i = 0; i < 100; i++) {
    const [row] = await back.query<{ n: string }>(
      `SELECT (SELECT count() FROM ${DB}.neuron_labels_local FINAL WHERE run_id = 'run-c') + (SELECT count() FROM ${DB}.neuron_labels_local FINAL WHERE run_id = 'run-a') AS n`,
    );
    local = Number(row.n);
    const [peer] = await stores[3].query<{ n: string }>(
      `SELECT (SELECT count() FROM ${DB}.neuron_labels_local FINAL WHERE run_id = 'run-c') + (SELECT count() FROM ${DB}.neuron_labels_local FINAL WHERE run_id = 'run-a') AS n`,
    );
    if (local === Number(peer.n)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  expect(await labelCounts(back, 'run-c')).toEqual({ final: steps * 24, distinct: steps * 24 });
}, 120_000);

it('label retention on a cluster: the mutation runs on the local replicated tables ON CLUSTER; every replica loses the same rows, metrics stay', async () => {
  const writer = stores[0];
  await writer.insertRecords(sampleRun('run-t', 6)); // steps 0..500, an alert at 100; rows of January 2026
  const policy = { fullDays: 1, fullCheckpoints: 0, keepEvery: 2 };
  const { plan, records } = await thinLabels(writer, policy, { run: 'run-t' });
  expect(plan.map((p) => [p.runId, p.throughStep, p.removeSteps])).toEqual([['run-t', 400, [300]]]);
  expect(records).toEqual([expect.objectContaining({ runId: 'run-t', rowsRemoved: 7, stepsRemoved: 1 })]);
  const steps = async (s: Store, table: string): Promise<number[]> =>
    (
      await s.query<{ step: number | string }>(
        `SELECT DISTINCT step FROM ${DB}.${table} WHERE run_id = 'run-t' ORDER BY step`,
      )
    ).map((r) => Number(r.step));
  // both replicas of the shard that holds run-t (the one whose first replica has its metrics):
  // the replicated mutation reached each, and replication converges on the same rows
  const [node00, node01, node10, node11] = [stores[1], stores[2], stores[3], stores.at(-1)!];
  const shard = (await steps(node00, 'layer_metrics_local')).length > 0 ? [node00, node01] : [node10, node11];
  for (const s of shard) {
    const want = JSON.stringify([0, 100, 200, 400, 500]);
    for (let i = 0; i < 150 && JSON.stringify(await steps(s, 'neuron_labels_local')) !== want; i++)
      await new Promise((r) => setTimeout(r, 200));
    expect(await steps(s, 'neuron_labels_local')).toEqual([0, 100, 200, 400, 500]);
    expect(await steps(s, 'layer_metrics_local')).toEqual([0, 100, 200, 300, 400, 500]);
  }
  // read through any node's Distributed tables: the record and the remaining rows
  for (const s of [node01, node10, node11]) {
    expect(describeThinning((await thinningRecords(s, 'run-t')).get('run-t') ?? [])).toBe(
      'labels: every 2nd checkpoint up to step 400',
    );
    expect(await steps(s, 'neuron_labels')).toEqual([0, 100, 200, 400, 500]);
  }
  expect(await thinLabels(stores[2], policy, { run: 'run-t' })).toEqual({ plan: [], records: [] });
}, 120_000);
