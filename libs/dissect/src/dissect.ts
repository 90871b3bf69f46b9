import { CmError } from '@cm/core';
import type {
  ConceptSpace,
  LayerDissection,
  Matrix,
  NeuronLabel,
  SimilarityMethod,
  SimilarityParams,
} from './types';
import type { Executor } from './executor';
import { inlineExecutor } from './executor';
import { resolveParams, validateInputs } from './params';
import {
  defaultExecutor,
  similarityDetailedOn,
  toShared,
  topImages,
  type SimilarityResult,
} from './similarity';
import { calibrateOn, likelihoodNullOn, usesLikelihoodNull } from './calibrate';
import { conceptSwitches, layerMetrics, topLayerConcepts } from './metrics';
import { projectTo2d } from './projection';
import { layerEvidence } from './learned';
import { SharedBufferPool } from './buffer-pool';

/**
 * The N x S similarity matrices of dissectOn, reused across calls (buffer-pool.ts says why: a
 * matrix the workers wrote stays resident until they garbage-collect, so a new one per layer and
 * checkpoint piled up ~300 MiB per reference-scale checkpoint). A matrix goes back once its
 * labels and evidence are read; at most LAYERS_IN_FLIGHT (engine) are out at once per checkpoint.
 */
export const similarityBuffers = new SharedBufferPool();

export interface DissectOptions {
  method?: SimilarityMethod;
  params?: SimilarityParams;
  /** Concepts kept per neuron (labels and unified embedding); default 5. */
  topK?: number;
  /**
   * Interpretability threshold on the top score (`interpretable = score > threshold`, any method).
   * Default: calibrated (docs/dissect.md): for wpmi / soft_wpmi a per-concept test on the neuron's
   * own likelihood, for the other methods the 99% null quantile of top scores.
   */
  threshold?: number;
  /** Top-1 concept indices of the same layer at the previous checkpoint, for switches. */
  previousTop1?: Int32Array;
  /** Seed of the calibration's null activations (default as calibrateThreshold). */
  calibrationSeed?: number;
  /** Calibrate against these null neurons (D x M) instead of i.i.d. ones: CalibrationOptions.nullActivations. */
  nullActivations?: Matrix;
  /** Temperature of the softmax over top-k scores that weights the unified embedding (default 1). */
  embeddingTemperature?: number;
  /**
   * Evidence kept per neuron: the indices of its top activating probe images, best first (default
   * DEFAULT_TOP_IMAGES; at most D). For wpmi / soft_wpmi they are the head of the method's own top-k
   * ranking; for the other methods the same definition (highest activations) by a partial selection.
   */
  topImages?: number;
  /**
   * Also return each concept's max evidence over the layer's live neurons (evidence.conceptCeiling,
   * S values; one more pass over the N x S similarity): what a random-initialisation baseline of the
   * learned-concept figure keeps (learned.ts).
   */
  conceptCeiling?: boolean;
}

/** Top activating probe images kept per neuron and checkpoint unless DissectOptions.topImages says otherwise. */
export const DEFAULT_TOP_IMAGES = 8;

/**
 * Relative tolerance within which two top scores count as tied: |s - max| <= TIE_TOLERANCE * max(1, |max|).
 * Why 1e-5: (soft_)wpmi saturates at ln N when one neuron's likelihood exceeds the rest of its layer
 * by many nats (score = ln N - sum_k' exp(L_k' - L_k), so a lead of >= ~12 nats is within 1e-5 of
 * ln N), and then the score no longer says which concept fits the neuron better; float32 rounding of
 * ln N would pick one. 1e-5 is ~100 float32 ulps of scores of order 1, and below the precision to
 * which the reference itself knows soft_wpmi scores (1 ulp of L ~ 6e-5, docs/dissect.md).
 */
export const TIE_TOLERANCE = 1e-5;

/** The absolute tie tolerance around a top score `max`. */
export function tieTolerance(max: number): number {
  return TIE_TOLERANCE * Math.max(1, Math.abs(max));
}

/**
 * Top-k columns per row of sim (N x S), best first; NaN counts as -Infinity; ties keep lower index.
 * With `likelihoodOffset` (wpmi / soft_wpmi: lambda * logp[j], so that the neuron's own likelihood is
 * L[k, j] = sim[k, j] + offset[j]), the concepts whose score is within tieTolerance of the row's
 * maximum are ordered by L instead (higher first, then lower index): the reference label
 * argmax_j sim[k, j] except where the top scores tie (saturation).
 */
export function topConceptsPerNeuron(
  sim: Matrix,
  k: number,
  likelihoodOffset?: ArrayLike<number>,
): { indices: Int32Array; scores: Float32Array } {
  const N = sim.rows;
  const S = sim.cols;
  const kk = Math.min(k, S);
  const indices = new Int32Array(N * kk);
  const scores = new Float32Array(N * kk);
  const tied: number[] = [];
  for (let n = 0; n < N; n++) {
    const row = n * S;
    let filled = 0;
    const base = n * kk;
    for (let j = 0; j < S; j++) {
      const raw = sim.data[row + j];
      const v = Number.isNaN(raw) ? -Infinity : raw;
      if (filled === kk && !(v > scores[base + kk - 1])) continue;
      let pos = filled < kk ? filled++ : kk - 1;
      while (pos > 0 && scores[base + pos - 1] < v) {
        scores[base + pos] = scores[base + pos - 1];
        indices[base + pos] = indices[base + pos - 1];
        pos--;
      }
      scores[base + pos] = v;
      indices[base + pos] = j;
    }
    const max = scores[base];
    if (!likelihoodOffset || !Number.isFinite(max)) continue;
    const floor = max - tieTolerance(max);
    if (kk >= 2 && !(scores[base + 1] >= floor)) continue; // the usual case: a clear winner
    tied.length = 0;
    for (let j = 0; j < S; j++) if (sim.data[row + j] >= floor) tied.push(j);
    if (tied.length < 2) continue;
    const L = (j: number): number => sim.data[row + j] + likelihoodOffset[j];
    tied.sort((x, y) => L(y) - L(x) || x - y);
    // The top-k list is sorted by score, so its first min(|tied|, kk) entries are exactly tied ones.
    for (let r = 0; r < Math.min(kk, tied.length); r++) {
      indices[base + r] = tied[r];
      scores[base + r] = sim.data[row + tied[r]];
    }
  }
  return { indices, scores };
}

/** Neurons whose activation is the same on every probe image (max == min). */
export function deadNeurons(Q: Matrix): boolean[] {
  const N = Q.cols;
  const min = new Float32Array(N).fill(Infinity);
  const max = new Float32Array(N).fill(-Infinity);
  for (let i = 0; i < Q.rows; i++) {
    for (let n = 0; n < N; n++) {
      const v = Q.data[i * N + n];
      if (v < min[n]) min[n] = v;
      if (v > max[n]) max[n] = v;
    }
  }
  return Array.from({ length: N }, (_, n) => !(max[n] > min[n]));
}

/**
 * Unified embedding: softmax(scores / temperature) over the neuron's top-k concepts weights their
 * unit concept embeddings; the sum is normalised to unit length so neurons of every layer,
 * checkpoint and run are comparable in one space.
 */
export function unifiedEmbedding(
  conceptEmbeddings: Matrix,
  conceptIndices: ArrayLike<number>,
  scores: ArrayLike<number>,
  temperature = 1,
): Float32Array {
  const d = conceptEmbeddings.cols;
  const k = conceptIndices.length;
  const out = new Float64Array(d);
  let max = -Infinity;
  for (let i = 0; i < k; i++) if (scores[i] > max) max = scores[i];
  const weights = new Float64Array(k);
  let total = 0;
  for (let i = 0; i < k; i++) {
    weights[i] = Number.isFinite(max) ? Math.exp((scores[i] - max) / temperature) : 1;
    if (!Number.isFinite(weights[i])) weights[i] = 0;
    total += weights[i];
  }
  for (let i = 0; i < k; i++) {
    const row = conceptIndices[i] * d;
    let norm = 0;
    for (let j = 0; j < d; j++) norm += conceptEmbeddings.data[row + j] ** 2;
    norm = Math.sqrt(norm) || 1;
    const w = weights[i] / total / norm;
    for (let j = 0; j < d; j++) out[j] += w * conceptEmbeddings.data[row + j];
  }
  let norm = 0;
  for (let j = 0; j < d; j++) norm += out[j] * out[j];
  norm = Math.sqrt(norm);
  return Float32Array.from(out, (v) => (norm > 0 ? v / norm : 0));
}

export function validateSpace(space: ConceptSpace): void {
  const S = space.probeScores.cols;
  if (space.concepts.length === 0 || S === 0) {
    throw new CmError('INVALID_ARGUMENT', 'the concept set is empty', { hint: 'give at least one concept' });
  }
  if (space.concepts.length !== S) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `the concept set has ${space.concepts.length} concepts but the probe scores P have ${S} columns`,
      {
        context: { concepts: space.concepts.length, pCols: S },
      },
    );
  }
  if (space.categories.length !== S) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `the concept set has ${S} concepts but ${space.categories.length} categories`,
      { context: { categories: space.categories.length, S } },
    );
  }
  if (space.conceptEmbeddings.rows !== S) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `concept embeddings have ${space.conceptEmbeddings.rows} rows, expected one per concept (${S})`,
      { context: { rows: space.conceptEmbeddings.rows, S } },
    );
  }
  const d = space.conceptEmbeddings.cols;
  if (
    space.projection.mean.length !== d ||
    space.projection.components.rows !== d ||
    space.projection.components.cols !== 2
  ) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `the 2D projection does not match ${d}-dimensional concept embeddings`,
      { context: { d } },
    );
  }
}

/** Labels of a layer from its similarity matrix (pure: no threads, no calibration). */
export function labelsFromSimilarity(
  sim: Matrix,
  space: ConceptSpace,
  dead: readonly boolean[],
  opts: {
    topK: number;
    /** Reported threshold; `interpretable = score > threshold` unless likelihoodThresholds is given. */
    threshold: number;
    previousTop1?: Int32Array;
    embeddingTemperature?: number;
    /** wpmi / soft_wpmi: the layer normaliser (L = sim + lambda logp), for tie-breaks and the likelihood test. */
    likelihood?: { logp: Float64Array; lambda: number };
    /** wpmi / soft_wpmi: per-concept thresholds on L; interpretable = L[k, top1] > likelihoodThresholds[top1]. */
    likelihoodThresholds?: Float64Array;
    /** Each neuron's top activating images (N x k, best first); none given: empty lists. */
    topImages?: { k: number; indices: Int32Array };
  },
): { labels: NeuronLabel[]; top1: Int32Array } {
  const lik = opts.likelihood;
  const offset = lik ? Float64Array.from(lik.logp, (v) => lik.lambda * v) : undefined;
  if (opts.likelihoodThresholds && !offset) {
    throw new CmError(
      'INTERNAL',
      "likelihood thresholds need the layer normaliser logp to recover each neuron's likelihood",
    );
  }
  const { indices, scores } = topConceptsPerNeuron(sim, opts.topK, offset);
  const kk = Math.min(opts.topK, sim.cols);
  const N = sim.rows;
  const top1 = new Int32Array(N);
  for (let n = 0; n < N; n++) top1[n] = indices[n * kk];
  const { switched } = conceptSwitches(top1, opts.previousTop1);
  const labels: NeuronLabel[] = [];
  for (let n = 0; n < N; n++) {
    const idx = indices.subarray(n * kk, (n + 1) * kk);
    const sc = scores.subarray(n * kk, (n + 1) * kk);
    const embedding = unifiedEmbedding(space.conceptEmbeddings, idx, sc, opts.embeddingTemperature);
    const { x, y } = projectTo2d(space, embedding);
    const score = sc[0];
    const interpretable =
      opts.likelihoodThresholds && offset
        ? sim.data[n * sim.cols + idx[0]] + offset[idx[0]] > opts.likelihoodThresholds[idx[0]]
        : score > opts.threshold;
    labels.push({
      neuron: n,
      concept: space.concepts[idx[0]],
      conceptIndex: idx[0],
      category: space.categories[idx[0]],
      score,
      interpretable: !dead[n] && interpretable,
      topConcepts: Array.from(idx, (j) => space.concepts[j]),
      topScores: Array.from(sc),
      topImages: opts.topImages
        ? Array.from(opts.topImages.indices.subarray(n * opts.topImages.k, (n + 1) * opts.topImages.k))
        : [],
      embedding,
      x,
      y,
      dead: dead[n],
      switched: switched[n],
    });
  }
  return { labels, top1 };
}

/**
 * The first `count` (at most D) top activating images of every neuron: the head of the similarity's
 * own ranking when it kept one at least that long (wpmi / soft_wpmi), else a partial selection per
 * neuron (quickselect, then a sort of the winners only) on the executor.
 */
async function topImagesOf(
  exec: Executor,
  Q: Matrix,
  result: SimilarityResult,
  count: number,
): Promise<{ k: number; indices: Int32Array }> {
  if (!Number.isInteger(count) || count < 0)
    throw new CmError('INVALID_ARGUMENT', `topImages must be a non-negative integer, got ${count}`, {
      context: { topImages: count },
    });
  const k = Math.min(count, Q.rows);
  const N = Q.cols;
  const ranked = result.topImages;
  if (ranked && ranked.k === k) return ranked;
  if (ranked && ranked.k > k) {
    const indices = new Int32Array(N * k);
    for (let n = 0; n < N; n++) indices.set(ranked.indices.subarray(n * ranked.k, n * ranked.k + k), n * k);
    return { k, indices };
  }
  if (k === 0 || N === 0) return { k, indices: new Int32Array(0) };
  return { k, indices: await topImages(exec, toShared(Q), k) };
}

/**
 * The `k` (at most D) top activating probe images of every neuron of Q (D x N), best first, equal
 * activations lower index first: N x k int32, neuron by neuron. A partial selection per neuron
 * (quickselect, then a sort of the k winners), on `exec` (a DissectPool) or in this thread.
 */
export async function topActivatingImages(
  Q: Matrix,
  k: number,
  exec: Executor = inlineExecutor,
): Promise<Int32Array> {
  const none = { rows: 0, cols: 0, data: new Float32Array(0) };
  return (await topImagesOf(exec, Q, { sim: none, stages: { softmax: 0, topk: 0, kernel: 0 } }, k)).indices;
}

/** dissectLayer on a given executor (a DissectPool or the calling thread). */
export async function dissectOn(
  exec: Executor,
  space: ConceptSpace,
  Q: Matrix,
  opts: DissectOptions = {},
): Promise<LayerDissection & { top1: Int32Array }> {
  validateSpace(space);
  const method = opts.method ?? 'soft_wpmi';
  const r = resolveParams(method, opts.params);
  validateInputs(r, space.probeScores, Q);
  const topK = opts.topK ?? 5;
  if (!Number.isInteger(topK) || topK < 1)
    throw new CmError('INVALID_ARGUMENT', `topK must be a positive integer, got ${topK}`, {
      context: { topK },
    });
  if (opts.previousTop1 && opts.previousTop1.length !== Q.cols) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `previousTop1 has ${opts.previousTop1.length} entries but the layer has ${Q.cols} neurons`,
      {
        context: { previous: opts.previousTop1.length, neurons: Q.cols },
      },
    );
  }
  const calibration = { seed: opts.calibrationSeed, nullActivations: opts.nullActivations };
  // given back below once read; a failed call leaves it to the garbage collector (a worker task may
  // still be writing it when a sibling task's error rejects the call)
  const output = similarityBuffers.take(Q.cols * space.probeScores.cols * 4);
  const [result, threshold, nullL] = await Promise.all([
    similarityDetailedOn(exec, r, space.probeScores, Q, output),
    opts.threshold ?? calibrateOn(exec, space, Q.cols, method, opts.params, calibration),
    opts.threshold === undefined && usesLikelihoodNull(r.method)
      ? likelihoodNullOn(exec, space, r.method, opts.params, calibration)
      : undefined,
  ]);
  const dead = deadNeurons(Q);
  const evidence = await topImagesOf(exec, Q, result, opts.topImages ?? DEFAULT_TOP_IMAGES);
  const { labels, top1 } = labelsFromSimilarity(result.sim, space, dead, {
    topK,
    threshold,
    previousTop1: opts.previousTop1,
    embeddingTemperature: opts.embeddingTemperature,
    likelihood: result.likelihood,
    likelihoodThresholds: nullL?.thresholds,
    topImages: evidence,
  });
  const metrics = layerMetrics(labels, {
    conceptCount: space.concepts.length,
    threshold,
    thresholdKind: nullL ? 'likelihood-margin' : 'score',
    previousTop1: opts.previousTop1,
  });
  const own = layerEvidence(result.sim, top1, dead, result.likelihood, opts.conceptCeiling);
  // nothing returned refers to the matrix (labels, metrics and evidence are copies)
  similarityBuffers.give(output);
  return {
    labels,
    metrics,
    topConcepts: topLayerConcepts(labels),
    top1,
    evidence: { neuron: own.evidence, conceptCeiling: own.conceptCeiling },
  };
}

/**
 * Dissect one layer: label every neuron (top-k concepts, score, category, interpretable, dead),
 * place it in the unified concept space and on the bundle's fixed 2D map, and compute the layer's
 * metrics. Big layers run on the default worker pool; use DissectPool.dissect to choose the pool.
 */
export function dissectLayer(
  space: ConceptSpace,
  Q: Matrix,
  opts: DissectOptions = {},
): Promise<LayerDissection & { top1: Int32Array }> {
  const big =
    space.probeScores.rows * space.probeScores.cols > 2e7 || Q.cols * space.probeScores.cols * 100 > 2e7;
  return dissectOn(big ? defaultExecutor() : inlineExecutor, space, Q, opts);
}
