/**
 * The learned-concept share over gRPC: the service reads the baseline cache under CM_HOME
 * (FileBaselineStore), so an architecture whose baseline an all-in-one run made there has the
 * figure in every ack (LayerSummary.learned_fraction) and layer_metrics row, another reads null
 * (not 0); and a trainer sends the random initialisations itself over the stream
 * (RunAccepted.baseline_wanted, RandomInitEnd / RandomInitAck).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@cm/config';
import { setLogLevel } from '@cm/core';
import { nullActivations } from '@cm/dissect';
import { localMonitorFromConfig } from '@cm/engine';
import { createMonitorClient } from '@cm/monitor-client';
import { openStore, sqlString, type Store } from '@cm/store';
import {
  makeTestBundles,
  testCheckpoint,
  testRunSpec,
  TEST_LAYERS,
  type TestBundles,
} from '@cm/engine/src/testing';
import { startAllInOne } from '../src';

setLogLevel('warn');
const dir = mkdtempSync(join(tmpdir(), 'cm-learned-grpc-'));
/** An "untrained" network's layers: unrelated to the images (seeded normal activations). */
const randomInit = (D: number, index: number, layers = TEST_LAYERS) =>
  layers.map((l) => ({
    layer: l.name,
    shape: [D, l.width],
    data: nullActivations(D, l.width, 500 + 10 * index + l.width).data,
  }));
let tb: TestBundles;
let store: Store;

beforeAll(async () => {
  tb = await makeTestBundles();
  store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: 'cm_learned_grpc' });
  await store.migrate();
}, 60_000);
afterAll(async () => {
  await store?.close();
  tb?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

it('acks and layer_metrics carry the learned share where CM_HOME holds the baseline, null elsewhere', async () => {
  const config = loadConfig({ CM_HOME: join(dir, 'home'), CM_DISSECT_WORKERS: '1' });
  // an all-in-one run of the architecture makes the baseline (2 "untrained" networks)
  const local = localMonitorFromConfig(config, { store, bundles: tb.bundles, workers: 1 });
  await local.startRun(testRunSpec('local-run', tb.bundleId));
  const D = tb.space.probeScores.rows;
  for (let index = 0; index < 2; index++)
    await local.sendBaseline({ index, inits: 2, layers: randomInit(D, index) });
  await local.endRun('completed');
  await local.close();

  const running = await startAllInOne({
    config,
    store,
    listen: '127.0.0.1:0',
    healthPort: 0,
    bundles: tb.bundles,
  });
  const client = createMonitorClient({ target: running.grpcAddress });
  try {
    await client.startRun(testRunSpec('grpc-run', tb.bundleId));
    const ack = await client.sendCheckpoint(testCheckpoint(tb.space, 0));
    const learned = ack!.layers.map((l) => l.learnedFraction);
    learned.forEach((f) => expect(f).toBeGreaterThan(0.5)); // planted concept detectors
    await client.endRun('completed');
    const rows = await store.query<{ layer: string; f: number | null }>(
      `SELECT layer, learned_fraction AS f FROM layer_metrics FINAL WHERE run_id = ${sqlString('grpc-run')} ORDER BY layer`,
    );
    expect(rows.map((r) => [r.layer, r.f])).toEqual(
      ack!.layers
        .map((l) => [l.layer, l.learnedFraction])
        .sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    );
    // another architecture (one layer): no baseline, null over the wire and in the store
    await client.startRun(testRunSpec('other-arch', tb.bundleId, TEST_LAYERS.slice(0, 1)));
    const other = await client.sendCheckpoint(testCheckpoint(tb.space, 0, TEST_LAYERS.slice(0, 1)));
    expect(other!.layers.map((l) => l.learnedFraction)).toEqual([null]);
    await client.endRun('completed');
    const [row] = await store.query<{ f: number | null }>(
      `SELECT learned_fraction AS f FROM layer_metrics FINAL WHERE run_id = ${sqlString('other-arch')}`,
    );
    expect(row.f).toBeNull();
  } finally {
    await client.close();
    await running.stop();
  }
}, 120_000);

it('a trainer sends the baseline over the stream when the service wants it, once per architecture', async () => {
  const config = loadConfig({ CM_HOME: join(dir, 'home2'), CM_DISSECT_WORKERS: '1' });
  const running = await startAllInOne({
    config,
    store,
    listen: '127.0.0.1:0',
    healthPort: 0,
    bundles: tb.bundles,
  });
  const client = createMonitorClient({ target: running.grpcAddress });
  const D = tb.space.probeScores.rows;
  try {
    await client.startRun(testRunSpec('wire-1', tb.bundleId));
    expect(await client.baselineWanted()).toBe(true);
    // refused (index outside 0..1): the reason comes back, the stream goes on
    await expect(client.sendBaseline({ index: 5, inits: 2, layers: randomInit(D, 0) })).rejects.toThrow(
      /random init 5 refused: run wire-1: random init index must be 0..1, got 5/,
    );
    for (let index = 0; index < 2; index++)
      await client.sendBaseline({ index, inits: 2, layers: randomInit(D, index) });
    const ack = await client.sendCheckpoint(testCheckpoint(tb.space, 0));
    ack!.layers.forEach((l) => expect(l.learnedFraction).toBeGreaterThan(0.5));
    const copy = await client.sendCheckpoint({ step: 1, layers: randomInit(D, 1), metrics: {} });
    expect(copy!.layers.map((l) => l.learnedFraction)).toEqual([0, 0, 0]);
    await client.endRun('completed');
    // the next run of the architecture: not wanted again
    await client.startRun(testRunSpec('wire-2', tb.bundleId));
    expect(await client.baselineWanted()).toBe(false);
    await client.endRun('completed');
  } finally {
    await client.close();
    await running.stop();
  }
}, 120_000);
