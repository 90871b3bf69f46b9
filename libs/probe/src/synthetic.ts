import { invalidArgument } from '@cm/core';
import { fitProjection, type ConceptSpace, type Matrix } from '@cm/dissect';
import type { ProbeBundleData } from './bundle';
import { normaliseRows, symmetricEigen } from './linalg';
import { renderProbeWorld, sceneConcepts, WORLD_CONCEPTS, type WorldScene } from './world';

/** Labelled-mode P: 1 where the concept is in the image's ground truth, 0 elsewhere (D x S). */
export function labelledProbeScores(scenes: readonly WorldScene[], concepts: readonly string[]): Matrix {
  const index = new Map(concepts.map((c, j) => [c, j]));
  const data = new Float32Array(scenes.length * concepts.length);
  scenes.forEach((scene, i) => {
    for (const name of sceneConcepts(scene)) {
      const j = index.get(name);
      if (j !== undefined) data[i * concepts.length + j] = 1;
    }
  });
  return { rows: scenes.length, cols: concepts.length, data };
}

/**
 * Concept embeddings derived from the probe set itself (labelled mode), S x S with unit rows.
 *
 * Let Z be P with every column centred and scaled to unit L2 norm over the probe images, and
 * C = Z^T Z the S x S correlation matrix of the concepts over the probe set. With the
 * eigendecomposition C = V L V^T, concept j's embedding is row j of V L^(1/2), renormalised. Then
 * the cosine similarity of two concept embeddings equals the correlation of the two concepts across
 * the probe images: concepts that co-occur point the same way, mutually exclusive values of one
 * factor (red vs blue on a one-object image) point apart, and independent factors are orthogonal.
 * A concept absent from (or present in every image of) the probe set has no correlation; it gets
 * C_jj = 1 and zeros elsewhere, i.e. a direction of its own.
 */
export function correlationEmbeddings(p: Matrix): Matrix {
  const { rows: d, cols: s, data } = p;
  const z = new Float64Array(d * s);
  for (let j = 0; j < s; j++) {
    let mean = 0;
    for (let i = 0; i < d; i++) mean += data[i * s + j];
    mean /= d;
    let ss = 0;
    for (let i = 0; i < d; i++) ss += (data[i * s + j] - mean) ** 2;
    const norm = Math.sqrt(ss);
    if (norm > 1e-12) for (let i = 0; i < d; i++) z[i * s + j] = (data[i * s + j] - mean) / norm;
  }
  const c = new Float64Array(s * s);
  for (let a = 0; a < s; a++) {
    for (let b = a; b < s; b++) {
      let acc = 0;
      for (let i = 0; i < d; i++) acc += z[i * s + a] * z[i * s + b];
      c[a * s + b] = acc;
      c[b * s + a] = acc;
    }
    c[a * s + a] = 1; // also gives constant columns their own direction
  }
  const { values, vectors } = symmetricEigen(c, s);
  const out = new Float32Array(s * s);
  for (let j = 0; j < s; j++) {
    for (let k = 0; k < s; k++) out[j * s + k] = vectors[j * s + k] * Math.sqrt(Math.max(0, values[k]));
  }
  return normaliseRows({ rows: s, cols: s, data: out });
}

export const LABELLED_EMBEDDING_PROVENANCE =
  'labelled: concept j = row j of V L^(1/2) for the concept correlation matrix C = V L V^T over the probe set (C from P with columns centred and unit-normed), rows renormalised; cos(e_a, e_b) = corr(a, b)';
export const PCA_PROVENANCE =
  'PCA of the concept embeddings (covariance of the mean-centred rows, top two axes; @cm/dissect fitProjection), fitted once per bundle';

/** Concept space of a labelled probe set: P as given, embeddings from P, fixed PCA map. */
export function labelledConceptSpace(
  concepts: readonly string[],
  categories: readonly string[],
  p: Matrix,
): ConceptSpace {
  const conceptEmbeddings = correlationEmbeddings(p);
  return {
    concepts: [...concepts],
    categories: [...categories],
    probeScores: p,
    conceptEmbeddings,
    projection: fitProjection(conceptEmbeddings),
  };
}

/** A bundle of the built-in synthetic world. Deterministic: same options, byte-identical bundle. */
export function makeSyntheticBundle(opts: {
  world?: 'shapes';
  images: number;
  seed: number;
  size?: 32 | 64;
}): ProbeBundleData {
  const world = opts.world ?? 'shapes';
  if (world !== 'shapes')
    throw invalidArgument(
      `unknown synthetic world '${String(world)}'`,
      { world },
      "the built-in world is 'shapes'",
    );
  const size = opts.size ?? 32;
  const rendered = renderProbeWorld({ images: opts.images, seed: opts.seed, size });
  const concepts = WORLD_CONCEPTS.map((c) => c.name);
  const categories = WORLD_CONCEPTS.map((c) => c.category);
  const p = labelledProbeScores(rendered.scenes, concepts);
  return {
    source: { kind: 'synthetic', world, seed: opts.seed, images: opts.images, size },
    probeScoresMode: 'labelled',
    provenance: {
      probeScores:
        'labelled: P[i, j] = 1 if concept j is in the ground truth of image i (any of its objects, its background or its object count), else 0',
      conceptEmbeddings: LABELLED_EMBEDDING_PROVENANCE,
      projection: PCA_PROVENANCE,
    },
    images: rendered.images,
    imageShape: rendered.shape,
    space: labelledConceptSpace(concepts, categories, p),
  };
}
