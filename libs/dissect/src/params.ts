import { CmError } from '@cm/core';
import type {
  Matrix,
  SimilarityMethod,
  SimilarityParams,
  SoftWpmiParams,
  WpmiParams,
  CosCubedParams,
  RankReorderParams,
} from './types';

/** Reference defaults of CLIP-Dissect's similarity.py (method.md). */
export const SOFT_WPMI_DEFAULTS: SoftWpmiParams = {
  topK: 100,
  a: 10,
  lambda: 1,
  minProb: 1e-7,
  pStart: 0.998,
  pEnd: 0.97,
};
export const WPMI_DEFAULTS: WpmiParams = { topK: 28, a: 2, lambda: 0.6, minProb: 1e-7 };
export const COS_CUBED_DEFAULTS: CosCubedParams = { minNorm: 1e-3 };
/** seed is this port's addition: the reference draws its baseline permutations from torch's global RNG. */
export const RANK_REORDER_DEFAULTS: RankReorderParams = { p: 3, topFraction: 0.05, scaleP: 0.5, seed: 0 };

export const SIMILARITY_METHODS: readonly SimilarityMethod[] = [
  'soft_wpmi',
  'wpmi',
  'cos',
  'cos_cubed',
  'rank_reorder',
];

export type ResolvedParams =
  | { method: 'soft_wpmi'; params: SoftWpmiParams }
  | { method: 'wpmi'; params: WpmiParams }
  | { method: 'cos'; params: Record<string, never> }
  | { method: 'cos_cubed'; params: CosCubedParams }
  | { method: 'rank_reorder'; params: RankReorderParams };

function pick<T extends object>(defaults: T, given: SimilarityParams): T {
  const out = { ...defaults } as Record<string, number>;
  for (const key of Object.keys(defaults)) {
    const v = (given as Record<string, number | undefined>)[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new CmError(
        'INVALID_ARGUMENT',
        `similarity parameter ${key} must be a finite number, got ${String(v)}`,
        { context: { key, value: v } },
      );
    }
    out[key] = v;
  }
  return out as T;
}

/** Fill in the reference defaults and check the values that would make the method meaningless. */
export function resolveParams(method: SimilarityMethod, given: SimilarityParams = {}): ResolvedParams {
  const bad = (msg: string, context: Record<string, unknown>): CmError =>
    new CmError('INVALID_ARGUMENT', `${method}: ${msg}`, { context: { method, ...context } });
  switch (method) {
    case 'soft_wpmi': {
      const p = pick(SOFT_WPMI_DEFAULTS, given);
      if (!Number.isInteger(p.topK) || p.topK < 1)
        throw bad(`top_k must be a positive integer, got ${p.topK}`, { topK: p.topK });
      if (p.minProb < 0) throw bad(`min_prob must be >= 0, got ${p.minProb}`, { minProb: p.minProb });
      if (!(p.pStart > 0 && p.pStart <= 1 && p.pEnd > 0 && p.pEnd <= 1))
        throw bad('p_start and p_end must lie in (0, 1]', { pStart: p.pStart, pEnd: p.pEnd });
      return { method, params: p };
    }
    case 'wpmi': {
      const p = pick(WPMI_DEFAULTS, given);
      if (!Number.isInteger(p.topK) || p.topK < 1)
        throw bad(`top_k must be a positive integer, got ${p.topK}`, { topK: p.topK });
      if (p.minProb < 0) throw bad(`min_prob must be >= 0, got ${p.minProb}`, { minProb: p.minProb });
      return { method, params: p };
    }
    case 'cos':
      return { method, params: {} };
    case 'cos_cubed': {
      const p = pick(COS_CUBED_DEFAULTS, given);
      if (!(p.minNorm > 0)) throw bad(`min_norm must be > 0, got ${p.minNorm}`, { minNorm: p.minNorm });
      return { method, params: p };
    }
    case 'rank_reorder': {
      const p = pick(RANK_REORDER_DEFAULTS, given);
      if (!(p.topFraction > 0 && p.topFraction <= 1))
        throw bad(`top_fraction must lie in (0, 1], got ${p.topFraction}`, { topFraction: p.topFraction });
      if (!Number.isInteger(p.seed)) throw bad(`seed must be an integer, got ${p.seed}`, { seed: p.seed });
      return { method, params: p };
    }
    default:
      throw new CmError('INVALID_ARGUMENT', `unknown similarity method ${String(method)}`, {
        context: { method },
        hint: `use one of ${SIMILARITY_METHODS.join(', ')}`,
      });
  }
}

/** A stable text key of a method and its resolved parameters (cache keys). */
export function paramsKey(r: ResolvedParams): string {
  const entries = Object.entries(r.params).sort(([a], [b]) => a.localeCompare(b));
  return `${r.method}(${entries.map(([k, v]) => `${k}=${v}`).join(',')})`;
}

function checkMatrix(m: Matrix, role: string): void {
  if (!Number.isInteger(m.rows) || !Number.isInteger(m.cols) || m.rows < 1 || m.cols < 1) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `${role} must have at least one row and one column, got ${m.rows} x ${m.cols}`,
      { context: { role, rows: m.rows, cols: m.cols } },
    );
  }
  if (!(m.data instanceof Float32Array))
    throw new CmError('INVALID_ARGUMENT', `${role} must be float32 (Float32Array)`, { context: { role } });
  if (m.data.length !== m.rows * m.cols) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `${role} is declared ${m.rows} x ${m.cols} but holds ${m.data.length} values`,
      { context: { role, rows: m.rows, cols: m.cols, length: m.data.length } },
    );
  }
}

/** Index of the first NaN or infinite value, or -1. */
export function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    // v - v is NaN exactly when v is NaN or +-Infinity; cheaper than Number.isFinite in a hot loop
    if (v - v !== 0) return i;
  }
  return -1;
}

const finiteChecked = new WeakSet<Float32Array>();

/**
 * Check P (D x S) and Q (D x N) for one dissection: shapes, finiteness, enough images for the
 * method. P's finiteness is checked once per P array (P is fixed per probe bundle; 10^8 values).
 */
export function validateInputs(
  r: ResolvedParams,
  P: Matrix | { rows: number; cols: number; data?: undefined },
  Q: Matrix,
): void {
  if (P.data) checkMatrix(P, 'probe scores P (images x concepts)');
  checkMatrix(Q, 'activations Q (images x neurons)');
  if (P.rows !== Q.rows) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `probe scores have ${P.rows} images (rows) but activations have ${Q.rows}: P must be D x S and Q D x N over the same D probe images`,
      {
        context: { pRows: P.rows, qRows: Q.rows },
      },
    );
  }
  const checked: Array<readonly [Matrix, string, boolean]> = [[Q, 'activations Q', false]];
  // P without data: a caller that checks P's values as it reads them (softmax in place)
  if (P.data) checked.unshift([P, 'probe scores P', true]);
  for (const [m, role, cache] of checked) {
    if (cache && finiteChecked.has(m.data)) continue;
    const bad = firstNonFinite(m.data);
    if (bad >= 0) {
      const row = Math.floor(bad / m.cols);
      throw new CmError(
        'INVALID_ARGUMENT',
        `${role} has a non-finite value (${m.data[bad]}) at row ${row}, column ${bad % m.cols}`,
        { context: { role, row, col: bad % m.cols } },
      );
    }
    if (cache) finiteChecked.add(m.data);
  }
  const D = P.rows;
  if ((r.method === 'soft_wpmi' || r.method === 'wpmi') && r.params.topK > D) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `${r.method}: top_k (${r.params.topK}) exceeds the number of probe images D (${D})`,
      {
        context: { topK: r.params.topK, D },
        hint: 'use a larger probe set or a smaller --top-k',
      },
    );
  }
  if (r.method === 'rank_reorder' && Math.floor(D * r.params.topFraction) < 1) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `rank_reorder: top_fraction ${r.params.topFraction} of ${D} images selects no image`,
      { context: { D, topFraction: r.params.topFraction } },
    );
  }
}

/**
 * p_r and c_r of the likelihood factor c_r + p_r * Sm (soft_wpmi: 1 + p_r (Sm - 1) + min_prob;
 * wpmi: Sm + min_prob). p_r is rounded as the reference computes it (float32 tensor arithmetic).
 */
export function likelihoodFactors(r: ResolvedParams): {
  topK: number;
  a: number;
  lambda: number;
  c: Float64Array;
  p: Float64Array;
} {
  if (r.method === 'soft_wpmi') {
    const { topK, a, lambda, minProb, pStart, pEnd } = r.params;
    const f = Math.fround;
    const c = new Float64Array(topK);
    const p = new Float64Array(topK);
    const span = f(pStart - pEnd);
    for (let k = 0; k < topK; k++) {
      p[k] = f(f(pStart) - f(f(k / topK) * span));
      c[k] = 1 - p[k] + minProb;
    }
    return { topK, a, lambda, c, p };
  }
  if (r.method === 'wpmi') {
    const { topK, a, lambda, minProb } = r.params;
    return { topK, a, lambda, c: new Float64Array(topK).fill(minProb), p: new Float64Array(topK).fill(1) };
  }
  throw new CmError('INTERNAL', `likelihoodFactors: ${r.method} is not a likelihood method`);
}
