import * as tf from '@tensorflow/tfjs';
import type { Matrix } from '@cm/dissect';
import { invalidArgument } from '@cm/core';
import { LOGITS } from './models';
import { toInput } from './probing';

/**
 * The concept-diversity regulariser ("a regulariser for concept diversity", the paper's fourth
 * finding: rewarding diverse concepts across a layer's neurons improved accuracy).
 *
 * The paper gives no formula, so this is our definition, chosen to be a differentiable version of
 * the diversity the monitor reports (the normalised entropy of a layer's top-1 concepts,
 * `labelEntropy` in @cm/dissect), computed on a batch of probe images with their fixed concept
 * scores P (D x S, the bundle's `probeScores`):
 *
 *   Z_a = the layer's pooled activations (B x N), each neuron standardised over the batch;
 *   Z_p = the batch's rows of P (B x S), each concept standardised over the batch;
 *   R   = Z_a^T Z_p / B: each neuron's correlation with each concept over the batch (N x S);
 *   a_k = softmax(R_k / temperature): neuron k's soft concept assignment (a soft top-1);
 *   m   = mean over neurons of a_k: the layer's soft distribution of top-1 concepts;
 *   term = 1 - H(m) / ln S, in [0, 1].
 *
 * The term is 0 when the layer's neurons are spread evenly over the concepts and 1 when all of them
 * follow one concept; its gradient pushes neurons that share a concept towards others. Why this and
 * not a penalty on the cosine similarity of the neurons' activation profiles: decorrelating neurons
 * rewards responding to different images, not to different concepts, and two neurons can respond to
 * different images of the same concept; here the concepts come from the same P the dissection
 * labels with. The temperature (0.1: correlations live in [-1, 1]) makes a_k close to the arg max
 * while keeping gradients for the runner-up concepts. Concepts absent from (or constant over) the
 * batch standardise to 0 (eps in the variance) and so correlate 0 with every neuron.
 */
export const DIVERSITY_DEFAULTS = { batch: 32, temperature: 0.1 } as const;

const EPS = 1e-5;

function standardise(x: tf.Tensor2D): tf.Tensor2D {
  const { mean, variance } = tf.moments(x, 0, true);
  return x.sub(mean).div(variance.add(EPS).sqrt()) as tf.Tensor2D;
}

/**
 * The term for one layer: `activations` B x N (pooled), `scores` B x S (the probe batch's rows of P).
 * Differentiable in `activations`.
 */
export function diversityTerm(
  activations: tf.Tensor2D,
  scores: tf.Tensor2D,
  temperature: number = DIVERSITY_DEFAULTS.temperature,
): tf.Scalar {
  const [b, n] = activations.shape;
  const [bp, s] = scores.shape;
  if (b !== bp) throw invalidArgument(`diversity term: ${b} activation rows but ${bp} score rows`);
  if (n < 1 || s < 2)
    throw invalidArgument(`diversity term needs >= 1 neuron and >= 2 concepts, got ${n}, ${s}`);
  if (!(temperature > 0)) throw invalidArgument(`diversity temperature must be > 0, got ${temperature}`);
  return tf.tidy(() => {
    const r = standardise(activations).transpose().matMul(standardise(scores)).div(b);
    const assign = tf.softmax(r.div(temperature)); // N x S
    const m = assign.mean(0); // S
    const entropy = m.mul(m.add(1e-12).log()).sum().neg();
    return tf.scalar(1).sub(entropy.div(Math.log(s))) as tf.Scalar;
  });
}

/** A conv output B x H x W x C is averaged over H and W (the monitor's `avg` pooling); dense stays. */
export function poolForDiversity(t: tf.Tensor): tf.Tensor2D {
  if (t.rank === 4) return t.mean([1, 2]) as tf.Tensor2D;
  if (t.rank === 2) return t as tf.Tensor2D;
  throw invalidArgument(`diversity term: layer output of rank ${t.rank}; expected 2 or 4`);
}

export interface DiversityRegOptions {
  /** Weight of the mean term over the layers, added to the cross-entropy. */
  weight: number;
  /** Probe images (D x H x W x 3, uint8) and their concept scores P (D x S). */
  images: Uint8Array;
  imageShape: readonly [number, number, number, number];
  scores: Matrix;
  /** Layers the term covers (default: every monitored layer but the logits, which are the classes). */
  layers: string[];
  /** Probe images per training step (default 32), drawn at random from the probe set. */
  batch?: number;
  temperature?: number;
  seed?: number;
}

/**
 * The regulariser bound to a model: the probe set as tensors, one functional model sharing the
 * model's layers whose outputs are the covered layers (no copied weights; never dispose it), and a
 * seeded draw of each step's probe batch. `term(training)` is called inside optimizer.minimize.
 */
export class DiversityRegulariser {
  readonly weight: number;
  readonly layers: string[];
  private readonly x: tf.Tensor4D;
  private readonly p: tf.Tensor2D;
  private readonly tap: tf.LayersModel;
  private readonly batch: number;
  private readonly temperature: number;
  private state: number;

  constructor(model: tf.LayersModel, o: DiversityRegOptions) {
    if (!(o.weight >= 0) || !Number.isFinite(o.weight))
      throw invalidArgument(`--diversity-reg must be a number >= 0, got ${o.weight}`);
    const [d] = o.imageShape;
    if (o.scores.rows !== d)
      throw invalidArgument(
        `diversity regulariser: ${d} probe images but ${o.scores.rows} rows of concept scores`,
      );
    const names = model.layers.map((l) => l.name);
    const missing = o.layers.filter((l) => !names.includes(l));
    if (missing.length)
      throw invalidArgument(
        `diversity regulariser: no layer ${missing.join(', ')}`,
        {},
        `layers: ${names.join(', ')}`,
      );
    if (o.layers.length === 0)
      throw invalidArgument(
        'diversity regulariser: no layer to regularise',
        {},
        'monitor at least one hidden layer',
      );
    this.weight = o.weight;
    this.layers = o.layers;
    this.batch = Math.min(o.batch ?? DIVERSITY_DEFAULTS.batch, d);
    if (!Number.isInteger(this.batch) || this.batch < 2)
      throw invalidArgument(`diversity batch must be an integer >= 2, got ${this.batch}`);
    this.temperature = o.temperature ?? DIVERSITY_DEFAULTS.temperature;
    this.state = (o.seed ?? 1) >>> 0 || 1;
    this.x = toInput(o.images, [...o.imageShape]) as tf.Tensor4D;
    this.p = tf.tensor2d(o.scores.data, [o.scores.rows, o.scores.cols]);
    this.tap = tf.model({
      inputs: model.inputs,
      outputs: o.layers.map((l) => model.getLayer(l).output as tf.SymbolicTensor),
    });
  }

  /** xorshift32: the step's probe indices, reproducible from the seed. */
  private nextIndices(): Int32Array {
    const d = this.x.shape[0];
    const out = new Int32Array(this.batch);
    for (let i = 0; i < this.batch; i++) {
      let s = this.state;
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      this.state = s >>> 0;
      out[i] = this.state % d;
    }
    return out;
  }

  /** Mean term over the layers on a fresh probe batch (a scalar inside the caller's tidy). */
  term(training = true): tf.Scalar {
    const idx = tf.tensor1d(this.nextIndices(), 'int32');
    const x = tf.gather(this.x, idx);
    const p = tf.gather(this.p, idx) as tf.Tensor2D;
    const outs = this.tap.apply(x, { training }) as tf.Tensor | tf.Tensor[];
    const list = Array.isArray(outs) ? outs : [outs];
    const terms = list.map((o) => diversityTerm(poolForDiversity(o), p, this.temperature));
    return tf.addN(terms).div(terms.length) as tf.Scalar;
  }

  dispose(): void {
    this.x.dispose();
    this.p.dispose();
  }
}

/** Layers the regulariser covers by default: the monitored ones but the logits. */
export function diversityLayers(monitored: readonly string[]): string[] {
  return monitored.filter((l) => l !== LOGITS);
}

/**
 * The term of a model's layers over the whole probe set (no sampling; for measuring, not training):
 * the mean over layers of diversityTerm on all D probe images.
 */
export function evaluateDiversityTerm(
  model: tf.LayersModel,
  layers: string[],
  images: Uint8Array,
  imageShape: readonly [number, number, number, number],
  scores: Matrix,
  temperature: number = DIVERSITY_DEFAULTS.temperature,
): number {
  const tap = tf.model({
    inputs: model.inputs,
    outputs: layers.map((l) => model.getLayer(l).output as tf.SymbolicTensor),
  });
  const [d, h, w, c] = imageShape;
  const px = h * w * c;
  const chunk = 200;
  // pooled per chunk: a conv layer's full output over the probe set would not need to exist at once
  const pooled: tf.Tensor2D[][] = layers.map(() => []);
  for (let s = 0; s < d; s += chunk) {
    const k = Math.min(chunk, d - s);
    const outs = tf.tidy(() => {
      const o = tap.predict(toInput(images.subarray(s * px, (s + k) * px), [k, h, w, c])) as
        tf.Tensor | tf.Tensor[];
      return (Array.isArray(o) ? o : [o]).map(poolForDiversity);
    });
    outs.forEach((o, i) => pooled[i].push(o));
  }
  return tf.tidy(() => {
    const p = tf.tensor2d(scores.data, [scores.rows, scores.cols]);
    const terms = pooled.map((parts) => diversityTerm(tf.concat(parts, 0), p, temperature).dataSync()[0]);
    pooled.flat().forEach((t) => t.dispose());
    return terms.reduce((a, t) => a + t, 0) / terms.length;
  });
}
