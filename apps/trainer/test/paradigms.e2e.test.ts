import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@cm/core';
import { createLocalMonitor } from '@cm/engine';
import { BundleDirectory } from '@cm/probe';
import { openStore, sqlString, type Store } from '@cm/store';
import {
  ensureSyntheticBundle,
  probeImagesOf,
  runTrainJob,
  selectBackend,
  worldDataset,
  type TrainJob,
} from '@cm/train';

/**
 * Every paradigm end to end in all-in-one mode: real engine, real dissection, embedded chDB store.
 * Tiny model and few steps: this checks the plumbing and the records, not the findings
 * (tools/bench/train.ts measures those).
 */
let dir: string;
let store: Store;

beforeAll(async () => {
  await selectBackend({ log: { ...createLogger('test'), info: () => undefined } });
  dir = mkdtempSync(join(tmpdir(), 'cm-trainer-e2e-'));
  store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: 'cm_test' });
  await store.migrate();
}, 120_000);

afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('standard, finetune, adversarial and lottery runs land in the store with their paradigm', async () => {
  const bundle = await ensureSyntheticBundle(join(dir, 'bundles'), { images: 120, seed: 7 });
  const monitor = createLocalMonitor({
    bundles: new BundleDirectory(join(dir, 'bundles')),
    store,
    workers: 1,
  });
  const train = worldDataset({ task: 'shape', count: 32, seed: 1 });
  const base: Omit<TrainJob, 'paradigm' | 'runId'> = {
    train,
    model: { arch: 'small-cnn', widths: [4, 8] },
    steps: 2,
    batchSize: 8,
    learningRate: 0.01,
    seed: 1,
    monitorEvery: 1,
    monitor,
    probe: probeImagesOf(bundle),
    checkpointDir: join(dir, 'checkpoints'),
  };
  try {
    const std = await runTrainJob({ ...base, paradigm: 'standard', runId: 'e2e-standard' });
    const colour = worldDataset({ task: 'colour', count: 32, seed: 2 });
    await runTrainJob({
      ...base,
      train: colour,
      paradigm: 'finetune',
      runId: 'e2e-finetune',
      finetune: { from: std.runs[0].savedTo!, freeze: ['conv1'] },
    });
    await runTrainJob({
      ...base,
      paradigm: 'adversarial',
      runId: 'e2e-adversarial',
      attack: { method: 'fgsm', epsilon: 4 / 255 },
    });
    await runTrainJob({
      ...base,
      paradigm: 'lottery',
      runId: 'e2e-lottery',
      lottery: { rounds: 1, rate: 0.5, rewindStep: 0 },
    });
  } finally {
    await monitor.close();
  }
  const runs = await store.query<{ run_id: string; paradigm: string; status: string }>(
    `SELECT run_id, paradigm, status FROM runs FINAL ORDER BY run_id`,
  );
  expect(runs.map((r) => [r.run_id, r.paradigm, r.status])).toEqual([
    ['e2e-adversarial', 'adversarial', 'completed'],
    ['e2e-finetune', 'finetune', 'completed'],
    ['e2e-lottery-r0', 'lottery', 'completed'],
    ['e2e-lottery-r1', 'lottery', 'completed'],
    ['e2e-standard', 'standard', 'completed'],
  ]);
  const steps = await store.query<{ run_id: string; n: string | number }>(
    `SELECT run_id, count() AS n FROM checkpoints FINAL GROUP BY run_id ORDER BY run_id`,
  );
  expect(steps.every((s) => Number(s.n) === 3)).toBe(true); // steps 0, 1, 2
  const ftLogits = await store.query<{ n: string | number }>(
    `SELECT count() AS n FROM neuron_labels FINAL WHERE run_id = ${sqlString('e2e-finetune')} AND layer = 'logits' AND step = 2`,
  );
  expect(Number(ftLogits[0].n)).toBe(colour_classes());
  const sparsity = await store.query<{ v: number }>(
    `SELECT metrics.value[indexOf(metrics.name, 'sparsity')] AS v FROM checkpoints FINAL WHERE run_id = 'e2e-lottery-r1' AND step = 0`,
  );
  expect(Number(sparsity[0].v)).toBeGreaterThan(0.4);
}, 300_000);

function colour_classes(): number {
  return worldDataset({ task: 'colour', count: 12, seed: 1 }).classNames.length;
}
