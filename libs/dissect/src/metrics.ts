import type { LayerMetrics, NeuronLabel } from './types';

/**
 * Layer metrics from a layer's labels (pure). Conventions, also in docs/dissect.md:
 * - dead neurons (constant on the probe set) have no meaningful label: they count in
 *   `neurons`, `deadFraction` and (as not interpretable) `interpretableFraction`, and are left out
 *   of every label statistic (mean score, diversity, embedding spread);
 * - diversity is 0 when every live neuron has the same top-1 concept and 1 when all differ:
 *   distinctConceptShare = (distinct - 1) / (min(n, S) - 1), labelEntropy = H / log(min(n, S));
 * - categoryShares are over interpretable neurons;
 * - a switch is a neuron whose top-1 concept differs from `previousTop1` (entries < 0 mean
 *   "no previous label" and never count).
 */
export interface MetricsOptions {
  /** S, the size of the concept set (bounds the number of distinct labels). */
  conceptCount: number;
  threshold: number;
  /** What `threshold` is (LayerMetrics.thresholdKind); default 'score'. */
  thresholdKind?: 'score' | 'likelihood-margin';
  previousTop1?: Int32Array;
}

/** Normalised entropy of a label distribution: 0 for one label, 1 when n labels are all distinct (n <= S). */
export function normalisedEntropy(labels: ArrayLike<number>, conceptCount: number): number {
  const n = labels.length;
  const bound = Math.min(n, conceptCount);
  if (bound <= 1) return 0;
  const counts = new Map<number, number>();
  for (let i = 0; i < n; i++) counts.set(labels[i], (counts.get(labels[i]) ?? 0) + 1);
  let h = 0;
  for (const c of counts.values()) h -= (c / n) * Math.log(c / n);
  return Math.min(1, Math.max(0, h / Math.log(bound)));
}

/** (distinct - 1) / (min(n, S) - 1): 0 when all labels agree, 1 when all differ. */
export function distinctShare(labels: ArrayLike<number>, conceptCount: number): number {
  const bound = Math.min(labels.length, conceptCount);
  if (bound <= 1) return 0;
  const distinct = new Set(Array.from(labels)).size;
  return (distinct - 1) / (bound - 1);
}

/** 1 - |mean of the unit vectors|^2 (vectors are normalised here): 0 when all point one way. O(n d). */
export function embeddingSpread(embeddings: readonly Float32Array[]): number {
  if (embeddings.length === 0) return 0;
  const d = embeddings[0].length;
  const mean = new Float64Array(d);
  let counted = 0;
  for (const e of embeddings) {
    let norm = 0;
    for (let j = 0; j < d; j++) norm += e[j] * e[j];
    norm = Math.sqrt(norm);
    if (!(norm > 0)) continue;
    for (let j = 0; j < d; j++) mean[j] += e[j] / norm;
    counted++;
  }
  if (counted === 0) return 0;
  let sq = 0;
  for (let j = 0; j < d; j++) sq += (mean[j] / counted) ** 2;
  return Math.min(1, Math.max(0, 1 - sq));
}

/** Neurons whose top-1 concept changed: per-neuron flags and their count. */
export function conceptSwitches(
  top1: Int32Array,
  previousTop1: Int32Array | undefined,
): { switched: boolean[]; count: number } {
  const switched = new Array<boolean>(top1.length).fill(false);
  if (!previousTop1) return { switched, count: 0 };
  let count = 0;
  for (let k = 0; k < top1.length; k++) {
    if (previousTop1[k] >= 0 && previousTop1[k] !== top1[k]) {
      switched[k] = true;
      count++;
    }
  }
  return { switched, count };
}

export function layerMetrics(labels: readonly NeuronLabel[], opts: MetricsOptions): LayerMetrics {
  const n = labels.length;
  const live = labels.filter((l) => !l.dead);
  const interpretable = labels.filter((l) => l.interpretable);
  const top1 = Int32Array.from(labels, (l) => l.conceptIndex);
  const liveTop1 = Int32Array.from(live, (l) => l.conceptIndex);
  const { count } = conceptSwitches(top1, opts.previousTop1);
  const categoryShares: Record<string, number> = {};
  for (const l of interpretable)
    categoryShares[l.category] = (categoryShares[l.category] ?? 0) + 1 / interpretable.length;
  return {
    neurons: n,
    interpretableFraction: n ? interpretable.length / n : 0,
    meanTopScore: live.length ? live.reduce((a, l) => a + l.score, 0) / live.length : 0,
    distinctConceptShare: distinctShare(liveTop1, opts.conceptCount),
    labelEntropy: normalisedEntropy(liveTop1, opts.conceptCount),
    embeddingSpread: embeddingSpread(live.map((l) => l.embedding)),
    deadFraction: n ? (n - live.length) / n : 0,
    categoryShares,
    switches: count,
    switchFraction: n ? count / n : 0,
    threshold: opts.threshold,
    thresholdKind: opts.thresholdKind ?? 'score',
  };
}

/** Most common top-1 concepts of live neurons, most frequent first (ties: concept order). */
export function topLayerConcepts(
  labels: readonly NeuronLabel[],
  limit = 10,
): { concept: string; count: number }[] {
  const counts = new Map<number, { concept: string; count: number }>();
  for (const l of labels) {
    if (l.dead) continue;
    const c = counts.get(l.conceptIndex) ?? { concept: l.concept, count: 0 };
    c.count++;
    counts.set(l.conceptIndex, c);
  }
  return [...counts.entries()]
    .sort(([ia, a], [ib, b]) => b.count - a.count || ia - ib)
    .slice(0, limit)
    .map(([, c]) => c);
}
