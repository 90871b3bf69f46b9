import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { CheckpointResult, Monitor, MonitoredLayer, RunSpec } from '@cm/contracts';
import type { Matrix } from '@cm/dissect';
import { CmError, invalidArgument } from '@cm/core';
import { epsilonAt, perturb, type AttackSpec } from './adversarial';
import { saveCheckpoint, type NamedTensor, type TrainerState } from './checkpoint';
import { BatchSampler, type ImageDataset } from './data';
import { DiversityRegulariser, type DiversityRegOptions } from './diversity';
import { applyMasks } from './lottery';
import { trainableVariables } from './models';
import { watch, type CheckpointOutcome, type Watcher } from '@cm/watch';
import { toInput } from './probing';

/** What a terminal view (or a test) sees of a run. All methods optional. */
export interface TrainObserver {
  onStart?(info: {
    runId: string;
    paradigm: string;
    totalSteps: number;
    startStep: number;
    layers: MonitoredLayer[];
  }): void;
  onStep?(s: StepStats): void;
  onCheckpoint?(step: number, result: CheckpointResult): void;
  onWarning?(message: string): void;
  onEnd?(result: TrainRunResult): void;
}

export interface StepStats {
  step: number;
  totalSteps: number;
  loss: number;
  accuracy: number;
  imagesPerSecond: number;
  epoch: number;
}

export interface ProbeImages {
  bundleId: string;
  images: Uint8Array;
  imageShape: [number, number, number, number];
  /** The bundle's concept scores P (D x S): what the diversity regulariser needs besides the images. */
  probeScores?: Matrix;
}

export interface TrainRunOptions {
  runId: string;
  paradigm: string;
  model: tf.LayersModel;
  modelName: string;
  blocks: string[];
  layers: MonitoredLayer[];
  train: ImageDataset;
  test?: ImageDataset;
  /** Step this run ends at (optimizer steps since the run began). */
  steps: number;
  /** Resume: steps already done (their batches are skipped; no step-0 checkpoint is sent). */
  startStep?: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  optimizer?: tf.Optimizer;
  /** Adversarial training: train on these perturbed inputs. */
  attack?: AttackSpec;
  /** Lottery ticket: masks enforced after every optimizer step. */
  masks?: Map<string, tf.Tensor>;
  /**
   * Concept-diversity regulariser (libs/train/src/diversity.ts): weight x the term on a probe batch
   * is added to the loss at every step; weight 0 or absent trains without it. Checkpoints record
   * the window's mean term as the metric `diversityTerm`.
   */
  diversity?: DiversityRegOptions;
  monitor?: Monitor;
  probe?: ProbeImages;
  /** Checkpoint interval in steps (and always step 0 and the last step). */
  monitorEvery: number;
  /** Checkpoints in flight before the loop waits for the oldest (the monitor's policy bounds the wait). */
  maxInFlight?: number;
  tags?: Record<string, string>;
  /** Added to every checkpoint's metrics (round, sparsity...). */
  extraMetrics?: Record<string, number>;
  /** Save a resumable checkpoint to `<checkpointDir>/<runId>` every `checkpointEvery` steps and at the end. */
  checkpointDir?: string;
  checkpointEvery?: number;
  /** Paradigm state saved with disk checkpoints (lottery masks, rewind weights). */
  extraTensors?: () => NamedTensor[];
  stateMeta?: Record<string, unknown>;
  observer?: TrainObserver;
  /** Called after every optimizer step (lottery: capture the rewind weights). */
  afterStep?: (step: number) => void;
  /** Stop early (SIGINT): the loop finishes the current step, checkpoints and ends the run as failed. */
  signal?: AbortSignal;
  /**
   * A run the monitor refuses to start (service down, unknown bundle): true fails the run with that
   * error before training (what `cm train` does unless --allow-unmonitored); false (default here)
   * warns and trains unmonitored.
   */
  requireMonitor?: boolean;
  /** Continue the monitored run if its id is known (training resumed from a checkpoint). */
  resumeRun?: boolean;
  /**
   * Random initialisation k of the model's architecture, for the learned-concept baseline
   * (WatchOptions.randomInit); default: the model rebuilt with unseeded initializers.
   */
  randomInit?: (index: number) => tf.LayersModel;
  /** K of that baseline (WatchOptions.randomInits). */
  randomInits?: number;
}

export type { CheckpointOutcome };

export interface TrainRunResult {
  runId: string;
  paradigm: string;
  steps: number;
  /**
   * Mean training loss (and accuracy) over the steps of the last checkpoint window (since the
   * previous checkpoint): exactly the `loss` / `accuracy` the store's last checkpoint holds, so the
   * summary and `cm sql` agree. Not the last batch's loss, which is noisier than any stored value.
   */
  finalLoss: number;
  finalAccuracy: number;
  testAccuracy?: number;
  /** Classes of the task (chance level is 1 / classes). */
  classes: number;
  /** The probe bundle the run was monitored with (none when unmonitored). */
  bundleId?: string;
  /** Lottery ticket: the round and the share of pruned weights its mask holds. */
  lottery?: { round: number; sparsity: number };
  /** Diversity regulariser: its weight and the mean term over the last checkpoint window. */
  diversity?: { weight: number; finalTerm: number };
  /** Training images per second, training time only. */
  imagesPerSecond: number;
  trainSeconds: number;
  /** Probing, streaming and waiting for the monitor (including the final drain). */
  monitorSeconds: number;
  totalSeconds: number;
  monitorOverhead: number;
  checkpoints: CheckpointOutcome[];
  savedTo?: string;
  status: 'completed' | 'failed';
}

const now = () => performance.now() / 1000;
const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

/** Accuracy of a model on a dataset (inference mode, batches of 256). */
export function evaluate(model: tf.LayersModel, ds: ImageDataset, batch = 256): number {
  const [n, h, w, c] = ds.shape;
  const px = h * w * c;
  let correct = 0;
  for (let s = 0; s < n; s += batch) {
    const k = Math.min(batch, n - s);
    correct += tf.tidy(() => {
      const x = toInput(ds.images.subarray(s * px, (s + k) * px), [k, h, w, c]);
      const pred = (model.predict(x, { batchSize: k }) as tf.Tensor).argMax(-1);
      return pred
        .equal(tf.tensor1d(ds.labels.subarray(s, s + k), 'int32'))
        .sum()
        .dataSync()[0];
    });
  }
  return n === 0 ? 0 : correct / n;
}

export function runSpecOf(
  o: Pick<TrainRunOptions, 'runId' | 'paradigm' | 'modelName' | 'layers' | 'probe' | 'tags'>,
): RunSpec {
  if (!o.probe) throw invalidArgument('a monitored run needs probe images');
  return {
    runId: o.runId,
    model: o.modelName,
    paradigm: o.paradigm,
    bundleId: o.probe.bundleId,
    layers: o.layers,
    tags: o.tags ?? {},
  };
}

/**
 * One monitored training run: the loop every paradigm shares. The monitor is only ever called
 * through the Monitor interface, so the same loop streams to a concept service (monitor-client)
 * or into the embedded engine (all-in-one), and a monitor that fails never stops training: its
 * errors become warnings and failed checkpoints in the result.
 */
export async function trainRun(o: TrainRunOptions): Promise<TrainRunResult> {
  const start = o.startStep ?? 0;
  if (!Number.isInteger(o.steps) || o.steps < 1)
    throw invalidArgument(`steps must be a positive integer, got ${o.steps}`);
  if (start < 0 || start > o.steps) throw invalidArgument(`resume step ${start} is outside 0..${o.steps}`);
  if (!Number.isInteger(o.monitorEvery) || o.monitorEvery < 1)
    throw invalidArgument(`monitor interval must be a positive integer, got ${o.monitorEvery}`);
  const classes = o.train.classNames.length;
  const outUnits = (o.model.outputs[0].shape as number[])[1];
  if (outUnits !== classes)
    throw invalidArgument(`the model has ${outUnits} outputs but the data has ${classes} classes`, {
      outUnits,
      classes,
    });

  const t0 = now();
  const optimizer = o.optimizer ?? tf.train.adam(o.learningRate);
  const varList = trainableVariables(o.model);
  const sampler = new BatchSampler(o.train, o.batchSize, o.seed);
  sampler.skip(start);
  const [, h, w, c] = o.train.shape;
  const monitored = o.monitor !== undefined && o.probe !== undefined;
  let trainSeconds = 0;
  let trainedImages = 0;
  const warn = (m: string) => o.observer?.onWarning?.(m);

  // Metrics accumulated since the last checkpoint.
  let lossSum = 0;
  let accSum = 0;
  let count = 0;
  // The last checkpoint window's means: what the last checkpoint stores (TrainRunResult.finalLoss).
  let windowLoss = NaN;
  let windowAcc = NaN;
  const regulariser =
    o.diversity && o.diversity.weight > 0 ? new DiversityRegulariser(o.model, o.diversity) : undefined;
  let termSum = 0;
  let windowTerm = NaN;
  let emaRate = 0;

  o.observer?.onStart?.({
    runId: o.runId,
    paradigm: o.paradigm,
    totalSteps: o.steps,
    startStep: start,
    layers: o.layers,
  });

  // One way to probe: the loop monitors through watch(), as any tfjs program does.
  let watcher: Watcher | undefined;
  if (monitored) {
    const spec = runSpecOf(o);
    watcher = await watch(o.model, {
      monitor: o.monitor,
      probe: o.probe!,
      layers: o.layers.map((l) => l.name),
      every: o.monitorEvery,
      runId: spec.runId,
      paradigm: spec.paradigm,
      modelName: spec.model,
      tags: spec.tags,
      maxInFlight: o.maxInFlight ?? 2,
      allowUnmonitored: !o.requireMonitor,
      resume: o.resumeRun,
      randomInit: o.randomInit,
      randomInits: o.randomInits,
      onWarning: warn,
      onCheckpoint: (step, result) => o.observer?.onCheckpoint?.(step, result),
    });
  }

  const sendCheckpoint = async (step: number): Promise<void> => {
    if (count > 0) {
      windowLoss = lossSum / count;
      windowAcc = accSum / count;
      windowTerm = termSum / count;
    }
    const termMean = count > 0 && regulariser ? termSum / count : undefined;
    termSum = 0;
    if (!watcher) {
      lossSum = accSum = count = 0;
      return;
    }
    const metrics: Record<string, number> = {
      learningRate: o.learningRate,
      epoch: sampler.epoch,
      imagesPerSecond: trainSeconds > 0 ? trainedImages / trainSeconds : 0,
      ...(count > 0 ? { loss: lossSum / count, accuracy: accSum / count } : {}),
      ...(o.attack ? { epsilon: epsilonAt(o.attack, step) } : {}),
      ...(termMean !== undefined ? { diversityTerm: termMean } : {}),
      ...o.extraMetrics,
    };
    lossSum = accSum = count = 0;
    await watcher.checkpoint(step, metrics);
  };

  const save = async (step: number): Promise<string | undefined> => {
    if (!o.checkpointDir) return undefined;
    const state: TrainerState = {
      version: 1,
      runId: o.runId,
      step,
      paradigm: o.paradigm,
      modelName: o.modelName,
      blocks: o.blocks,
      classNames: o.train.classNames,
      meta: {
        ...o.stateMeta,
        totalSteps: o.steps,
        batchSize: o.batchSize,
        learningRate: o.learningRate,
        seed: o.seed,
      },
    };
    return saveCheckpoint(
      join(o.checkpointDir, o.runId),
      o.model,
      state,
      await optimizer.getWeights(),
      o.extraTensors?.(),
    );
  };

  let status: 'completed' | 'failed' = 'completed';
  let step = start;
  let savedTo: string | undefined;
  try {
    if (start === 0) await sendCheckpoint(0);
    while (step < o.steps) {
      if (o.signal?.aborted) {
        status = 'failed';
        warn(`stopped at step ${step}`);
        break;
      }
      const batch = sampler.next();
      const ts = now();
      const [loss, acc, term] = tf.tidy(() => {
        const x = toInput(batch.images, [o.batchSize, h, w, c]);
        const labels = tf.tensor1d(batch.labels, 'int32');
        const y = tf.oneHot(labels, classes) as tf.Tensor2D;
        const input = o.attack ? perturb(o.model, x, y, o.attack, step) : x;
        let accT: tf.Tensor | undefined;
        let ceT: tf.Tensor | undefined;
        let termT: tf.Tensor | undefined;
        const cost = optimizer.minimize(
          () => {
            const logits = o.model.apply(input, { training: true }) as tf.Tensor;
            accT = tf.keep(logits.argMax(-1).equal(labels).mean());
            const ce = tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
            if (!regulariser) return ce;
            ceT = tf.keep(ce);
            const t = regulariser.term(true);
            termT = tf.keep(t);
            return ce.add(t.mul(regulariser.weight)) as tf.Scalar;
          },
          true,
          varList,
        );
        if (o.masks) applyMasks(o.model, o.masks);
        // the reported loss stays the cross-entropy, so runs with and without the term compare
        const out = [(ceT ?? cost!).dataSync()[0], accT!.dataSync()[0], termT ? termT.dataSync()[0] : 0];
        // kept tensors outlive tidy: dispose them here
        for (const t of [accT, ceT, termT]) t?.dispose();
        return out;
      });
      if (!Number.isFinite(loss))
        throw new CmError('INTERNAL', `training diverged at step ${step + 1}: loss is ${loss}`, {
          context: { step: step + 1 },
          hint: 'lower the learning rate',
        });
      const dt = now() - ts;
      trainSeconds += dt;
      trainedImages += o.batchSize;
      step++;
      lossSum += loss;
      accSum += acc;
      termSum += term;
      count++;
      const rate = o.batchSize / dt;
      emaRate = emaRate === 0 ? rate : 0.9 * emaRate + 0.1 * rate;
      o.afterStep?.(step);
      o.observer?.onStep?.({
        step,
        totalSteps: o.steps,
        loss,
        accuracy: acc,
        imagesPerSecond: emaRate,
        epoch: sampler.epoch,
      });
      // unmonitored runs keep the same windows, so finalLoss means the same with and without a monitor
      const due = watcher ? watcher.due(step) : step % o.monitorEvery === 0;
      if (due || step === o.steps) await sendCheckpoint(step);
      else await yieldToEventLoop();
      if (o.checkpointEvery && step % o.checkpointEvery === 0 && step < o.steps) savedTo = await save(step);
    }
    savedTo = (await save(step)) ?? savedTo;
  } catch (e) {
    status = 'failed';
    regulariser?.dispose();
    await watcher?.close('failed').catch(() => undefined);
    throw e;
  }
  regulariser?.dispose();
  const monitorSeconds = watcher ? (await watcher.close(status)).seconds : 0;
  const testAccuracy = o.test ? evaluate(o.model, o.test) : undefined;
  const totalSeconds = now() - t0;
  const result: TrainRunResult = {
    runId: o.runId,
    paradigm: o.paradigm,
    steps: step,
    finalLoss: windowLoss,
    finalAccuracy: windowAcc,
    testAccuracy,
    classes,
    bundleId: monitored ? o.probe!.bundleId : undefined,
    lottery:
      o.extraMetrics?.round !== undefined && o.extraMetrics.sparsity !== undefined
        ? { round: o.extraMetrics.round, sparsity: o.extraMetrics.sparsity }
        : undefined,
    diversity: regulariser ? { weight: regulariser.weight, finalTerm: windowTerm } : undefined,
    imagesPerSecond: trainSeconds > 0 ? trainedImages / trainSeconds : 0,
    trainSeconds,
    monitorSeconds,
    totalSeconds,
    monitorOverhead: totalSeconds > 0 ? monitorSeconds / totalSeconds : 0,
    checkpoints: watcher?.outcomes ?? [],
    savedTo,
    status,
  };
  o.observer?.onEnd?.(result);
  return result;
}
