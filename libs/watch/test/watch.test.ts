/**
 * watch() on a functional and on a Sequential tfjs model, all-in-one into a real chDB store:
 * default layers (conv block outputs and the logits), no tensor left behind by 10 probes, every
 * neuron of every checkpoint in the store once, a refused run fails loudly unless allowed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadConfig } from '@cm/config';
import { TABLES } from '@cm/contracts';
import { CmError, setLogLevel } from '@cm/core';
import { makeSyntheticBundle, writeBundleInto } from '@cm/probe';
import { openStore, sqlString } from '@cm/store';
import { selectLayers, watch } from '../src';

setLogLevel('warn');
const dir = mkdtempSync(join(tmpdir(), 'cm-watch-'));
const bundleRoot = join(dir, 'elsewhere'); // not the bundle directory: watch() takes the folder
let bundleFolder: string;
let bundleId: string;
const config = loadConfig({ CM_HOME: join(dir, 'home'), CM_DISSECT_WORKERS: '1' });

beforeAll(async () => {
  const written = await writeBundleInto(bundleRoot, makeSyntheticBundle({ images: 120, seed: 3 }));
  bundleId = written.id;
  bundleFolder = join(bundleRoot, bundleId);
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function functionalModel(): tf.LayersModel {
  const input = tf.input({ shape: [32, 32, 3] });
  let h = tf.layers
    .conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', name: 'c1' })
    .apply(input);
  h = tf.layers.maxPooling2d({ poolSize: 2 }).apply(h);
  h = tf.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', name: 'c2' }).apply(h);
  h = tf.layers.activation({ activation: 'relu', name: 'c2_relu' }).apply(h);
  h = tf.layers.globalAveragePooling2d({}).apply(h);
  const out = tf.layers.dense({ units: 5, name: 'head' }).apply(h) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name: 'functional_cnn' });
}

function sequentialModel(): tf.LayersModel {
  return tf.sequential({
    name: 'sequential_cnn',
    layers: [
      tf.layers.conv2d({
        inputShape: [32, 32, 3],
        filters: 3,
        kernelSize: 3,
        activation: 'relu',
        name: 's1',
      }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 5, kernelSize: 3, activation: 'relu', name: 's2' }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 4, name: 'logit_layer' }),
    ],
  });
}

async function labelCounts(runId: string): Promise<{ layer: string; n: number; distinct: number }[]> {
  const store = await openStore({
    kind: 'chdb',
    path: config.chdbPath,
    database: config.clickhouse.database,
  });
  try {
    const rows = await store.query<{ layer: string; n: string; distinct: string }>(
      `SELECT layer, count() AS n, uniqExact(step, neuron) AS distinct FROM ${TABLES.neuronLabels} WHERE run_id = ${sqlString(runId)} GROUP BY layer ORDER BY layer`,
    );
    return rows.map((r) => ({ layer: r.layer, n: Number(r.n), distinct: Number(r.distinct) }));
  } finally {
    await store.close();
  }
}

describe('watch()', () => {
  it('default layers: conv block outputs and the logits, for functional and Sequential models', () => {
    expect(selectLayers(functionalModel()).map((l) => `${l.name}:${l.kind}:${l.width}`)).toEqual([
      'c1:conv:4',
      'c2_relu:conv:6',
      'head:dense:5',
    ]);
    expect(selectLayers(sequentialModel()).map((l) => `${l.name}:${l.kind}:${l.width}`)).toEqual([
      's1:conv:3',
      's2:conv:5',
      'logit_layer:dense:4',
    ]);
    expect(selectLayers(functionalModel(), ['conv', 'logits']).map((l) => l.name)).toEqual([
      'c1',
      'c2',
      'head',
    ]);
    expect(() => selectLayers(functionalModel(), ['nope'])).toThrow(/unknown monitored layer 'nope'/);
  });

  for (const [kind, build, widths] of [
    ['functional', functionalModel, 4 + 6 + 5],
    ['Sequential', sequentialModel, 3 + 5 + 4],
  ] as const) {
    it(`${kind}: 10 probes leave tf.memory().numTensors unchanged; every label lands in the store once`, async () => {
      const model = build();
      const runId = `watch-${kind}`;
      const warnings: string[] = [];
      const watcher = await watch(model, {
        probe: bundleFolder,
        every: 5,
        runId,
        config,
        batchSize: 50,
        onWarning: (m) => warnings.push(m),
      });
      const before = tf.memory().numTensors;
      let probes = 0;
      for (let step = 0; step < 50; step++) if (await watcher.step(step, { loss: 1 / (step + 1) })) probes++;
      expect(probes).toBe(10);
      expect(tf.memory().numTensors).toBe(before);
      const stats = await watcher.close();
      expect(warnings).toEqual([]);
      expect(stats).toMatchObject({
        monitored: true,
        checkpoints: 10,
        acknowledged: 10,
        dropped: 0,
        failed: 0,
      });
      expect(stats.probeSeconds).toBeGreaterThan(0);
      expect(stats.seconds).toBeGreaterThanOrEqual(stats.probeSeconds);
      const counts = await labelCounts(runId);
      expect(counts.reduce((s, c) => s + c.n, 0)).toBe(10 * widths);
      expect(counts.every((c) => c.n === c.distinct)).toBe(true);
      model.dispose();
    }, 120_000);
  }

  it('a run that cannot start rejects with the reason; allowUnmonitored makes it a warning and a no-op', async () => {
    const model = functionalModel();
    const unreachable = {
      probe: bundleFolder,
      config,
      target: '127.0.0.1:1',
      policy: 'wait' as const,
      maxBlockMs: 300,
    };
    await expect(watch(model, unreachable)).rejects.toThrow(CmError);
    await expect(watch(model, unreachable)).rejects.toThrow(
      /could not start through the concept service at 127.0.0.1:1/,
    );
    const warnings: string[] = [];
    const watcher = await watch(model, {
      ...unreachable,
      allowUnmonitored: true,
      onWarning: (m) => warnings.push(m),
    });
    expect(warnings[0]).toMatch(/training goes on unmonitored/);
    expect(await watcher.step(0)).toBe(true);
    expect((await watcher.close()).monitored).toBe(false);
    await expect(watch(model, { probe: join(dir, 'missing'), config })).rejects.toThrow(
      /neither a bundle folder nor a bundle id/,
    );
    model.dispose();
  });
});
