/**
 * Run state across service restarts and replicas, on a real nats-server (JetStream + the KV bucket)
 * with the concept service in this process (startConceptService, real DissectPool): the checkpoint
 * after a restart reports the label switches an uninterrupted run reports (and libs/dissect
 * computes), an open collapse episode is neither fired twice nor left unresolved, and a trainer that
 * lands on another replica carries its run on there.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type CmConfig } from '@cm/config';
import {
  STREAM,
  subjectFor,
  type AlertRecord,
  type CheckpointData,
  type CheckpointResult,
  type LayerSnapshotRecord,
  type RecordKind,
} from '@cm/contracts';
import { freePort, waitFor } from '@cm/core';
import { ConceptEngine, MemoryRunStateStore } from '@cm/engine';
import { connectBus, openRunStateKv, type Bus } from '@cm/bus';
import { dissectLayer } from '@cm/dissect';
import { createMonitorClient, type MonitorClient } from '@cm/monitor-client';
import { startNats, type ManagedServer } from '@cm/stack';
import {
  argmaxDissector,
  makeTestBundles,
  plantedActivations,
  testCheckpoint,
  testRunSpec,
  TEST_LAYERS,
  type TestBundles,
} from '@cm/engine/src/testing';
import { startConceptService, type RunningService } from '../src/main';
import { startTestService } from './helpers';

const dir = mkdtempSync(join(tmpdir(), 'cm-runstate-'));
let nats: ManagedServer;
let bus: Bus;
let bundles: TestBundles;
const services = new Set<RunningService>();
const clients = new Set<MonitorClient>();

async function serviceConfig(grpcPort?: number): Promise<CmConfig> {
  return loadConfig({
    CM_NATS_URL: nats.url,
    CM_GRPC_LISTEN: `127.0.0.1:${grpcPort ?? (await freePort())}`,
    CM_BUNDLE_DIR: bundles.root,
    CM_DISSECT_WORKERS: '1',
    CM_SERVICE_HEALTH_PORT: String(await freePort()),
    CM_LOG_LEVEL: 'warn',
  });
}

async function startService(cfg: CmConfig): Promise<RunningService> {
  const s = await startConceptService(cfg);
  services.add(s);
  return s;
}

async function stopService(s: RunningService): Promise<void> {
  services.delete(s);
  await s.stop();
}

function client(port: number): MonitorClient {
  const c = createMonitorClient({
    target: `127.0.0.1:${port}`,
    reconnect: { initialDelayMs: 50, maxDelayMs: 300 },
  });
  clients.add(c);
  return c;
}

/** Every record of one kind a run published, from the stream (JetStream dropped the duplicates). */
async function published<T>(kind: RecordKind, runId: string, expected: number): Promise<T[]> {
  const consumer = await bus.js.consumers.get(STREAM.name, { filterSubjects: subjectFor(kind, runId) });
  const out: T[] = [];
  const batch = await consumer.fetch({ max_messages: expected + 10, expires: 1500 });
  for await (const m of batch) out.push(m.json<T>());
  return out;
}

const switchesOf = (snapshots: LayerSnapshotRecord[]): Record<string, number> =>
  Object.fromEntries(
    snapshots.map((s) => [`${s.layer}@${s.step}`, s.switches]).sort(([a], [b]) => (a < b ? -1 : 1)),
  );

/** One dense layer of 10 neurons; collapsed steps copy neuron 0 into every neuron (one concept everywhere). */
const FC = [{ name: 'fc', width: 10, kind: 'dense' as const }];
function fcCheckpoint(step: number, collapsed: boolean): CheckpointData {
  const base = plantedActivations(bundles.space, 'fc', 10, step);
  if (collapsed)
    for (let i = 0; i < base.shape[0]; i++)
      for (let k = 1; k < 10; k++) base.data[i * 10 + k] = base.data[i * 10] + 1e-3 * k;
  return { step, layers: [base], metrics: {} };
}

const alertsSeen = (results: (CheckpointResult | undefined)[]): string[] =>
  results.flatMap((r) => (r ? r.alerts.map((a) => `${a.layer} ${a.rule} ${a.state} @${r.step}`) : []));

beforeAll(async () => {
  bundles = await makeTestBundles();
  nats = await startNats({ dir: join(dir, 'nats'), port: await freePort(), monitorPort: await freePort() });
  bus = await connectBus({ url: nats.url });
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  for (const s of services) await s.stop().catch(() => undefined);
  await bus?.close();
  await nats?.stop();
  bundles?.cleanup();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

it('service restarted mid-run: same switches as an uninterrupted run and libs/dissect, one collapse episode', async () => {
  const grpcPort = await freePort();
  const cfg = await serviceConfig(grpcPort);
  let service = await startService(cfg);
  const steps = [0, 1, 2, 3];
  // collapsed from step 2 to 6: fires at 3 (hysteresis 2), resolves at 8; the restart comes before step 5
  const plan = [false, false, true, true, true, true, true, false, false, false];

  // the reference: the same checkpoints without a restart
  const ref = client(grpcPort);
  await ref.startRun(testRunSpec('uninterrupted', bundles.bundleId));
  for (const step of steps) await ref.sendCheckpoint(testCheckpoint(bundles.space, step));
  await ref.endRun('completed');
  const refCollapse = client(grpcPort);
  await refCollapse.startRun(testRunSpec('collapse uninterrupted', bundles.bundleId, FC));
  const refAlerts: (CheckpointResult | undefined)[] = [];
  for (const [step, collapsed] of plan.entries())
    refAlerts.push(await refCollapse.sendCheckpoint(fcCheckpoint(step, collapsed)));
  await refCollapse.endRun('completed');

  const a = client(grpcPort);
  const b = client(grpcPort);
  await a.startRun(testRunSpec('restarted', bundles.bundleId));
  await b.startRun(testRunSpec('collapse restarted', bundles.bundleId, FC));
  for (const step of [0, 1]) await a.sendCheckpoint(testCheckpoint(bundles.space, step));
  const results: (CheckpointResult | undefined)[] = [];
  for (const step of [0, 1, 2, 3, 4]) results.push(await b.sendCheckpoint(fcCheckpoint(step, plan[step])));
  expect(alertsSeen(results)).toEqual(['fc diversity_floor firing @3', 'fc concept_dominance firing @3']);

  await stopService(service);
  service = await startService(cfg); // a fresh process: nothing in memory
  expect(service.engine.heldRuns()).toEqual([]);

  for (const step of [2, 3])
    expect((await a.sendCheckpoint(testCheckpoint(bundles.space, step)))?.step).toBe(step);
  for (const step of [5, 6, 7, 8, 9]) results.push(await b.sendCheckpoint(fcCheckpoint(step, plan[step])));
  await a.endRun('completed');
  await b.endRun('completed');
  expect(a.stats().reconnects + b.stats().reconnects).toBeGreaterThanOrEqual(2);

  // switches: after the restart exactly as without one...
  const restarted = switchesOf(await published<LayerSnapshotRecord>('snapshot', 'restarted', 12));
  const uninterrupted = switchesOf(await published<LayerSnapshotRecord>('snapshot', 'uninterrupted', 12));
  expect(Object.keys(restarted)).toHaveLength(steps.length * TEST_LAYERS.length);
  expect(restarted).toEqual(uninterrupted);
  // ...and as libs/dissect computes them directly (the first checkpoint after the restart is step 2)
  const direct: Record<string, number> = {};
  for (const layer of TEST_LAYERS) {
    let previous: Int32Array | undefined;
    for (const step of steps) {
      const act = testCheckpoint(bundles.space, step).layers.find((l) => l.layer === layer.name)!;
      const d = await dissectLayer(
        bundles.space,
        { rows: act.shape[0], cols: act.shape[1], data: act.data },
        { previousTop1: previous },
      );
      direct[`${layer.name}@${step}`] = d.metrics.switches;
      previous = d.top1;
    }
  }
  expect(restarted).toEqual(Object.fromEntries(Object.entries(direct).sort(([x], [y]) => (x < y ? -1 : 1))));
  expect(TEST_LAYERS.some((l) => restarted[`${l.name}@2`] > 0)).toBe(true); // not vacuous: 0 is what a lost state reports

  // the collapse episode: fired once before the restart, resolved once after it, as without a restart
  expect(alertsSeen(results)).toEqual(alertsSeen(refAlerts));
  expect(alertsSeen(results)).toEqual([
    'fc diversity_floor firing @3',
    'fc concept_dominance firing @3',
    'fc diversity_floor resolved @8',
    'fc concept_dominance resolved @8',
  ]);
  const stored = await published<AlertRecord>('alert', 'collapse restarted', 4);
  expect(stored.map((x) => `${x.alertId} ${x.state}`).sort()).toEqual([
    'collapse restarted/fc/concept_dominance/3 firing',
    'collapse restarted/fc/concept_dominance/3 resolved',
    'collapse restarted/fc/diversity_floor/3 firing',
    'collapse restarted/fc/diversity_floor/3 resolved',
  ]);
  // ended runs leave no state behind
  const kv = await openRunStateKv(bus);
  for (const runId of ['restarted', 'collapse restarted', 'uninterrupted'])
    expect(await kv.load(runId)).toBeUndefined();
}, 120_000);

it('a trainer that reconnects to another replica carries its run on there', async () => {
  const [replicaA, replicaB] = await Promise.all([
    serviceConfig().then(startService),
    serviceConfig().then(startService),
  ]);
  const first = client(replicaA.grpcPort);
  await first.startRun(testRunSpec('moved', bundles.bundleId));
  for (const step of [0, 1]) await first.sendCheckpoint(testCheckpoint(bundles.space, step));
  await first.close(); // the trainer's connection goes; its next one lands on B
  clients.delete(first);
  const second = client(replicaB.grpcPort);
  await second.startRun(testRunSpec('moved', bundles.bundleId), { resume: true });
  for (const step of [2, 3]) await second.sendCheckpoint(testCheckpoint(bundles.space, step));
  await second.endRun('completed');
  const moved = await published<LayerSnapshotRecord>('snapshot', 'moved', 12);
  const uninterrupted = await published<LayerSnapshotRecord>('snapshot', 'uninterrupted', 12);
  expect(switchesOf(moved)).toEqual(switchesOf(uninterrupted));
  // one run record for the start (B resumed the run, it did not start it again) and one for the end
  const runs = await published<{ status: string; startedAt: string }>('run', 'moved', 2);
  expect(runs.map((r) => r.status)).toEqual(['running', 'completed']);
  expect(runs[1].startedAt).toBe(runs[0].startedAt);
  await Promise.all([stopService(replicaA), stopService(replicaB)]);
}, 120_000);

it('a run with an open stream is not evicted; once its stream is gone it is, and comes back from the store', async () => {
  let clock = 0;
  const store = new MemoryRunStateStore();
  const engine = new ConceptEngine({
    bundles: bundles.bundles,
    dissector: argmaxDissector(),
    stateStore: store,
    runIdleMs: 1000,
    clockMs: () => clock,
  });
  const svc = await startTestService({ engine, bundles });
  try {
    const c = client(svc.port);
    await c.startRun(testRunSpec('idle trainer', bundles.bundleId));
    await c.sendCheckpoint(testCheckpoint(bundles.space, 0));
    clock += 5000;
    expect(engine.evictIdleRuns()).toEqual([]); // its trainer is still connected
    await c.close(); // the trainer goes away without RunEnd
    clients.delete(c);
    expect(await waitFor(async () => svc.server.activeStreams === 0, 5000, 20)).toBe(true);
    clock += 5000;
    expect(engine.evictIdleRuns()).toEqual(['idle trainer']);
    expect(store.runIds()).toEqual(['idle trainer']);
    // it comes back: resumed from the store, no new run record
    const again = client(svc.port);
    await again.startRun(testRunSpec('idle trainer', bundles.bundleId), { resume: true });
    expect((await again.sendCheckpoint(testCheckpoint(bundles.space, 1)))?.step).toBe(1);
    await again.endRun('completed');
    expect(svc.sink.records.filter((r) => r.kind === 'run').map((r) => r.kind === 'run' && r.status)).toEqual(
      ['running', 'completed'],
    );
    expect(store.runIds()).toEqual([]);
  } finally {
    engine.close();
    await svc.stop();
  }
}, 60_000);

it('CM_SERVICE_RUN_IDLE_MS and CM_RUN_STATE_TTL_HOURS configure eviction and the bucket TTL', () => {
  expect(loadConfig({}).service).toMatchObject({ runIdleMs: 3_600_000, runStateTtlHours: 0 });
  expect(loadConfig({ CM_SERVICE_RUN_IDLE_MS: '0', CM_RUN_STATE_TTL_HOURS: '48' }).service).toMatchObject({
    runIdleMs: 0,
    runStateTtlHours: 48,
  });
  expect(() => loadConfig({ CM_SERVICE_RUN_IDLE_MS: '-1' })).toThrow(/CM_SERVICE_RUN_IDLE_MS/);
});

it('the same run id twice: the second start is refused (running and after it ended), the first run intact, resume continues it', async () => {
  const service = await startService(await serviceConfig());
  const first = client(service.grpcPort);
  await first.startRun(testRunSpec('twice', bundles.bundleId));
  expect((await first.sendCheckpoint(testCheckpoint(bundles.space, 0)))?.step).toBe(0);

  const second = client(service.grpcPort);
  const whileRunning = await second.startRun(testRunSpec('twice', bundles.bundleId)).then(
    () => undefined,
    (e: unknown) => e as { code?: string; message: string },
  );
  expect(whileRunning?.code).toBe('ALREADY_EXISTS');
  expect(whileRunning?.message).toMatch(/run twice already exists \(it is running\).*resume it/);
  expect((await first.sendCheckpoint(testCheckpoint(bundles.space, 1)))?.step).toBe(1);
  await first.endRun('completed');

  // ended: its saved state is gone, its run record in the stream still says the id is used
  expect(await (await openRunStateKv(bus)).load('twice')).toBeUndefined();
  const third = client(service.grpcPort);
  const afterEnd = await third.startRun(testRunSpec('twice', bundles.bundleId)).then(
    () => undefined,
    (e: unknown) => e as { code?: string; message: string },
  );
  expect(afterEnd?.code).toBe('ALREADY_EXISTS');
  expect(afterEnd?.message).toMatch(/it ran before/);
  // the first run's records are all there, once: one start, one end, two checkpoints
  const runs = await published<{ status: string }>('run', 'twice', 2);
  expect(runs.map((r) => r.status)).toEqual(['running', 'completed']);
  expect((await published<{ step: number }>('checkpoint', 'twice', 2)).map((c) => c.step)).toEqual([0, 1]);

  // resume continues it under the same id
  const resumed = client(service.grpcPort);
  await resumed.startRun(testRunSpec('twice', bundles.bundleId), { resume: true });
  expect((await resumed.sendCheckpoint(testCheckpoint(bundles.space, 2)))?.step).toBe(2);
  await resumed.endRun('completed');
  await stopService(service);
}, 120_000);

it('health tells the truth: NOT_SERVING and 503 within 5 s while nats-server is frozen, SERVING again after', async () => {
  const cfg = await serviceConfig();
  const service = await startService(cfg);
  const url = `http://127.0.0.1:${cfg.service.healthPort}/healthz`;
  const status = async (): Promise<number> =>
    (await fetch(url, { signal: AbortSignal.timeout(4000) })).status;
  expect(await status()).toBe(200);
  process.kill(nats.pid, 'SIGSTOP');
  let downWithin: number | undefined;
  let grpcHealth: { status: string; detail: string } | undefined;
  try {
    const t0 = Date.now();
    if (await waitFor(async () => (await status()) === 503, 5000, 100)) downWithin = Date.now() - t0;
    grpcHealth = await service.server.health();
  } finally {
    process.kill(nats.pid, 'SIGCONT');
  }
  expect(downWithin).toBeDefined();
  expect(grpcHealth).toMatchObject({ status: 'NOT_SERVING' });
  expect(grpcHealth?.detail).toMatch(/JetStream .* does not answer/);
  expect(await waitFor(async () => (await status()) === 200, 15_000, 100)).toBe(true);
  expect((await service.server.health()).status).toBe('SERVING');
  await stopService(service);
}, 60_000);

/** One sample of a Prometheus text exposition: `name{labels} value` (or `name value`). */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text
    .split('\n')
    .find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

it('/metrics counts what the test sent: checkpoints received and acked, refusals by code, bytes, dissections', async () => {
  const cfg = await serviceConfig();
  const service = await startService(cfg);
  const c = client(service.grpcPort);
  await c.startRun(testRunSpec('metered', bundles.bundleId));
  let bytes = 0;
  for (const step of [0, 1, 2]) {
    const cp = testCheckpoint(bundles.space, step);
    bytes += cp.layers.reduce((a, l) => a + l.data.byteLength, 0);
    expect((await c.sendCheckpoint(cp))?.step).toBe(step);
  }
  const bad = testCheckpoint(bundles.space, 3);
  bad.layers[0].data[5] = Number.NaN;
  bytes += bad.layers.reduce((a, l) => a + l.data.byteLength, 0);
  await expect(c.sendCheckpoint(bad)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  await c.endRun('completed');
  const text = await (await fetch(`http://127.0.0.1:${cfg.service.healthPort}/metrics`)).text();
  expect(sample(text, 'cm_service_checkpoints_received_total')).toBe(4);
  expect(sample(text, 'cm_service_checkpoints_acked_total')).toBe(3);
  expect(sample(text, 'cm_service_refusals_total', 'code="INVALID_ARGUMENT"')).toBe(1);
  expect(sample(text, 'cm_service_activation_bytes_total')).toBe(bytes);
  expect(sample(text, 'cm_service_dissection_seconds_count')).toBe(3 * TEST_LAYERS.length);
  expect(sample(text, 'cm_service_publish_seconds_count')).toBeGreaterThanOrEqual(3);
  expect(sample(text, 'cm_service_open_streams')).toBeLessThanOrEqual(1);
  expect(text).toContain('service="concept-service"');
  await stopService(service);
}, 60_000);

// Failover between replicas behind one client target list, with the serving replica SIGKILLed mid-run:
// replica-failover.test.ts (each replica its own process).
