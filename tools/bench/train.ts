/**
 * Trainer benchmark: `npm run bench:train [-- --quick] [-- --only speed,overhead,findings]`.
 *
 * Prints, for this machine:
 *   speed     training images/s of the default model (small-cnn-16-32-64, batch 32, 32 px world
 *             images) on the selected backend, wall clock and per CPU-second of this process
 *             (the second is what the machine's load does not change much);
 *   overhead  the monitoring overhead at the default interval (every 100 steps): time spent
 *             probing and streaming (and waiting for the monitor) over total time, all-in-one mode,
 *             plus the wall-time slowdown against the same run unmonitored;
 *   findings  the demo's standard run, then adversarial and lottery runs on the same world:
 *             logit neurons labelled with their own class, interpretable share at step 0 vs the
 *             last checkpoint per layer (as the monitor reports it, against the i.i.d. null, and
 *             against the untrained-network null: 8 fresh initialisations of the same model), the
 *             share of colour neurons standard vs adversarial, and the lottery rounds'
 *             interpretable share at initialisation.
 * Results are also written as JSON to .cm/bench/train.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@cm/core';
import type * as tf from '@tensorflow/tfjs';
import { dissectLayer } from '@cm/dissect';
import { createLocalMonitor } from '@cm/engine';
import { BundleDirectory, makeSyntheticBundle } from '@cm/probe';
import { openStore, sqlString, type Store } from '@cm/store';
import {
  ensureSyntheticBundle,
  Prober,
  selectLayers,
  untrainedNullShares,
  ownClassAccuracy,
  probeImagesOf,
  runTrainJob,
  selectBackend,
  splitDataset,
  TRAIN_DEFAULTS,
  worldDataset,
  type TrainJob,
  type TrainRunResult,
} from '@cm/train';

const log = createLogger('bench.train');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const onlyArg = args.find((a) => a.startsWith('--only='))?.slice(7) ?? args[args.indexOf('--only') + 1];
const only = new Set(
  (args.includes('--only') || onlyArg ? onlyArg! : 'speed,overhead,findings,lottery').split(','),
);

/**
 * Per layer, first and last checkpoint: the engine's interpretable share and the colour share of
 * its interpretable neurons (layer_metrics), and, because the share of interpretable neurons can
 * be tiny, the colour share of all neurons' top-1 labels (neuron_labels) too.
 */
async function layerReport(store: Store, runId: string) {
  const rows = await store.query<{
    layer: string;
    step: string | number;
    f: number;
    s: number;
    cats: string[];
    shares: number[];
  }>(
    `SELECT layer, step, interpretable_fraction AS f, mean_top_score AS s, category_shares.category AS cats, category_shares.share AS shares
     FROM layer_metrics FINAL WHERE run_id = ${sqlString(runId)} ORDER BY layer, step`,
  );
  const labels = await store.query<{ layer: string; step: string | number; colour: number }>(
    `SELECT layer, step, countIf(category = 'colour') / count() AS colour FROM neuron_labels FINAL
     WHERE run_id = ${sqlString(runId)} GROUP BY layer, step ORDER BY layer, step`,
  );
  const colourOfAll = new Map(labels.map((l) => [`${l.layer}@${Number(l.step)}`, Number(l.colour)]));
  type Point = {
    step: number;
    interpretable: number;
    meanTopScore: number;
    colourShareInterpretable: number;
    colourShareAll: number;
  };
  const out: Record<string, { first: Point; last: Point }> = {};
  for (const r of rows) {
    const step = Number(r.step);
    const ci = r.cats.indexOf('colour');
    const p: Point = {
      step,
      interpretable: Number(r.f),
      meanTopScore: Number(r.s),
      colourShareInterpretable: ci >= 0 ? Number(r.shares[ci]) : 0,
      colourShareAll: colourOfAll.get(`${r.layer}@${step}`) ?? NaN,
    };
    if (!out[r.layer]) out[r.layer] = { first: p, last: p };
    else out[r.layer].last = p;
  }
  return out;
}

async function logitAccuracy(store: Store, run: TrainRunResult, classNames: string[]) {
  const labels = await store.query<{ neuron: string | number; concept: string }>(
    `SELECT neuron, concept FROM neuron_labels FINAL WHERE run_id = ${sqlString(run.runId)} AND layer = 'logits' AND step = ${run.steps} ORDER BY neuron`,
  );
  return ownClassAccuracy(
    labels.map((l) => ({ neuron: Number(l.neuron), concept: l.concept })),
    classNames,
  );
}

/**
 * Own-class labelling of the final logits on probe sets the run never saw (other seeds of the
 * world, same size): the demo's figure on its one bundle could be luck of that bundle's images.
 */
async function ownClassAcrossProbeSeeds(
  trained: tf.LayersModel,
  classNames: string[],
  images: number,
  seeds: number[],
) {
  const layers = selectLayers(trained, ['logits']);
  const perSeed: { seed: number; accuracy: number; wrong: unknown[] }[] = [];
  for (const seed of seeds) {
    const b = makeSyntheticBundle({ images, seed });
    const [a] = new Prober(trained, layers, b.images, b.imageShape).activations();
    const { labels } = await dissectLayer(b.space, { rows: a.shape[0], cols: a.shape[1], data: a.data });
    perSeed.push({ seed, ...ownClassAccuracy(labels, classNames) });
  }
  return { mean: perSeed.reduce((t, p) => t + p.accuracy, 0) / perSeed.length, perSeed };
}

async function main(): Promise<void> {
  const backend = await selectBackend();
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-train-'));
  const results: Record<string, unknown> = {
    backend: backend.name,
    provider: backend.provider,
    machine: `${cpus().length} cores`,
    quick,
  };
  const data = worldDataset({ task: 'shape', count: TRAIN_DEFAULTS.count, seed: 1 });
  const { train, test } = splitDataset(data, 0.1, 1);
  const bundle = await ensureSyntheticBundle(join(dir, 'bundles'), {
    images: TRAIN_DEFAULTS.probeImages,
    seed: 7,
  });
  const store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: 'bench' });
  await store.migrate();
  const base: Omit<TrainJob, 'paradigm' | 'runId'> = {
    train,
    test,
    model: { arch: 'small-cnn', widths: TRAIN_DEFAULTS.widths.split(',').map(Number) },
    steps: TRAIN_DEFAULTS.steps,
    batchSize: TRAIN_DEFAULTS.batch,
    learningRate: TRAIN_DEFAULTS.lr,
    seed: 1,
    monitorEvery: TRAIN_DEFAULTS.every,
    probe: probeImagesOf(bundle),
  };
  const monitored = async (job: TrainJob) => {
    const monitor = createLocalMonitor({
      bundles: new BundleDirectory(join(dir, 'bundles')),
      store,
      workers: 1,
    });
    try {
      return await runTrainJob({ ...job, monitor });
    } finally {
      await monitor.close();
    }
  };
  try {
    if (only.has('speed')) {
      const steps = quick ? 60 : 300;
      const cpu0 = process.cpuUsage();
      const r = (await runTrainJob({ ...base, paradigm: 'standard', runId: 'speed', steps, test: undefined }))
        .runs[0];
      const cpu = process.cpuUsage(cpu0);
      const cpuSeconds = (cpu.user + cpu.system) / 1e6;
      results.speed = {
        steps,
        batch: base.batchSize,
        imagesPerSecond: r.imagesPerSecond,
        imagesPerCpuSecond: (steps * base.batchSize) / cpuSeconds,
      };
      log.info('speed', results.speed as Record<string, unknown>);
    }
    if (only.has('overhead')) {
      const steps = quick ? 200 : 500;
      const plain = (
        await runTrainJob({ ...base, paradigm: 'standard', runId: 'plain', steps, test: undefined })
      ).runs[0];
      const mon = (
        await monitored({ ...base, paradigm: 'standard', runId: 'overhead', steps, test: undefined })
      ).runs[0];
      results.overhead = {
        steps,
        every: base.monitorEvery,
        checkpoints: mon.checkpoints.length,
        monitorSeconds: mon.monitorSeconds,
        totalSeconds: mon.totalSeconds,
        overhead: mon.monitorOverhead,
        unmonitoredSeconds: plain.totalSeconds,
        wallSlowdown: mon.totalSeconds / plain.totalSeconds - 1,
      };
      log.info('overhead', results.overhead as Record<string, unknown>);
    }
    if (only.has('findings')) {
      const steps = quick ? 300 : base.steps;
      const stdJob = await monitored({ ...base, paradigm: 'standard', runId: 'standard', steps });
      const std = stdJob.runs[0];
      const advJob = await monitored({
        ...base,
        paradigm: 'adversarial',
        runId: 'adversarial',
        steps,
        attack: {
          method: 'fgsm',
          epsilon: 4 / 255,
          seed: 1,
          warmupSteps: Math.round(TRAIN_DEFAULTS.epsWarmup * steps),
        },
      });
      const adv = advJob.runs[0];
      const classes = train.classNames.length;
      const stdLayers = await layerReport(store, std.runId);
      const advLayers = await layerReport(store, adv.runId);
      results.findings = {
        steps,
        standard: {
          testAccuracy: std.testAccuracy,
          logits: await logitAccuracy(store, std, train.classNames),
          layers: stdLayers,
          untrainedNull: await untrainedNullShares(bundle, base.model, classes, base.seed, stdJob.model),
          logitsOtherProbeSets: await ownClassAcrossProbeSeeds(
            stdJob.model,
            train.classNames,
            TRAIN_DEFAULTS.probeImages,
            [1, 2, 3, 4, 5, 6, 8, 9],
          ),
        },
        adversarial: {
          testAccuracy: adv.testAccuracy,
          logits: await logitAccuracy(store, adv, train.classNames),
          layers: advLayers,
          untrainedNull: await untrainedNullShares(bundle, base.model, classes, base.seed, advJob.model),
        },
      };
    }
    if (only.has('lottery')) {
      const steps = Math.round((quick ? 300 : base.steps) / 2);
      const lt = (
        await monitored({
          ...base,
          paradigm: 'lottery',
          runId: 'lottery',
          steps,
          lottery: { rounds: 2, rate: 0.6, rewindStep: 0 },
        })
      ).runs;
      results.lottery = await Promise.all(
        lt.map(async (r) => ({
          runId: r.runId,
          testAccuracy: r.testAccuracy,
          logits: await logitAccuracy(store, r, train.classNames),
          layers: await layerReport(store, r.runId),
        })),
      );
    }
  } finally {
    await store.close();
    if (args.includes('--keep')) log.info(`store kept at ${join(dir, 'store')} (database bench)`);
    else rmSync(dir, { recursive: true, force: true });
  }
  const text = JSON.stringify(results, null, 2);
  const name = only.size === 4 ? 'train' : `train-${[...only].join('-')}`;
  process.stdout.write(text + '\n');
  mkdirSync('.cm/bench', { recursive: true });
  writeFileSync(`.cm/bench/${name}.json`, text);
}

void main();
