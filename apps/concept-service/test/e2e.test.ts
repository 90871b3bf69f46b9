/**
 * End to end on real servers: trainer SDK -> gRPC -> concept service (own process) -> nats-server
 * JetStream -> recorder (own process) -> clickhouse-server. Every neuron of every checkpoint must be
 * in ClickHouse exactly once with the labels libs/dissect computes directly, also when the recorder
 * or the concept service is killed mid-run (then also with the label switches libs/dissect computes:
 * the run state survives in the KV bucket).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, waitFor } from '@cm/core';
import { dissectLayer } from '@cm/dissect';
import { createMonitorClient } from '@cm/monitor-client';
import { startClickHouse, startNats, type ManagedServer } from '@cm/stack';
import { neuronLabelsSql, openStore, sqlString, type Store } from '@cm/store';
import {
  makeTestBundles,
  testCheckpoint,
  testRunSpec,
  topImageProblems,
  TEST_LAYERS,
  type TestBundles,
} from '@cm/engine/src/testing';

const DB = 'cm_pipeline_e2e';
const ROOT = resolve(__dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'cm-e2e-'));
const NEURONS = TEST_LAYERS.reduce((a, l) => a + l.width, 0);
let nats: ManagedServer;
let clickhouse: ManagedServer;
let store: Store;
let bundles: TestBundles;
let grpcPort: number;
const children = new Set<ChildProcess>();

function startProcess(entry: string, env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(ROOT, entry)], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, CM_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  child.once('exit', (code, signal) => {
    children.delete(child);
    if (code && code !== 0 && signal === null) process.stderr.write(`${entry} exited ${code}: ${stderr}\n`);
  });
  children.add(child);
  return child;
}

async function startService(): Promise<ChildProcess> {
  const healthPort = await freePort();
  const child = startProcess('apps/concept-service/src/main.ts', {
    CM_NATS_URL: nats.url,
    CM_GRPC_LISTEN: `127.0.0.1:${grpcPort}`,
    CM_BUNDLE_DIR: bundles.root,
    CM_DISSECT_WORKERS: '1',
    CM_SERVICE_HEALTH_PORT: String(healthPort),
  });
  const up = await waitFor(
    async () => (await fetch(`http://127.0.0.1:${healthPort}/healthz`)).ok,
    60_000,
    200,
  );
  if (!up) throw new Error('concept service did not become healthy');
  return child;
}

async function startRecorder(): Promise<ChildProcess> {
  const healthPort = await freePort();
  const child = startProcess('apps/recorder/src/main.ts', {
    CM_NATS_URL: nats.url,
    CM_CLICKHOUSE_URL: clickhouse.url,
    CM_CLICKHOUSE_DATABASE: DB,
    CM_RECORDER_HEALTH_PORT: String(healthPort),
    CM_RECORDER_BATCH_MESSAGES: '5',
    CM_RECORDER_ACK_WAIT_MS: '2000',
  });
  const up = await waitFor(
    async () => (await fetch(`http://127.0.0.1:${healthPort}/healthz`)).ok,
    60_000,
    200,
  );
  if (!up) throw new Error('recorder did not become healthy');
  return child;
}

async function kill(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

async function labelCounts(runId: string): Promise<{ raw: number; final: number; distinct: number }> {
  const [row] = await store.query<Record<string, string | number>>(
    `SELECT (SELECT count() FROM neuron_labels WHERE run_id = ${sqlString(runId)}) AS raw,
            (SELECT count() FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)}) AS final,
            (SELECT uniqExact(layer, step, neuron) FROM neuron_labels WHERE run_id = ${sqlString(runId)}) AS distinct`,
  );
  return { raw: Number(row.raw), final: Number(row.final), distinct: Number(row.distinct) };
}

async function waitForRows(runId: string, expected: number): Promise<void> {
  const ok = await waitFor(async () => (await labelCounts(runId)).distinct >= expected, 30_000, 200);
  if (!ok)
    throw new Error(`rows of ${runId}: ${JSON.stringify(await labelCounts(runId))}, expected ${expected}`);
}

/** Labels stored for a run equal dissectLayer run directly on the same activations. */
async function expectLabelsMatchDirect(runId: string, steps: number[]): Promise<void> {
  const stored = await store.query<{ layer: string; step: number; neuron: number; concept: string }>(
    neuronLabelsSql(DB, { runId }),
  );
  const byKey = new Map(stored.map((r) => [`${r.layer}|${Number(r.step)}|${Number(r.neuron)}`, r.concept]));
  for (const step of steps) {
    const cp = testCheckpoint(bundles.space, step);
    for (const layer of cp.layers) {
      const direct = await dissectLayer(bundles.space, {
        rows: layer.shape[0],
        cols: layer.shape[1],
        data: layer.data,
      });
      for (const l of direct.labels)
        expect(`${layer.layer}|${step}|${l.neuron}=${byKey.get(`${layer.layer}|${step}|${l.neuron}`)}`).toBe(
          `${layer.layer}|${step}|${l.neuron}=${l.concept}`,
        );
    }
  }
}

/**
 * After a kill: every (layer, step, neuron) of `steps` is stored once (raw rows may repeat, FINAL
 * folds them), with the labels dissectLayer gives.
 */
async function expectEveryLabelOnce(runId: string, steps: number[]): Promise<void> {
  await waitForRows(runId, steps.length * NEURONS);
  const counts = await labelCounts(runId);
  expect({ final: counts.final, distinct: counts.distinct }).toEqual({
    final: steps.length * NEURONS,
    distinct: steps.length * NEURONS,
  });
  await expectLabelsMatchDirect(runId, steps);
}

/**
 * Label switches stored for a run equal libs/dissect's, chained step to step: the first checkpoint
 * after a service restart (and a resent one recomputed there) reports the true switches, not 0.
 */
async function expectSwitchesMatchDirect(runId: string, steps: number[]): Promise<void> {
  const rows = await store.query<{ layer: string; step: number; switches: number }>(
    `SELECT layer, step, switches FROM layer_metrics FINAL WHERE run_id = ${sqlString(runId)} ORDER BY layer, step`,
  );
  const stored = rows.map((r) => `${r.layer}@${Number(r.step)}=${Number(r.switches)}`);
  const direct: string[] = [];
  for (const layer of [...TEST_LAYERS].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    let previous: Int32Array | undefined;
    for (const step of steps) {
      const act = testCheckpoint(bundles.space, step).layers.find((l) => l.layer === layer.name)!;
      const d = await dissectLayer(
        bundles.space,
        { rows: act.shape[0], cols: act.shape[1], data: act.data },
        { previousTop1: previous },
      );
      direct.push(`${layer.name}@${step}=${d.metrics.switches}`);
      previous = d.top1;
    }
  }
  expect(stored).toEqual(direct);
}

let service: ChildProcess;
let recorder: ChildProcess;

beforeAll(async () => {
  bundles = await makeTestBundles();
  grpcPort = await freePort();
  [nats, clickhouse] = await Promise.all([
    (async () =>
      startNats({ dir: join(dir, 'nats'), port: await freePort(), monitorPort: await freePort() }))(),
    (async () =>
      startClickHouse({ dir: join(dir, 'ch'), httpPort: await freePort(), tcpPort: await freePort() }))(),
  ]);
  store = await openStore({
    kind: 'server',
    url: clickhouse.url,
    user: 'default',
    password: '',
    database: DB,
  });
  await store.migrate();
  [service, recorder] = await Promise.all([startService(), startRecorder()]);
}, 120_000);

afterAll(async () => {
  for (const c of [...children]) await kill(c);
  await store?.close();
  await nats?.stop();
  await clickhouse?.stop();
  bundles?.cleanup();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

const fast = { reconnect: { initialDelayMs: 50, maxDelayMs: 500 } };

it('3 checkpoints of 3 layers: every neuron in ClickHouse exactly once, labels as libs/dissect computes them', async () => {
  const runId = 'e2e basic';
  const client = createMonitorClient({ target: `127.0.0.1:${grpcPort}`, ...fast });
  try {
    await client.startRun(testRunSpec(runId, bundles.bundleId));
    for (let step = 0; step < 3; step++)
      expect((await client.sendCheckpoint(testCheckpoint(bundles.space, step)))?.step).toBe(step);
    await client.endRun('completed');
  } finally {
    await client.close();
  }
  await waitForRows(runId, 3 * NEURONS);
  expect(await labelCounts(runId)).toEqual({ raw: 3 * NEURONS, final: 3 * NEURONS, distinct: 3 * NEURONS });
  await expectLabelsMatchDirect(runId, [0, 1, 2]);
  // evidence: each neuron's 8 top activating probe images, checked against the activations sent
  const images = await store.query<{ layer: string; step: number; neuron: number; top_images: number[] }>(
    `SELECT layer, step, neuron, top_images FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  expect(images).toHaveLength(3 * NEURONS);
  const problems = images.flatMap((r) => {
    const layer = testCheckpoint(bundles.space, Number(r.step)).layers.find((l) => l.layer === r.layer)!;
    return topImageProblems(layer, Number(r.neuron), r.top_images.map(Number), 8);
  });
  expect(problems).toEqual([]);
  const runs = await store.query<{ status: string }>(
    `SELECT status FROM runs FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  expect(runs.map((r) => r.status)).toEqual(['completed']);
  const cps = await store.query<{ n: string | number }>(
    `SELECT count() AS n FROM checkpoints FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  expect(Number(cps[0].n)).toBe(3);
}, 120_000);

it('recorder killed and restarted mid-run: no label row lost or duplicated', async () => {
  const runId = 'e2e recorder killed';
  const client = createMonitorClient({ target: `127.0.0.1:${grpcPort}`, ...fast });
  const steps = [0, 1, 2, 3, 4, 5];
  try {
    await client.startRun(testRunSpec(runId, bundles.bundleId));
    for (const step of steps) {
      if (step === 2) await kill(recorder); // mid-run: JetStream keeps the records meanwhile
      if (step === 4) recorder = await startRecorder();
      expect((await client.sendCheckpoint(testCheckpoint(bundles.space, step)))?.step).toBe(step);
    }
    await client.endRun('completed');
  } finally {
    await client.close();
  }
  await expectEveryLabelOnce(runId, steps);
}, 180_000);

it('concept service killed mid-stream and restarted: the client resends, no label row lost or duplicated', async () => {
  const runId = 'e2e service killed';
  const client = createMonitorClient({ target: `127.0.0.1:${grpcPort}`, ...fast });
  const steps = [0, 1, 2, 3, 4, 5];
  try {
    await client.startRun(testRunSpec(runId, bundles.bundleId));
    expect((await client.sendCheckpoint(testCheckpoint(bundles.space, 0)))?.step).toBe(0);
    // 1..4 in flight; the service dies under them
    const acked = new Set<number>();
    const pending = [1, 2, 3, 4].map((step) =>
      client.sendCheckpoint(testCheckpoint(bundles.space, step)).then((r) => {
        acked.add(step);
        return r;
      }),
    );
    // kill as soon as the sends are under way: on an idle machine the service can acknowledge all
    // four within a few tens of milliseconds, and then there is nothing left to resend
    await new Promise((r) => setImmediate(r));
    await kill(service);
    // once the process is gone, every checkpoint it did not acknowledge must go out again
    const unackedAtKill = 4 - acked.size;
    service = await startService();
    expect((await Promise.all(pending)).map((r) => r?.step)).toEqual([1, 2, 3, 4]);
    // killed again between acknowledged checkpoints: nothing is resent, step 5 is the first
    // checkpoint the new process sees and its switches need the state of step 4 from the KV bucket
    await kill(service);
    service = await startService();
    expect((await client.sendCheckpoint(testCheckpoint(bundles.space, 5)))?.step).toBe(5);
    await client.endRun('completed');
    expect(unackedAtKill).toBeGreaterThanOrEqual(1);
    expect(client.stats().resentCheckpoints).toBeGreaterThanOrEqual(unackedAtKill);
  } finally {
    await client.close();
  }
  await expectEveryLabelOnce(runId, steps);
  // the run state came back from the KV bucket: switches across the kill are the true ones
  await waitFor(
    async () =>
      Number(
        (
          await store.query<{ n: string }>(
            `SELECT count() AS n FROM layer_metrics FINAL WHERE run_id = ${sqlString(runId)}`,
          )
        )[0].n,
      ) >=
      steps.length * TEST_LAYERS.length,
    30_000,
    200,
  );
  await expectSwitchesMatchDirect(runId, steps);
}, 180_000);
