import { CmError } from '@cm/core';
import type { ConceptSpace, Matrix, SimilarityMethod, SimilarityParams } from './types';
import type { Executor } from './executor';
import { inlineExecutor } from './executor';
import { paramsKey, resolveParams, validateInputs } from './params';
import { defaultExecutor, similarityOn } from './similarity';
import { mulberry32 } from './random';

export interface CalibrationOptions {
  /** Seed of the null activations (default 0x5eed). */
  seed?: number;
  /** Quantile of the null top-1 scores taken as threshold (default 0.99: 1% of unrelated neurons pass). */
  quantile?: number;
  /** Null top-1 scores to collect at least (default 1000): ceil(samples / width) null layers, at most 20. */
  samples?: number;
}

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

const cache = new WeakMap<Float32Array, Map<string, Promise<number>>>();

/** calibrateThreshold on a given executor. */
export function calibrateOn(
  exec: Executor,
  space: ConceptSpace,
  width: number,
  method: SimilarityMethod = 'soft_wpmi',
  params?: SimilarityParams,
  opts: CalibrationOptions = {},
): Promise<number> {
  const r = resolveParams(method, params);
  if (!Number.isInteger(width) || width < 1) throw new CmError('INVALID_ARGUMENT', `calibration width must be a positive integer, got ${width}`, { context: { width } });
  const seed = opts.seed ?? DEFAULT_CALIBRATION_SEED;
  const q = opts.quantile ?? 0.99;
  const samples = opts.samples ?? 1000;
  if (!(q > 0 && q < 1)) throw new CmError('INVALID_ARGUMENT', `calibration quantile must lie in (0, 1), got ${q}`, { context: { quantile: q } });
  const P = space.probeScores;
  const key = `${width}|${paramsKey(r)}|${seed}|${q}|${samples}`;
  let perP = cache.get(P.data);
  if (!perP) {
    perP = new Map();
    cache.set(P.data, perP);
  }
  const hit = perP.get(key);
  if (hit) return hit;
  const computed = (async () => {
    const rounds = Math.min(20, Math.max(1, Math.ceil(samples / width)));
    const tops: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const Qnull = nullActivations(P.rows, width, (seed + round * 0x9e3779b9) >>> 0);
      validateInputs(r, P, Qnull);
      const sim = await similarityOn(exec, r, P, Qnull);
      for (let n = 0; n < width; n++) {
        let best = -Infinity;
        for (let j = 0; j < sim.cols; j++) {
          const v = sim.data[n * sim.cols + j];
          if (v > best) best = v;
        }
        tops.push(best);
      }
    }
    return quantile(tops, q);
  })();
  perP.set(key, computed);
  computed.catch(() => perP.delete(key));
  return computed;
}

/**
 * Interpretability threshold for a layer of `width` neurons on this probe bundle and method:
 * the `quantile` (0.99) of the top-1 scores that neurons unrelated to the images get (null
 * activations: i.i.d. standard normal, which for the rank-based (soft_)wpmi is the same as
 * shuffling real activations across images). Width matters because (soft_)wpmi normalise over the
 * layer's neurons. Cached per (P, width, method, params, seed).
 */
export function calibrateThreshold(
  space: ConceptSpace,
  width: number,
  method: SimilarityMethod = 'soft_wpmi',
  params?: SimilarityParams,
  opts?: CalibrationOptions,
): Promise<number> {
  const big = space.probeScores.rows * space.probeScores.cols > 2e7 || width * space.probeScores.cols * 100 > 2e7;
  return calibrateOn(big ? defaultExecutor() : inlineExecutor, space, width, method, params, opts);
}
