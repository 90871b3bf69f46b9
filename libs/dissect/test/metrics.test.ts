import {
  conceptSwitches,
  distinctShare,
  embeddingSpread,
  layerMetrics,
  normalisedEntropy,
  topLayerConcepts,
  type NeuronLabel,
} from '../src';

/** A hand-made label: concept j has the unit embedding e_j in 4 dimensions. */
function label(neuron: number, conceptIndex: number, opts: Partial<NeuronLabel> = {}): NeuronLabel {
  const embedding = new Float32Array(4);
  embedding[conceptIndex % 4] = 1;
  return {
    neuron,
    concept: `c${conceptIndex}`,
    conceptIndex,
    category: conceptIndex % 2 === 0 ? 'colour' : 'shape',
    score: 1,
    interpretable: true,
    topConcepts: [`c${conceptIndex}`],
    topScores: [1],
    topImages: [],
    embedding,
    x: 0,
    y: 0,
    dead: false,
    ...opts,
  };
}

describe('layer metrics on hand-made layers', () => {
  it('all neurons on one concept: every diversity measure is 0', () => {
    const labels = [0, 1, 2, 3].map((n) => label(n, 2));
    const m = layerMetrics(labels, { conceptCount: 4, threshold: 0.5 });
    expect(m.distinctConceptShare).toBe(0);
    expect(m.labelEntropy).toBe(0);
    expect(m.embeddingSpread).toBeCloseTo(0, 12);
    expect(m.categoryShares).toEqual({ colour: 1 });
    expect(m.interpretableFraction).toBe(1);
  });

  it('all neurons on distinct concepts: diversity is maximal (1)', () => {
    const labels = [0, 1, 2, 3].map((n) => label(n, n));
    const m = layerMetrics(labels, { conceptCount: 4, threshold: 0.5 });
    expect(m.distinctConceptShare).toBe(1);
    expect(m.labelEntropy).toBeCloseTo(1, 12);
    // four orthogonal unit vectors: |mean|^2 = 4 * (1/4)^2 = 1/4
    expect(m.embeddingSpread).toBeCloseTo(0.75, 12);
    expect(m.categoryShares).toEqual({ colour: 0.5, shape: 0.5 });
  });

  it('in between: two concepts, three neurons on one', () => {
    const top1 = [0, 0, 0, 1];
    expect(distinctShare(top1, 10)).toBeCloseTo(1 / 3, 12);
    const p = [0.75, 0.25];
    expect(normalisedEntropy(top1, 10)).toBeCloseTo(
      -(p[0] * Math.log(p[0]) + p[1] * Math.log(p[1])) / Math.log(4),
      12,
    );
  });

  it('a neuron that changes concept counts as a switch; unknown previous labels (-1) do not', () => {
    const { switched, count } = conceptSwitches(
      Int32Array.from([1, 2, 3, 4]),
      Int32Array.from([1, 5, -1, 4]),
    );
    expect(switched).toEqual([false, true, false, false]);
    expect(count).toBe(1);
    const labels = [1, 2, 3, 4].map((c, n) => label(n, c));
    const m = layerMetrics(labels, {
      conceptCount: 8,
      threshold: 0,
      previousTop1: Int32Array.from([1, 5, -1, 4]),
    });
    expect(m.switches).toBe(1);
    expect(m.switchFraction).toBe(0.25);
    expect(layerMetrics(labels, { conceptCount: 8, threshold: 0 }).switches).toBe(0);
  });

  it('dead neurons count as not interpretable and stay out of label statistics', () => {
    const labels = [
      label(0, 1),
      label(1, 1),
      label(2, 3, { dead: true, interpretable: false, score: 99 }),
      label(3, 1, { interpretable: false, score: 0 }),
    ];
    const m = layerMetrics(labels, { conceptCount: 4, threshold: 0.5 });
    expect(m.deadFraction).toBe(0.25);
    expect(m.interpretableFraction).toBe(0.5);
    expect(m.meanTopScore).toBeCloseTo(2 / 3, 12);
    expect(m.distinctConceptShare).toBe(0);
    expect(topLayerConcepts(labels)).toEqual([{ concept: 'c1', count: 3 }]);
  });

  it('embedding spread of opposite vectors is 1 and of nothing is 0', () => {
    expect(embeddingSpread([Float32Array.from([1, 0]), Float32Array.from([-1, 0])])).toBeCloseTo(1, 12);
    expect(embeddingSpread([])).toBe(0);
  });
});
