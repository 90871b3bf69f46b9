import { fitProjection, type ConceptSpace } from '@cm/dissect';
import { mulberry32, normaliseRows } from '@cm/probe';

/** A random concept space of D images x S concepts (benchmarks: sizes the synthetic world lacks). */
export function randomSpace(d: number, s: number, dim: number, seed: number): ConceptSpace {
  const rnd = mulberry32(seed).next;
  const p = new Float32Array(d * s);
  for (let i = 0; i < p.length; i++) p[i] = rnd() < 0.05 ? 1 : 0;
  const emb = normaliseRows({
    rows: s,
    cols: dim,
    data: Float32Array.from({ length: s * dim }, () => rnd() - 0.5),
  });
  return {
    concepts: Array.from({ length: s }, (_, j) => `concept-${j}`),
    categories: Array.from({ length: s }, (_, j) => ['colour', 'texture', 'shape', 'object'][j % 4]),
    probeScores: { rows: d, cols: s, data: p },
    conceptEmbeddings: emb,
    projection: fitProjection(emb),
  };
}
