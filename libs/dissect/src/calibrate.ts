import { CmError } from '@cm/core';
import type { ConceptSpace, Matrix, SimilarityMethod, SimilarityParams } from './types';
import type { Executor } from './executor';
import { inlineExecutor } from './executor';
import { paramsKey, resolveParams, validateInputs } from './params';
import { defaultExecutor, ownLikelihood, similarityDetailedOn, similarityOn } from './similarity';
import { mulberry32 } from './random';

export interface CalibrationOptions {
  /** Seed of the null activations (default 0x5eed). */
  seed?: number;
  /** Quantile of the null top-1 scores taken as threshold (default 0.99: 1% of unrelated neurons pass). */
  quantile?: number;
  /** Null top-1 scores to collect at least (default 1000): ceil(samples / width) null layers, at most 20 (cos, cos_cubed, rank_reorder). */
  samples?: number;
  /** Null neurons M of the likelihood null of wpmi / soft_wpmi (default 1024). */
  nullNeurons?: number;
  /**
   * The null neurons themselves (D x M), instead of i.i.d. normal activations: for example the same
   * layer of freshly initialised copies of the model on the probe images (the "untrained-network
   * null", docs/dissect.md). The i.i.d. null asks whether a neuron's top images are related to a
   * concept at all; this one asks whether they are more related than an untrained neuron's are.
   * In a world where image statistics alone sort images by concept (flat-coloured backgrounds, say),
   * untrained convolutions already pass the first test and only the second says what training added.
   * `seed`, `samples` and `nullNeurons` are ignored when it is given.
   */
  nullActivations?: Matrix;
}

const givenNullIds = new WeakMap<Float32Array, number>();
let nextGivenNullId = 1;
/** Cache key part of a calibration's null: the seed and size drawn, or the identity of a given matrix. */
function nullKey(opts: CalibrationOptions, seed: number, size: number): string {
  const given = opts.nullActivations;
  if (!given) return `${seed}|${size}`;
  let id = givenNullIds.get(given.data);
  if (id === undefined) {
    id = nextGivenNullId++;
    givenNullIds.set(given.data, id);
  }
  return `given#${id}`;
}

function checkGivenNull(P: Matrix, given: Matrix | undefined): void {
  if (!given) return;
  if (given.rows !== P.rows || given.cols < 2 || given.data.length !== given.rows * given.cols)
    throw new CmError(
      'INVALID_ARGUMENT',
      `null activations must be ${P.rows} probe images x at least 2 neurons, got ${given.rows} x ${given.cols} (${given.data.length} values)`,
      { context: { probeImages: P.rows, rows: given.rows, cols: given.cols } },
    );
}

/** As many null neurons as the top-score calibration of the other methods draws (~1000), so it costs the same. */
export const DEFAULT_NULL_NEURONS = 1024;

export const DEFAULT_CALIBRATION_SEED = 0x5eed;

/** Null activations: D x width independent standard normal values (seeded Box-Muller). */
export function nullActivations(D: number, width: number, seed: number): Matrix {
  const random = mulberry32(seed);
  const data = new Float32Array(D * width);
  for (let i = 0; i < data.length; i += 2) {
    const u = 1 - random();
    const v = random();
    const r = Math.sqrt(-2 * Math.log(u));
    data[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < data.length) data[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return { rows: D, cols: width, data };
}

/** Linear-interpolation quantile (numpy's default) of the values. */
export function quantile(values: ArrayLike<number>, q: number): number {
  const sorted = Float64Array.from(values).sort();
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * Phi^-1(p), the standard normal quantile, by Acklam's rational approximation (relative error
 * < 1.2e-9 over (0, 1)). Hand-written because it is the only statistical function needed here and
 * no statistics library is a dependency; 1e-9 is far below the noise of the null's estimated sd.
 */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) {
    if (p === 0) return -Infinity;
    if (p === 1) return Infinity;
    return NaN;
  }
  const a = [
    -3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1,
    2.506628277459239,
  ];
  const b = [
    -5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1,
    -1.328068155288572e1,
  ];
  const c = [
    -7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (
      (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    );
  }
  if (p > 1 - low) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) /
    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
  );
}

/**
 * The null of a (soft_)wpmi neuron's own log-likelihood L[k, j] (see docs/dissect.md, Calibration):
 * L of M null neurons (random top-k image sets, in random rank order), per concept j.
 */
export interface LikelihoodNull {
  /** Per concept, mean and standard deviation of L[., j] over the null neurons. */
  mean: Float64Array;
  sd: Float64Array;
  /** Per concept, sample skewness of L[., j] over the null neurons. */
  skew: Float64Array;
  /** Per concept: a neuron whose top-1 concept is j is interpretable iff L[k, j] > thresholds[j]. */
  thresholds: Float64Array;
  /**
   * thresholds[j] = mean[j] + max(z_j sd[j], floor), z = Phi^-1(1 - alpha / S) and
   * z_j = z + max(0, skew[j]) (z^2 - 1) / 6 (Cornish-Fisher, first order: the null is right-skewed).
   */
  z: number;
  /** One-sided level per neuron (1 - quantile, default 0.01). */
  alpha: number;
  /** Null neurons drawn (M). */
  samples: number;
  /** Median over concepts of thresholds[j] - mean[j], in nats: reported as LayerMetrics.threshold. */
  margin: number;
}

/** True for the methods whose interpretability is tested on the neuron's own likelihood. */
export function usesLikelihoodNull(method: SimilarityMethod): method is 'soft_wpmi' | 'wpmi' {
  return method === 'soft_wpmi' || method === 'wpmi';
}

/**
 * Below this margin (relative to |mean|) two likelihoods are within the kernel's own float32 rounding
 * (chunk products of 13 float32 factors, ~1e-6 per chunk): a concept with (almost) no null spread
 * (Sm the same on every image) must not make every neuron "interpretable" by rounding noise.
 */
const MARGIN_FLOOR = 1e-5;

const thresholdCache = new WeakMap<Float32Array, Map<string, Promise<number>>>();
const likelihoodCache = new WeakMap<Float32Array, Map<string, Promise<LikelihoodNull>>>();

function cached<T>(
  caches: WeakMap<Float32Array, Map<string, Promise<T>>>,
  P: Matrix,
  key: string,
  compute: () => Promise<T>,
): Promise<T> {
  let perP = caches.get(P.data);
  if (!perP) {
    perP = new Map();
    caches.set(P.data, perP);
  }
  const hit = perP.get(key);
  if (hit) return hit;
  const computed = compute();
  const map = perP;
  map.set(key, computed);
  computed.catch(() => map.delete(key));
  return computed;
}

function checkQuantile(q: number): void {
  if (!(q > 0 && q < 1))
    throw new CmError('INVALID_ARGUMENT', `calibration quantile must lie in (0, 1), got ${q}`, {
      context: { quantile: q },
    });
}

/**
 * The likelihood null of wpmi / soft_wpmi for this probe bundle and parameters, on a given executor.
 * Independent of the layer (the test is on the neuron's own L, not on the layer-normalised score),
 * so one calibration serves every layer width. Cached per (P array, method + params, seed, quantile, M).
 */
export function likelihoodNullOn(
  exec: Executor,
  space: ConceptSpace,
  method: 'soft_wpmi' | 'wpmi' = 'soft_wpmi',
  params?: SimilarityParams,
  opts: CalibrationOptions = {},
): Promise<LikelihoodNull> {
  const r = resolveParams(method, params);
  const seed = opts.seed ?? DEFAULT_CALIBRATION_SEED;
  const q = opts.quantile ?? 0.99;
  checkQuantile(q);
  const drawn = opts.nullNeurons ?? DEFAULT_NULL_NEURONS;
  if (!Number.isInteger(drawn) || drawn < 2)
    throw new CmError('INVALID_ARGUMENT', `nullNeurons must be an integer >= 2, got ${drawn}`, {
      context: { nullNeurons: drawn },
    });
  const P = space.probeScores;
  checkGivenNull(P, opts.nullActivations);
  return cached(likelihoodCache, P, `${paramsKey(r)}|${q}|${nullKey(opts, seed, drawn)}`, async () => {
    const Qnull = opts.nullActivations ?? nullActivations(P.rows, drawn, seed);
    const M = Qnull.cols;
    validateInputs(r, P, Qnull);
    const result = await similarityDetailedOn(exec, r, P, Qnull);
    const S = P.cols;
    const mean = new Float64Array(S);
    const sd = new Float64Array(S);
    const skew = new Float64Array(S);
    for (let k = 0; k < M; k++) for (let j = 0; j < S; j++) mean[j] += ownLikelihood(result, k, j);
    for (let j = 0; j < S; j++) mean[j] /= M;
    for (let k = 0; k < M; k++) {
      for (let j = 0; j < S; j++) {
        const dev = ownLikelihood(result, k, j) - mean[j];
        sd[j] += dev * dev;
        skew[j] += dev * dev * dev;
      }
    }
    for (let j = 0; j < S; j++) {
      const m2 = sd[j] / M;
      skew[j] = m2 > 0 ? skew[j] / M / m2 ** 1.5 : 0;
      sd[j] = Math.sqrt(sd[j] / (M - 1));
    }
    const alpha = 1 - q;
    // Bonferroni over the S concepts: the tested concept is the neuron's best of S, so each concept's
    // one-sided test runs at alpha / S and a null neuron passes with probability <= alpha.
    const z = normalQuantile(1 - alpha / S);
    const thresholds = new Float64Array(S);
    const margins = new Float64Array(S);
    for (let j = 0; j < S; j++) {
      // L is a sum of top_k terms, but a term is only large on the few images that show concept j, so
      // the null is right-skewed (measured 0.1 - 0.5): the first Cornish-Fisher term moves the normal
      // quantile out by skew (z^2 - 1) / 6. A negative sample skew (noise, or a left tail) is not used
      // to make the test more liberal than the normal one.
      const zj = z + (Math.max(0, skew[j]) * (z * z - 1)) / 6;
      margins[j] = Math.max(zj * sd[j], MARGIN_FLOOR * Math.max(1, Math.abs(mean[j])));
      thresholds[j] = mean[j] + margins[j];
    }
    return { mean, sd, skew, thresholds, z, alpha, samples: M, margin: quantile(margins, 0.5) };
  });
}

/** calibrateThreshold on a given executor. */
export async function calibrateOn(
  exec: Executor,
  space: ConceptSpace,
  width: number,
  method: SimilarityMethod = 'soft_wpmi',
  params?: SimilarityParams,
  opts: CalibrationOptions = {},
): Promise<number> {
  const r = resolveParams(method, params);
  if (!Number.isInteger(width) || width < 1)
    throw new CmError('INVALID_ARGUMENT', `calibration width must be a positive integer, got ${width}`, {
      context: { width },
    });
  if (usesLikelihoodNull(r.method))
    return (await likelihoodNullOn(exec, space, r.method, params, opts)).margin;
  const seed = opts.seed ?? DEFAULT_CALIBRATION_SEED;
  const q = opts.quantile ?? 0.99;
  const samples = opts.samples ?? 1000;
  checkQuantile(q);
  const P = space.probeScores;
  checkGivenNull(P, opts.nullActivations);
  const key = `${width}|${paramsKey(r)}|${q}|${nullKey(opts, seed, samples)}`;
  return cached(thresholdCache, P, key, async () => {
    const rounds = opts.nullActivations ? 1 : Math.min(20, Math.max(1, Math.ceil(samples / width)));
    const tops: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const Qnull = opts.nullActivations ?? nullActivations(P.rows, width, (seed + round * 0x9e3779b9) >>> 0);
      validateInputs(r, P, Qnull);
      const sim = await similarityOn(exec, r, P, Qnull);
      for (let n = 0; n < Qnull.cols; n++) {
        let best = -Infinity;
        for (let j = 0; j < sim.cols; j++) {
          const v = sim.data[n * sim.cols + j];
          if (v > best) best = v;
        }
        tops.push(best);
      }
    }
    return quantile(tops, q);
  });
}

function calibrationExecutor(space: ConceptSpace, neurons: number): Executor {
  const big =
    space.probeScores.rows * space.probeScores.cols > 2e7 || neurons * space.probeScores.cols * 100 > 2e7;
  return big ? defaultExecutor() : inlineExecutor;
}

/**
 * Interpretability threshold for a layer of `width` neurons on this probe bundle and method.
 * - cos, cos_cubed, rank_reorder: the `quantile` (0.99) of the top-1 scores that neurons unrelated
 *   to the images get (null activations: i.i.d. standard normal). Cached per (P, width, method,
 *   params, seed); `interpretable = score > threshold`.
 * - wpmi, soft_wpmi: interpretability is a per-concept test on the neuron's own likelihood
 *   (calibrateLikelihoodNull); the number returned is that test's median margin over the null mean
 *   (nats), the value reported as LayerMetrics.threshold. It does not depend on `width`.
 */
export function calibrateThreshold(
  space: ConceptSpace,
  width: number,
  method: SimilarityMethod = 'soft_wpmi',
  params?: SimilarityParams,
  opts?: CalibrationOptions,
): Promise<number> {
  const neurons = usesLikelihoodNull(method) ? (opts?.nullNeurons ?? DEFAULT_NULL_NEURONS) : width;
  return calibrateOn(calibrationExecutor(space, neurons), space, width, method, params, opts);
}

/** The per-concept likelihood null of wpmi / soft_wpmi (see LikelihoodNull), on the default executor. */
export function calibrateLikelihoodNull(
  space: ConceptSpace,
  method: 'soft_wpmi' | 'wpmi' = 'soft_wpmi',
  params?: SimilarityParams,
  opts?: CalibrationOptions,
): Promise<LikelihoodNull> {
  return likelihoodNullOn(
    calibrationExecutor(space, opts?.nullNeurons ?? DEFAULT_NULL_NEURONS),
    space,
    method,
    params,
    opts,
  );
}
