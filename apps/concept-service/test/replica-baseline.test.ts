/**
 * One random-init baseline per run across concept-service replicas (the learned-concept figure,
 * issue 16/18): two replicas as processes on the stack libs/stack starts (nats-server,
 * clickhouse-server, the recorder), each with its own CM_HOME, so the only thing they share is
 * JetStream. Replica A dissects half of a run's random initialisations and is SIGKILLed; B, where the
 * client fails over, completes the baseline from the inits A kept in the bucket (none is sent
 * twice), and the run's checkpoints get their learned figure. A restarted A, to which the run moves
 * when B is SIGKILLed in turn, computes the same checkpoints' figure to the bit, and ClickHouse
 * holds each figure once, non-null.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectBus, openBaselineKv, type Bus } from '@cm/bus';
import { waitFor } from '@cm/core';
import { nullActivations } from '@cm/dissect';
import type { CheckpointData, CheckpointResult } from '@cm/contracts';
import { createMonitorClient, type MonitorClient } from '@cm/monitor-client';
import { isAlive, readPid, stackUp, type AppService } from '@cm/stack';
import { sqlString, type Store } from '@cm/store';
import { makeTestBundles, plantedActivations, testRunSpec, type TestBundles } from '@cm/engine/src/testing';
import { openReplicaStore, planTwoReplicas, tearDownReplicas, type StackPorts } from './replicas';

const DB = 'cm_replica_baseline';
const dir = mkdtempSync(join(tmpdir(), 'cm-replica-baseline-'));
const stackDir = join(dir, 'stack');
let bundles: TestBundles;
let store: Store;
let bus: Bus;
let apps: AppService[];
let stackPorts: StackPorts;
const targets: Record<'a' | 'b', string> = { a: '', b: '' };
let client: MonitorClient | undefined;

const FC = [{ name: 'fc', width: 10, kind: 'dense' as const }];
const INITS = 4;
/** An "untrained" network's fc layer: unrelated to the images (seeded normal activations). */
const randomInit = (index: number) => {
  const D = bundles.space.probeScores.rows;
  return { layer: 'fc', shape: [D, 10], data: nullActivations(D, 10, 900 + index).data };
};
/** Steps 3, 4, 5 repeat the activations of steps 0, 1, 2. */
const checkpoint = (step: number): CheckpointData => ({
  step,
  layers: [plantedActivations(bundles.space, 'fc', 10, step % 3)],
  metrics: { loss: 1 / (step + 1) },
});

beforeAll(async () => {
  bundles = await makeTestBundles();
  const replicas = await planTwoReplicas({
    bundleRoot: bundles.root,
    database: DB,
    // a home of its own: the replicas share nothing but JetStream
    env: (which) => ({ CM_HOME: join(dir, `home-${which}`) }),
  });
  stackPorts = replicas.ports;
  apps = replicas.apps;
  await stackUp({ dir: stackDir, ...stackPorts, apps });
  targets.a = replicas.targets.a;
  targets.b = replicas.targets.b;
  store = await openReplicaStore(stackPorts, DB);
  bus = await connectBus({ url: `nats://127.0.0.1:${stackPorts.natsPort}` });
}, 180_000);

afterAll(async () => {
  await client?.close().catch(() => undefined);
  await bus?.close();
  await tearDownReplicas({ store, stackDir, bundles, dir });
}, 60_000);

async function sigkill(service: string): Promise<void> {
  const pid = readPid(stackDir, service);
  expect(pid).toBeDefined();
  process.kill(pid!, 'SIGKILL');
  expect(await waitFor(async () => !isAlive(pid!), 10_000, 50)).toBe(true);
}

/** Keys of the baseline bucket. */
async function bucketKeys(): Promise<string[]> {
  const kv = (await openBaselineKv(bus)).kv;
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  return keys.sort();
}

const learnedOf = (r: CheckpointResult | undefined): number | null | undefined =>
  r?.layers[0].learnedFraction;

it('A dies mid-baseline, B completes it from what A kept; B and a restarted A give the run the same learned figure', async () => {
  client = createMonitorClient({
    target: `${targets.a},${targets.b}`,
    reconnect: { initialDelayMs: 50, maxDelayMs: 300 },
  });
  await client.startRun(testRunSpec('replica-baseline', bundles.bundleId, FC));
  expect(await client.baselineWanted()).toBe(true);
  // A dissects inits 0 and 1 (acknowledged: kept in the bucket), then dies
  for (const index of [0, 1]) await client.sendBaseline({ index, inits: INITS, layers: [randomInit(index)] });
  const keysAfterA = await bucketKeys();
  expect(keysAfterA.map((k) => k.slice(41))).toEqual(['init.0.fc', 'init.1.fc']);
  const key = keysAfterA[0].slice(0, 40);
  await sigkill('concept-service');

  // inits 2 and 3 go to B; B finds 0 and 1 in the bucket and completes the baseline
  for (const index of [2, 3]) await client.sendBaseline({ index, inits: INITS, layers: [randomInit(index)] });
  expect(client.stats().reconnects).toBeGreaterThanOrEqual(1);
  expect((await bucketKeys()).map((k) => k.slice(41))).toEqual([
    'complete',
    'init.0.fc',
    'init.1.fc',
    'init.2.fc',
    'init.3.fc',
  ]);
  const baseline = await (await openBaselineKv(bus)).load(key);
  expect(baseline?.inits).toBe(INITS);

  const onB: (CheckpointResult | undefined)[] = [];
  for (let step = 0; step < 3; step++) onB.push(await client.sendCheckpoint(checkpoint(step)));
  for (const r of onB) expect(typeof learnedOf(r)).toBe('number');
  // planted concept detectors: clearly beyond random init
  for (const r of onB) expect(learnedOf(r)).toBeGreaterThan(0.3);

  // A comes back (a fresh process: its CM_HOME has no baseline), B dies: the run moves to A
  await stackUp({ dir: stackDir, ...stackPorts, apps });
  await sigkill('concept-service-b');
  const onA: (CheckpointResult | undefined)[] = [];
  for (let step = 3; step < 6; step++) onA.push(await client.sendCheckpoint(checkpoint(step)));
  await client.endRun('completed');
  expect(client.stats()).toMatchObject({ acknowledgedCheckpoints: 6, droppedCheckpoints: 0 });
  // the same activations, the same baseline: the same figure on A as on B, to the bit
  expect(onA.map(learnedOf)).toEqual(onB.map(learnedOf));

  // stored through JetStream and the recorder: one non-null figure per step
  const run = sqlString('replica-baseline');
  const stored = await waitFor(
    async () =>
      Number(
        (
          await store.query<{ n: string }>(
            `SELECT count() AS n FROM layer_metrics FINAL WHERE run_id = ${run} AND learned_fraction IS NOT NULL`,
          )
        )[0].n,
      ) === 6,
    60_000,
    250,
  );
  expect(stored).toBe(true);
  const rows = await store.query<{ step: number; f: number; chance: number }>(
    `SELECT step, learned_fraction AS f, learned_chance AS chance FROM layer_metrics FINAL WHERE run_id = ${run} ORDER BY step`,
  );
  expect(rows.map((r) => Number(r.f))).toEqual([...onB, ...onA].map((r) => learnedOf(r)));
  // the chance rate comes from the baseline alone: one baseline, one rate, on both replicas
  expect(new Set(rows.map((r) => Number(r.chance))).size).toBe(1);
}, 240_000);
