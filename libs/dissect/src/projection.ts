import { CmError } from '@cm/core';
import type { ConceptSpace, Matrix } from './types';
import { mulberry32 } from './random';

export interface Projection {
  /** d x 2: the first two principal axes as columns. */
  components: Matrix;
  /** d: the mean concept embedding. */
  mean: Float32Array;
}

/** Leading eigenvector of the symmetric d x d matrix C by power iteration (deterministic start). */
function leadingEigenvector(C: Float64Array, d: number, orthogonalTo?: Float64Array): Float64Array {
  // Start from a fixed pseudo-random vector: it has a component along every eigenvector (a start
  // built from C itself can lie exactly in a null direction), and a fixed seed keeps the result deterministic.
  const random = mulberry32(0x2d5eed);
  let v: Float64Array = Float64Array.from({ length: d }, () => random() - 0.5);
  const project = (x: Float64Array): void => {
    if (!orthogonalTo) return;
    let dot = 0;
    for (let i = 0; i < d; i++) dot += x[i] * orthogonalTo[i];
    for (let i = 0; i < d; i++) x[i] -= dot * orthogonalTo[i];
  };
  const normalise = (x: Float64Array): boolean => {
    let n = 0;
    for (let i = 0; i < d; i++) n += x[i] * x[i];
    n = Math.sqrt(n);
    if (!(n > 1e-300)) return false;
    for (let i = 0; i < d; i++) x[i] /= n;
    return true;
  };
  project(v);
  if (!normalise(v)) {
    // C is zero on the remaining subspace: any unit vector in it will do; take the first basis vector that survives.
    for (let k = 0; k < d; k++) {
      v.fill(0);
      v[k] = 1;
      project(v);
      if (normalise(v)) return v;
    }
    return v;
  }
  let next: Float64Array = new Float64Array(d);
  for (let iter = 0; iter < 5000; iter++) {
    for (let i = 0; i < d; i++) {
      let s = 0;
      const row = i * d;
      for (let j = 0; j < d; j++) s += C[row + j] * v[j];
      next[i] = s;
    }
    project(next);
    if (!normalise(next)) return v;
    let diff = 0;
    for (let i = 0; i < d; i++) diff = Math.max(diff, Math.abs(next[i] - v[i]));
    const previous = v;
    v = next;
    next = previous;
    if (diff < 1e-12) break;
  }
  return v;
}

/** Sign convention: the entry of largest magnitude is positive (first such entry on ties). */
function fixSign(v: Float64Array): void {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (Math.abs(v[i]) > Math.abs(v[best])) best = i;
  if (v[best] < 0) for (let i = 0; i < v.length; i++) v[i] = -v[i];
}

/**
 * The fixed 2D map of a probe bundle: PCA of the concept embedding matrix (S x d), computed once
 * when the bundle is written so the map never moves between checkpoints or runs. Deterministic:
 * float64 covariance, power iteration from a fixed start, sign fixed so each axis's largest entry
 * is positive. Cost ~S d^2 / 2 multiply-adds (about 2 s for 20,000 x 512 on this machine).
 */
export function fitProjection(conceptEmbeddings: Matrix): Projection {
  const S = conceptEmbeddings.rows;
  const d = conceptEmbeddings.cols;
  const X = conceptEmbeddings.data;
  if (S < 1 || d < 1 || X.length !== S * d) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `fitProjection: concept embeddings must be a non-empty S x d matrix, got ${S} x ${d} with ${X.length} values`,
      { context: { S, d } },
    );
  }
  const mean = new Float64Array(d);
  for (let s = 0; s < S; s++) for (let j = 0; j < d; j++) mean[j] += X[s * d + j];
  for (let j = 0; j < d; j++) mean[j] /= S;
  const C = new Float64Array(d * d);
  const x = new Float64Array(d);
  for (let s = 0; s < S; s++) {
    for (let j = 0; j < d; j++) x[j] = X[s * d + j] - mean[j];
    for (let a = 0; a < d; a++) {
      const xa = x[a];
      if (xa === 0) continue;
      const row = a * d;
      for (let b = a; b < d; b++) C[row + b] += xa * x[b];
    }
  }
  for (let a = 0; a < d; a++) for (let b = a; b < d; b++) C[b * d + a] = C[a * d + b] /= Math.max(1, S - 1);
  const components = new Float32Array(d * 2);
  const first = leadingEigenvector(C, d);
  fixSign(first);
  let second: Float64Array = new Float64Array(d);
  if (d > 1) {
    second = leadingEigenvector(C, d, first);
    fixSign(second);
  }
  for (let j = 0; j < d; j++) {
    components[j * 2] = first[j];
    components[j * 2 + 1] = second[j];
  }
  return { components: { rows: d, cols: 2, data: components }, mean: Float32Array.from(mean) };
}

/** A unified embedding's place on the bundle's fixed 2D map. */
export function projectTo2d(
  space: Pick<ConceptSpace, 'projection'>,
  embedding: Float32Array,
): { x: number; y: number } {
  const { components, mean } = space.projection;
  const d = mean.length;
  if (embedding.length !== d || components.rows !== d || components.cols !== 2) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `projectTo2d: embedding has ${embedding.length} dims, projection expects ${d} (components ${components.rows} x ${components.cols})`,
      {
        context: { embedding: embedding.length, d },
      },
    );
  }
  let x = 0;
  let y = 0;
  for (let j = 0; j < d; j++) {
    const c = embedding[j] - mean[j];
    x += c * components.data[j * 2];
    y += c * components.data[j * 2 + 1];
  }
  return { x, y };
}
