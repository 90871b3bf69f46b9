import { computeSimilarity, computeSimilarityDetailed, dissectLayer, topConceptsPerNeuron } from '../src';
import { loadReference } from './helpers';

/** computeSimilarityDetailed: the matrix plus what labels need to break near-ties like dissectLayer. */
describe('computeSimilarityDetailed', () => {
  const ref = loadReference();

  it.each(['soft_wpmi', 'wpmi'] as const)(
    '%s: same matrix as computeSimilarity, plus a likelihood offset per concept',
    async (method) => {
      const plain = await computeSimilarity(method, ref.P, ref.Q);
      const { sim, likelihoodOffset } = await computeSimilarityDetailed(method, ref.P, ref.Q);
      expect(Array.from(sim.data)).toEqual(Array.from(plain.data));
      expect(likelihoodOffset).toHaveLength(ref.P.cols);
      expect(Array.from(likelihoodOffset!).every(Number.isFinite)).toBe(true);
    },
  );

  it('cos has no likelihood offset', async () => {
    const { likelihoodOffset } = await computeSimilarityDetailed('cos', ref.P, ref.Q);
    expect(likelihoodOffset).toBeUndefined();
  });

  it('gives the labels dissectLayer gives', async () => {
    const { sim, likelihoodOffset } = await computeSimilarityDetailed('soft_wpmi', ref.P, ref.Q);
    const { indices } = topConceptsPerNeuron(sim, 1, likelihoodOffset);
    const S = ref.P.cols;
    const space = {
      concepts: Array.from({ length: S }, (_, j) => `c${j}`),
      categories: Array.from({ length: S }, () => 'object'),
      probeScores: ref.P,
      conceptEmbeddings: {
        rows: S,
        cols: 2,
        data: new Float32Array(S * 2).map((_, i) => (i % 2 === 0 ? 1 : 0)),
      },
      projection: {
        components: { rows: 2, cols: 2, data: new Float32Array([1, 0, 0, 1]) },
        mean: new Float32Array(2),
      },
    };
    const layer = await dissectLayer(space, ref.Q, { method: 'soft_wpmi', threshold: 0 });
    expect(Array.from(indices)).toEqual(layer.labels.map((l) => l.conceptIndex));
  });
});
