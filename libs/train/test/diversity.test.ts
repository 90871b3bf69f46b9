import * as tf from '@tensorflow/tfjs';
import { Command } from 'commander';
import { makeSyntheticBundle } from '@cm/probe';
import { worldDataset } from '../src/data';
import { diversityLayers, diversityTerm, evaluateDiversityTerm } from '../src/diversity';
import { addTrainOptions, type TrainFlags } from '../src/options';
import { runTrainJob, type TrainJob } from '../src/paradigms';
import { useTrainingBackend } from './setup';

beforeAll(useTrainingBackend);

/** B x S concept scores, 0/1, each concept present in about half the images (seeded). */
function scores(b: number, s: number, seed = 3): Float32Array {
  let x = seed;
  const out = new Float32Array(b * s);
  for (let i = 0; i < out.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = (x >>> 16) & 1;
  }
  return out;
}

/** Neuron k follows concept conceptOf(k) plus a little deterministic noise. */
function activations(p: Float32Array, b: number, s: number, n: number, conceptOf: (k: number) => number) {
  const out = new Float32Array(b * n);
  for (let i = 0; i < b; i++)
    for (let k = 0; k < n; k++) out[i * n + k] = p[i * s + conceptOf(k)] + 0.05 * Math.sin(7 * i + 3 * k);
  return tf.tensor2d(out, [b, n]);
}

describe('diversityTerm', () => {
  const b = 64;
  const s = 6;
  const n = 12;
  const p = scores(b, s);

  it('is lower for neurons that follow different concepts than for duplicated neurons', () => {
    const P = tf.tensor2d(p, [b, s]);
    const diverse = diversityTerm(
      activations(p, b, s, n, (k) => k % s),
      P,
    ).dataSync()[0];
    const duplicated = diversityTerm(
      activations(p, b, s, n, () => 0),
      P,
    ).dataSync()[0];
    const half = diversityTerm(
      activations(p, b, s, n, (k) => k % 2),
      P,
    ).dataSync()[0];
    // even spread over all 6 concepts is close to the minimum 0; one concept for all is close to 1
    expect(diverse).toBeLessThan(0.1);
    expect(duplicated).toBeGreaterThan(0.8);
    expect(half).toBeGreaterThan(diverse);
    expect(half).toBeLessThan(duplicated);
  });

  it('has a finite gradient, also with a dead neuron and a concept constant over the batch', () => {
    const pc = p.slice();
    for (let i = 0; i < b; i++) pc[i * s + 5] = 1; // concept 5 in every image
    const P = tf.tensor2d(pc, [b, s]);
    const a = activations(pc, b, s, n, (k) => k % s).arraySync();
    for (const row of a) row[0] = 0.3; // neuron 0 constant
    const grad = tf.grad((x: tf.Tensor) => diversityTerm(x as tf.Tensor2D, P))(tf.tensor2d(a));
    const g = grad.dataSync();
    expect(g.every((v) => Number.isFinite(v))).toBe(true);
    expect(g.some((v) => v !== 0)).toBe(true);
  });

  it('refuses mismatched batches', () => {
    expect(() => diversityTerm(tf.zeros([4, 2]) as tf.Tensor2D, tf.zeros([5, 3]) as tf.Tensor2D)).toThrow(
      /4 activation rows but 5 score rows/,
    );
  });
});

describe('training with the diversity regulariser', () => {
  const train = worldDataset({ task: 'shape', count: 256, seed: 1 });
  const bundle = makeSyntheticBundle({ images: 200, seed: 2 });
  const probe = {
    bundleId: 'b1',
    images: bundle.images,
    imageShape: bundle.imageShape,
    probeScores: bundle.space.probeScores,
  };
  const job = (diversityReg: number): TrainJob => ({
    paradigm: 'standard',
    runId: `div-${diversityReg}`,
    train,
    model: { arch: 'small-cnn', widths: [8, 8] },
    steps: 40,
    batchSize: 16,
    learningRate: 0.01,
    seed: 1,
    monitorEvery: 10,
    probe,
    diversityReg,
  });

  it('lowers the term (raises concept diversity) relative to the same run without it', async () => {
    const measured: Record<string, number> = {};
    for (const w of [0, 2]) {
      const r = await runTrainJob(job(w));
      measured[w] = evaluateDiversityTerm(
        r.model,
        diversityLayers(['conv1', 'conv2', 'logits']),
        bundle.images,
        bundle.imageShape,
        bundle.space.probeScores,
      );
      if (w > 0) {
        expect(r.runs[0].diversity?.weight).toBe(w);
        expect(Number.isFinite(r.runs[0].diversity?.finalTerm)).toBe(true);
      } else expect(r.runs[0].diversity).toBeUndefined();
      r.model.dispose();
    }
    expect(measured[2]).toBeLessThan(measured[0]);
  }, 120_000);

  it('needs the probe set with its concept scores', async () => {
    await expect(runTrainJob({ ...job(1), probe: { ...probe, probeScores: undefined } })).rejects.toThrow(
      /needs probe images with their concept scores/,
    );
  });

  it('is the --diversity-reg flag (default 0, a number >= 0)', () => {
    const parse = (argv: string[]) => {
      const cmd = addTrainOptions(new Command('t')).exitOverride();
      cmd.parse(argv, { from: 'user' });
      return cmd.opts<TrainFlags>();
    };
    expect(parse([]).diversityReg).toBe(0);
    expect(parse(['--diversity-reg', '0.5']).diversityReg).toBe(0.5);
    expect(() => parse(['--diversity-reg', '-1'])).toThrow(/--diversity-reg must be a number from 0 to 100/);
  });
});
