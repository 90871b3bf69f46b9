import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { CheckpointData, CheckpointResult, Monitor, RunSpec } from '@cm/contracts';
import { freePort } from '@cm/core';
import { createMonitorClient } from '@cm/monitor-client';
import { makeSyntheticBundle } from '@cm/probe';
import { loadCheckpoint } from '../src/checkpoint';
import { worldDataset } from '../src/data';
import { runTrainJob, type TrainJob } from '../src/paradigms';
import { useTrainingBackend } from './setup';

beforeAll(useTrainingBackend);

/** Records what the loop sends (unit tests only; the real monitors are tested end to end in apps/trainer). */
class RecordingMonitor implements Monitor {
  specs: RunSpec[] = [];
  checkpoints: { runId: string; cp: CheckpointData }[] = [];
  ended: string[] = [];
  async startRun(spec: RunSpec): Promise<void> {
    this.specs.push(spec);
  }
  async sendCheckpoint(cp: CheckpointData): Promise<CheckpointResult> {
    const runId = this.specs[this.specs.length - 1].runId;
    this.checkpoints.push({ runId, cp });
    return {
      step: cp.step,
      layers: cp.layers.map((l) => ({
        layer: l.layer,
        interpretableFraction: 0.5,
        distinctConceptShare: 0.5,
        labelEntropy: 1,
        topConcepts: [],
      })),
      alerts: [],
    };
  }
  async endRun(status: 'completed' | 'failed'): Promise<void> {
    this.ended.push(status);
  }
  async close(): Promise<void> {}
}

const train = worldDataset({ task: 'shape', count: 48, seed: 1 });
const probeData = makeSyntheticBundle({ images: 20, seed: 2 });
const probe = { bundleId: 'b1', images: probeData.images, imageShape: probeData.imageShape };

function job(over: Partial<TrainJob>): TrainJob {
  return {
    paradigm: 'standard',
    runId: 'r1',
    train,
    model: { arch: 'small-cnn', widths: [4, 8] },
    steps: 5,
    batchSize: 8,
    learningRate: 0.01,
    seed: 1,
    monitorEvery: 2,
    probe,
    ...over,
  };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cm-train-loop-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('training loop', () => {
  it('monitors step 0, every N steps and the last step, with pooled [D, N] activations and metrics', async () => {
    const monitor = new RecordingMonitor();
    const seen: number[] = [];
    const { runs } = await runTrainJob(job({ monitor, observer: { onCheckpoint: (s) => seen.push(s) } }));
    expect(monitor.specs[0]).toMatchObject({
      runId: 'r1',
      paradigm: 'standard',
      model: 'small-cnn-4-8',
      bundleId: 'b1',
    });
    expect(monitor.specs[0].layers.map((l) => l.name)).toEqual(['conv1', 'conv2', 'logits']);
    expect(monitor.checkpoints.map((c) => c.cp.step)).toEqual([0, 2, 4, 5]);
    const cp = monitor.checkpoints[1].cp;
    expect(cp.layers.map((l) => l.shape)).toEqual([
      [20, 4],
      [20, 8],
      [20, 8],
    ]);
    expect(cp.layers[0].data.every((v) => Number.isFinite(v) && v >= 0)).toBe(true); // post-ReLU means
    expect(Object.keys(cp.metrics)).toEqual(
      expect.arrayContaining(['loss', 'accuracy', 'learningRate', 'imagesPerSecond']),
    );
    expect(monitor.checkpoints[0].cp.metrics.loss).toBeUndefined(); // nothing trained yet at step 0
    expect(monitor.ended).toEqual(['completed']);
    expect(seen).toEqual([0, 2, 4, 5]);
    expect(runs[0].checkpoints.every((c) => c.status === 'ok')).toBe(true);
    // the summary's loss is the one the last checkpoint carries into the store
    const last = monitor.checkpoints[monitor.checkpoints.length - 1].cp.metrics;
    expect(runs[0].finalLoss).toBe(last.loss);
    expect(runs[0].finalAccuracy).toBe(last.accuracy);
    expect(runs[0]).toMatchObject({ bundleId: 'b1', classes: expect.any(Number) });
  });

  it('a monitor that fails never stops training', async () => {
    const broken: Monitor = {
      startRun: async () => undefined,
      sendCheckpoint: async () => {
        throw new Error('service exploded');
      },
      endRun: async () => undefined,
      close: async () => undefined,
    };
    const warnings: string[] = [];
    const { runs } = await runTrainJob(
      job({ monitor: broken, observer: { onWarning: (m) => warnings.push(m) } }),
    );
    expect(runs[0].status).toBe('completed');
    expect(runs[0].steps).toBe(5);
    expect(runs[0].checkpoints.map((c) => c.status)).toEqual(['failed', 'failed', 'failed', 'failed']);
    expect(warnings[0]).toMatch(/service exploded/);
  });

  it('with the concept service down and policy drop, training finishes within the policy bound', async () => {
    const port = await freePort();
    const client = createMonitorClient({
      target: `127.0.0.1:${port}`,
      policy: 'drop',
      maxBlockMs: 300,
      reconnect: { initialDelayMs: 50, maxDelayMs: 100 },
    });
    const t0 = Date.now();
    try {
      const { runs } = await runTrainJob(job({ monitor: client, steps: 4 }));
      expect(runs[0].status).toBe('completed');
      expect(runs[0].checkpoints.every((c) => c.status === 'dropped' || c.status === 'failed')).toBe(true);
    } finally {
      await client.close();
    }
    // startRun (300 ms) + a few bounded waits; never an unbounded stall.
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  it('every paradigm trains; lottery rounds are separate runs with growing sparsity', async () => {
    const monitor = new RecordingMonitor();
    await runTrainJob(
      job({
        monitor,
        paradigm: 'adversarial',
        runId: 'adv',
        steps: 2,
        attack: { method: 'pgd', epsilon: 0.03, steps: 2 },
      }),
    );
    const lottery = await runTrainJob(
      job({
        monitor,
        paradigm: 'lottery',
        runId: 'lt',
        steps: 2,
        lottery: { rounds: 2, rate: 0.5, rewindStep: 0 },
      }),
    );
    expect(monitor.specs.map((s) => [s.runId, s.paradigm])).toEqual([
      ['adv', 'adversarial'],
      ['lt-r0', 'lottery'],
      ['lt-r1', 'lottery'],
      ['lt-r2', 'lottery'],
    ]);
    expect(monitor.specs[0].tags).toMatchObject({ attack: 'pgd', attackSteps: '2' });
    const sparsities = monitor.checkpoints
      .filter((c) => c.runId.startsWith('lt') && c.cp.step === 0)
      .map((c) => c.cp.metrics.sparsity);
    expect(sparsities[0]).toBe(0);
    expect(sparsities[1]).toBeGreaterThan(0.4);
    expect(sparsities[2]).toBeGreaterThan(sparsities[1]);
    expect(lottery.runs.map((r) => r.lottery)).toEqual(
      sparsities.map((sparsity, round) => ({ round, sparsity })),
    );
    // Round 1 starts from the rewound weights under the mask: its step-0 activations differ from round 0's.
    const step0 = monitor.checkpoints
      .filter((c) => c.runId.startsWith('lt') && c.cp.step === 0)
      .map((c) => Array.from(c.cp.layers[0].data));
    expect(step0[1]).not.toEqual(step0[0]);
  });

  it('saves checkpoints; resuming continues exactly where an uninterrupted run would be', async () => {
    const straight = await runTrainJob(job({ runId: 'a', steps: 4, checkpointDir: join(dir, 'a') }));
    const straightWeights = straight.model.getWeights().map((t) => Array.from(t.dataSync()));

    const monitor = new RecordingMonitor();
    await runTrainJob(
      job({
        runId: 'b',
        steps: 4,
        checkpointDir: join(dir, 'b'),
        checkpointEvery: 2,
        signal: AbortSignal.abort(),
      }),
    );
    // An aborted run stops before its first step and still leaves a checkpoint.
    const half = await runTrainJob(job({ runId: 'b', steps: 2, checkpointDir: join(dir, 'b') }));
    expect(half.runs[0].savedTo).toBe(join(dir, 'b', 'b'));
    const saved = await loadCheckpoint(join(dir, 'b', 'b'));
    expect(saved.state).toMatchObject({ step: 2, paradigm: 'standard', modelName: 'small-cnn-4-8' });
    expect(saved.optimizerWeights?.length).toBeGreaterThan(0);
    const resumed = await runTrainJob(
      job({ runId: 'b', steps: 4, checkpointDir: join(dir, 'b'), resumeFrom: join(dir, 'b', 'b'), monitor }),
    );
    expect(monitor.checkpoints.map((c) => c.cp.step)).toEqual([4]); // no second step 0
    const resumedWeights = resumed.model.getWeights().map((t) => Array.from(t.dataSync()));
    resumedWeights.forEach((w, i) => w.forEach((v, j) => expect(v).toBeCloseTo(straightWeights[i][j], 4)));
    expect(tf.memory().numTensors).toBeLessThan(10_000);
  });
});
