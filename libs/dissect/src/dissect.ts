import { CmError } from '@cm/core';
import type { ConceptSpace, LayerDissection, Matrix, NeuronLabel, SimilarityMethod, SimilarityParams } from './types';
import type { Executor } from './executor';
import { inlineExecutor } from './executor';
import { resolveParams, validateInputs } from './params';
import { defaultExecutor, similarityOn } from './similarity';
import { calibrateOn } from './calibrate';
import { conceptSwitches, layerMetrics, topLayerConcepts } from './metrics';
import { projectTo2d } from './projection';

export interface DissectOptions {
  method?: SimilarityMethod;
  params?: SimilarityParams;
  /** Concepts kept per neuron (labels and unified embedding); default 5. */
  topK?: number;
  /** Interpretability threshold on the top score; default: calibrated (calibrateThreshold). */
  threshold?: number;
  /** Top-1 concept indices of the same layer at the previous checkpoint, for switches. */
  previousTop1?: Int32Array;
  /** Seed of the calibration's null activations (default as calibrateThreshold). */
  calibrationSeed?: number;
  /** Temperature of the softmax over top-k scores that weights the unified embedding (default 1). */
  embeddingTemperature?: number;
}

/** Top-k columns per row of sim (N x S), best first; NaN counts as -Infinity; ties keep lower index. */
export function topConceptsPerNeuron(sim: Matrix, k: number): { indices: Int32Array; scores: Float32Array } {
  const N = sim.rows;
  const S = sim.cols;
  const kk = Math.min(k, S);
  const indices = new Int32Array(N * kk);
  const scores = new Float32Array(N * kk);
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
export function unifiedEmbedding(conceptEmbeddings: Matrix, conceptIndices: ArrayLike<number>, scores: ArrayLike<number>, temperature = 1): Float32Array {
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
    throw new CmError('INVALID_ARGUMENT', `the concept set has ${space.concepts.length} concepts but the probe scores P have ${S} columns`, {
      context: { concepts: space.concepts.length, pCols: S },
    });
  }
  if (space.categories.length !== S) {
    throw new CmError('INVALID_ARGUMENT', `the concept set has ${S} concepts but ${space.categories.length} categories`, { context: { categories: space.categories.length, S } });
  }
  if (space.conceptEmbeddings.rows !== S) {
    throw new CmError('INVALID_ARGUMENT', `concept embeddings have ${space.conceptEmbeddings.rows} rows, expected one per concept (${S})`, { context: { rows: space.conceptEmbeddings.rows, S } });
  }
  const d = space.conceptEmbeddings.cols;
  if (space.projection.mean.length !== d || space.projection.components.rows !== d || space.projection.components.cols !== 2) {
    throw new CmError('INVALID_ARGUMENT', `the 2D projection does not match ${d}-dimensional concept embeddings`, { context: { d } });
  }
}

/** Labels of a layer from its similarity matrix (pure: no threads, no calibration). */
export function labelsFromSimilarity(
  sim: Matrix,
  space: ConceptSpace,
  dead: readonly boolean[],
  opts: { topK: number; threshold: number; previousTop1?: Int32Array; embeddingTemperature?: number },
): { labels: NeuronLabel[]; top1: Int32Array } {
  const { indices, scores } = topConceptsPerNeuron(sim, opts.topK);
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
    labels.push({
      neuron: n,
      concept: space.concepts[idx[0]],
      conceptIndex: idx[0],
      category: space.categories[idx[0]],
      score,
      interpretable: !dead[n] && score > opts.threshold,
      topConcepts: Array.from(idx, (j) => space.concepts[j]),
      topScores: Array.from(sc),
      embedding,
      x,
      y,
      dead: dead[n],
      switched: switched[n],
    });
  }
  return { labels, top1 };
}

/** dissectLayer on a given executor (a DissectPool or the calling thread). */
export async function dissectOn(exec: Executor, space: ConceptSpace, Q: Matrix, opts: DissectOptions = {}): Promise<LayerDissection & { top1: Int32Array }> {
  validateSpace(space);
  const method = opts.method ?? 'soft_wpmi';
  const r = resolveParams(method, opts.params);
  validateInputs(r, space.probeScores, Q);
  const topK = opts.topK ?? 5;
  if (!Number.isInteger(topK) || topK < 1) throw new CmError('INVALID_ARGUMENT', `topK must be a positive integer, got ${topK}`, { context: { topK } });
  if (opts.previousTop1 && opts.previousTop1.length !== Q.cols) {
    throw new CmError('INVALID_ARGUMENT', `previousTop1 has ${opts.previousTop1.length} entries but the layer has ${Q.cols} neurons`, {
      context: { previous: opts.previousTop1.length, neurons: Q.cols },
    });
  }
  const [sim, threshold] = await Promise.all([
    similarityOn(exec, r, space.probeScores, Q),
    opts.threshold ?? calibrateOn(exec, space, Q.cols, method, opts.params, { seed: opts.calibrationSeed }),
  ]);
  const dead = deadNeurons(Q);
  const { labels, top1 } = labelsFromSimilarity(sim, space, dead, { topK, threshold, previousTop1: opts.previousTop1, embeddingTemperature: opts.embeddingTemperature });
  const metrics = layerMetrics(labels, { conceptCount: space.concepts.length, threshold, previousTop1: opts.previousTop1 });
  return { labels, metrics, topConcepts: topLayerConcepts(labels), top1 };
}

/**
 * Dissect one layer: label every neuron (top-k concepts, score, category, interpretable, dead),
 * place it in the unified concept space and on the bundle's fixed 2D map, and compute the layer's
 * metrics. Big layers run on the default worker pool; use DissectPool.dissect to choose the pool.
 */
export function dissectLayer(space: ConceptSpace, Q: Matrix, opts: DissectOptions = {}): Promise<LayerDissection & { top1: Int32Array }> {
  const big = space.probeScores.rows * space.probeScores.cols > 2e7 || Q.cols * space.probeScores.cols * 100 > 2e7;
  return dissectOn(big ? defaultExecutor() : inlineExecutor, space, Q, opts);
}
