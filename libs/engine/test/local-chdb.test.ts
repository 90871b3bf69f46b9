/**
 * All-in-one mode on chDB: the same engine and DissectPool in one process, records straight into
 * an embedded store. 3 checkpoints of 3 layers -> every neuron once, labels as dissectLayer gives.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dissectLayer } from '@cm/dissect';
import { neuronLabelsSql, openStore, sqlString, type Store } from '@cm/store';
import { createLocalMonitor, storedRunCheck } from '../src';
import {
  makeTestBundles,
  testCheckpoint,
  testRunSpec,
  topImageProblems,
  TEST_LAYERS,
  type TestBundles,
} from '../src/testing';

const DB = 'cm_all_in_one';
let tb: TestBundles;
let store: Store;
const dir = mkdtempSync(join(tmpdir(), 'cm-chdb-'));

beforeAll(async () => {
  tb = await makeTestBundles();
  store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: DB });
  await store.migrate();
}, 60_000);
afterAll(async () => {
  await store?.close();
  tb?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

it('3 checkpoints of 3 layers: every neuron in chDB exactly once, labels as libs/dissect computes them', async () => {
  const runId = "all-in-one 'run'";
  const monitor = createLocalMonitor({ bundles: tb.bundles, store, workers: 1 });
  try {
    await monitor.startRun(testRunSpec(runId, tb.bundleId));
    for (let step = 0; step < 3; step++)
      expect((await monitor.sendCheckpoint(testCheckpoint(tb.space, step)))?.step).toBe(step);
    // a resend (the trainer retried) changes nothing
    await monitor.sendCheckpoint(testCheckpoint(tb.space, 2));
    await monitor.endRun('completed');
  } finally {
    await monitor.close();
  }
  const neurons = TEST_LAYERS.reduce((a, l) => a + l.width, 0);
  const [counts] = await store.query<Record<string, string | number>>(
    `SELECT count() AS final, uniqExact(layer, step, neuron) AS distinct FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  expect({ final: Number(counts.final), distinct: Number(counts.distinct) }).toEqual({
    final: 3 * neurons,
    distinct: 3 * neurons,
  });
  const stored = await store.query<{ layer: string; step: number; neuron: number; concept: string }>(
    neuronLabelsSql(DB, { runId }),
  );
  const byKey = new Map(stored.map((r) => [`${r.layer}|${Number(r.step)}|${Number(r.neuron)}`, r.concept]));
  for (let step = 0; step < 3; step++) {
    for (const layer of testCheckpoint(tb.space, step).layers) {
      const direct = await dissectLayer(tb.space, {
        rows: layer.shape[0],
        cols: layer.shape[1],
        data: layer.data,
      });
      expect(direct.labels.map((l) => byKey.get(`${layer.layer}|${step}|${l.neuron}`))).toEqual(
        direct.labels.map((l) => l.concept),
      );
    }
  }
  // evidence: each neuron's 8 top activating probe images, checked against the activations sent
  const images = await store.query<{ layer: string; step: number; neuron: number; top_images: number[] }>(
    `SELECT layer, step, neuron, top_images FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  expect(images).toHaveLength(3 * neurons);
  const problems: string[] = [];
  for (const r of images) {
    const layer = testCheckpoint(tb.space, Number(r.step)).layers.find((l) => l.layer === r.layer)!;
    expect(r.top_images).toHaveLength(8);
    problems.push(...topImageProblems(layer, Number(r.neuron), r.top_images.map(Number)));
  }
  expect(problems).toEqual([]);
  const runs = await store.query<{ status: string }>(
    `SELECT status FROM runs FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  expect(runs.map((r) => r.status)).toEqual(['completed']);
}, 120_000);

it.each(['cos', 'rank_reorder'] as const)(
  "%s (no top-k of its own): the evidence is the neurons' top activating images too",
  async (method) => {
    const runId = `evidence ${method}`;
    const monitor = createLocalMonitor({
      bundles: tb.bundles,
      store,
      workers: 1,
      dissectOptions: { method, topImages: 5 },
    });
    try {
      await monitor.startRun(testRunSpec(runId, tb.bundleId));
      await monitor.sendCheckpoint(testCheckpoint(tb.space, 1));
      await monitor.endRun('completed');
    } finally {
      await monitor.close();
    }
    const rows = await store.query<{ layer: string; neuron: number; top_images: number[] }>(
      `SELECT layer, neuron, top_images FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)}`,
    );
    expect(rows).toHaveLength(TEST_LAYERS.reduce((a, l) => a + l.width, 0));
    const layers = testCheckpoint(tb.space, 1).layers;
    const problems = rows.flatMap((r) =>
      topImageProblems(
        layers.find((l) => l.layer === r.layer)!,
        Number(r.neuron),
        r.top_images.map(Number),
        5,
      ),
    );
    expect(problems).toEqual([]);
  },
  120_000,
);

it('a new monitor (another process, after a restart) refuses a run id the store holds, unless it resumes', async () => {
  const runId = 'stored run';
  const make = () =>
    createLocalMonitor({ bundles: tb.bundles, store, workers: 1, runExists: storedRunCheck(store) });
  const first = make();
  try {
    await first.startRun(testRunSpec(runId, tb.bundleId));
    await first.sendCheckpoint(testCheckpoint(tb.space, 0));
    await first.endRun('completed');
  } finally {
    await first.close();
  }
  const second = make();
  try {
    await expect(second.startRun(testRunSpec(runId, tb.bundleId))).rejects.toMatchObject({
      code: 'ALREADY_EXISTS',
      message: 'run stored run already exists (it ran before)',
    });
    await second.startRun(testRunSpec(runId, tb.bundleId), { resume: true });
    expect((await second.sendCheckpoint(testCheckpoint(tb.space, 1)))?.step).toBe(1);
    await second.endRun('completed');
  } finally {
    await second.close();
  }
  const [row] = await store.query<{ n: string }>(
    `SELECT count() AS n FROM checkpoints FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  expect(Number(row.n)).toBe(2);
}, 60_000);
