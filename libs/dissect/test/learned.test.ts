/**
 * The learned-concept figure (learned.ts): the pure function on hand-made evidence, then on
 * dissected layers of a labelled world where "untrained" neurons respond to a nuisance factor (as
 * untrained convolutions respond to background colour) and pass the association test.
 */
import {
  beyondCeiling,
  chanceFraction,
  combinedCeiling,
  dissectLayer,
  fitProjection,
  learnedConceptShare,
  neuronEvidence,
  nullActivations,
  randomInitLayer,
  type ConceptSpace,
  type Matrix,
  type RandomInitLayer,
} from '../src';
import { mulberry32 } from '../src/random';

describe('learnedConceptShare on given evidence', () => {
  // 3 concepts, 4 neurons per layer
  const init = (evidence: number[], concepts: number[], ceiling: number[]): RandomInitLayer => ({
    conceptIndex: concepts,
    evidence,
    interpretable: evidence.map(() => true),
    conceptCeiling: ceiling,
  });
  const inits = [
    init([5, 3, 2, 1], [0, 1, 2, 0], [5, 3, 2]),
    init([4, 6, 1, 1], [0, 1, 2, 2], [4, 6, 1]),
    init([2, 2, 7, 0], [0, 1, 2, 1], [2, 2, 7]),
  ];

  it('the ceiling is the per-concept max over the inits', () => {
    expect(Array.from(combinedCeiling(inits))).toEqual([5, 6, 7]);
  });

  it('a layer that copies one of the random inits scores exactly 0', () => {
    for (const copy of inits) {
      const r = learnedConceptShare(copy, inits);
      expect(r.rawFraction).toBe(0);
      expect(r.learnedFraction).toBe(0);
      expect(r.learned).toEqual([false, false, false, false]);
    }
  });

  it('counts a neuron only when it is interpretable and above the ceiling of its own concept', () => {
    const layer = {
      conceptIndex: [0, 1, 2, 2],
      evidence: [5.5, 6, 100, 100],
      interpretable: [true, true, true, false],
    };
    // 5.5 > 5 (concept 0); 6 is not above 6; 100 > 7 but the last one fails the association test
    expect(beyondCeiling(layer, combinedCeiling(inits))).toEqual([true, false, true, false]);
  });

  it('chance is the leave-one-out pass rate of the inits, and corrects the raw share', () => {
    // init 0 against inits 1, 2 (ceiling [4, 6, 7]): neuron 0 (5 > 4) passes -> 1/4
    // init 1 against 0, 2 ([5, 3, 7]): neuron 1 (6 > 3) -> 1/4; init 2 against 0, 1 ([5, 6, 2]): neuron 2 -> 1/4
    expect(chanceFraction(inits)).toBeCloseTo(0.25, 12);
    const all = {
      conceptIndex: [0, 1, 2, 0],
      evidence: [9, 9, 9, 9],
      interpretable: [true, true, true, true],
    };
    const r = learnedConceptShare(all, inits);
    expect(r.rawFraction).toBe(1);
    expect(r.learnedFraction).toBe(1);
    const half = { ...all, evidence: [9, 9, 0, 0] };
    // raw 0.5, chance 0.25: (0.5 - 0.25) / 0.75
    expect(learnedConceptShare(half, inits).learnedFraction).toBeCloseTo(1 / 3, 12);
    // a share at or under chance is 0, not negative
    expect(learnedConceptShare({ ...all, evidence: [9, 0, 0, 0] }, inits).learnedFraction).toBe(0);
    expect(chanceFraction(inits.slice(0, 1))).toBe(0);
  });

  it('a float32-rounding difference from the ceiling does not count', () => {
    const ceiling = [100, 1, 1];
    const layer = { conceptIndex: [0], evidence: [100 * (1 + 1e-7)], interpretable: [true] };
    expect(beyondCeiling(layer, ceiling)).toEqual([false]);
    expect(beyondCeiling({ ...layer, evidence: [100.01] }, ceiling)).toEqual([true]);
  });

  it('refuses a baseline that does not fit the layer, naming the mismatch', () => {
    const layer = { conceptIndex: [0, 1], evidence: [1, 1], interpretable: [true, true] };
    expect(() => learnedConceptShare(layer, [])).toThrow(/at least one random initialisation/);
    expect(() => learnedConceptShare(layer, inits)).toThrow(/random init 0 has 4 neurons, the layer 2/);
    expect(() => learnedConceptShare({ ...layer, evidence: [1] }, inits)).toThrow(/2 labels, 1 evidence/);
    expect(() => beyondCeiling({ conceptIndex: [3], evidence: [1], interpretable: [true] }, [1, 2])).toThrow(
      /concept index 3, outside 0..1/,
    );
  });
});

const D = 400;
const S = 12; // factor 0: "colour" (concepts 0..3), factor 1: "shape" (4..7), factor 2: "size" (8..11)

/** A labelled world: every image has one value of each of 3 factors. */
function labelledWorld(): ConceptSpace {
  const random = mulberry32(18);
  const data = new Float32Array(D * S);
  for (let i = 0; i < D; i++) for (let f = 0; f < 3; f++) data[i * S + 4 * f + Math.floor(random() * 4)] = 1;
  const E: Matrix = {
    rows: S,
    cols: S,
    data: new Float32Array(S * S).map((_, k) => (k % (S + 1) === 0 ? 1 : 0)),
  };
  return {
    concepts: Array.from({ length: S }, (_, j) => `c${j}`),
    categories: Array.from({ length: S }, (_, j) => ['colour', 'shape', 'size'][Math.floor(j / 4)]),
    probeScores: { rows: D, cols: S, data },
    conceptEmbeddings: E,
    projection: fitProjection(E),
  };
}

/**
 * An "untrained" layer: each neuron a random mix of the colour indicators plus noise, like an
 * untrained convolution that sorts images by background colour (seeded).
 */
function untrainedLayer(space: ConceptSpace, N: number, seed: number): Matrix {
  const random = mulberry32(seed);
  const noise = nullActivations(D, N, seed + 1);
  // one colour dominates each neuron's mix (weight 1, the others up to 0.3): a colour detector, imperfect
  const mix = Array.from({ length: N }, () => {
    const w = Array.from({ length: 4 }, () => 0.3 * random());
    w[Math.floor(random() * 4)] = 1;
    return w;
  });
  const data = new Float32Array(D * N);
  for (let i = 0; i < D; i++)
    for (let n = 0; n < N; n++) {
      let v = 0.3 * noise.data[i * N + n];
      for (let c = 0; c < 4; c++) v += mix[n][c] * space.probeScores.data[i * S + c];
      data[i * N + n] = v;
    }
  return { rows: D, cols: N, data };
}

/** Neurons set to the ground-truth concept detectors: neuron n is the indicator of concept n % S. */
function groundTruthLayer(space: ConceptSpace, N: number): Matrix {
  const noise = nullActivations(D, N, 99);
  const data = new Float32Array(D * N);
  for (let i = 0; i < D; i++)
    for (let n = 0; n < N; n++)
      data[i * N + n] = space.probeScores.data[i * S + (n % S)] + 0.01 * noise.data[i * N + n];
  return { rows: D, cols: N, data };
}

describe.each(['soft_wpmi', 'cos'] as const)('learned-concept figure of dissected layers (%s)', (method) => {
  const space = labelledWorld();
  const N = 24;
  const K = 3;
  let inits: RandomInitLayer[];

  beforeAll(async () => {
    inits = [];
    for (let k = 0; k < K; k++)
      inits.push(
        randomInitLayer(
          await dissectLayer(space, untrainedLayer(space, N, 100 + k), { method, conceptCeiling: true }),
        ),
      );
  });

  it('untrained neurons are "interpretable" by association, and not beyond random init', async () => {
    const copy = await dissectLayer(space, untrainedLayer(space, N, 101), { method });
    // the point of the figure: the association test passes untrained neurons (here a fifth of
    // them under soft_wpmi, most under cos)
    expect(copy.metrics.interpretableFraction).toBeGreaterThan(0.15);
    const r = learnedConceptShare(neuronEvidence(copy), inits);
    expect(r.rawFraction).toBe(0);
    expect(r.learnedFraction).toBe(0);
    // a fresh untrained layer (not in the baseline): at most chance
    const fresh = await dissectLayer(space, untrainedLayer(space, N, 555), { method });
    expect(learnedConceptShare(neuronEvidence(fresh), inits).learnedFraction).toBeLessThanOrEqual(0.15);
  });

  it('a layer of ground-truth concept detectors scores near 1', async () => {
    const d = await dissectLayer(space, groundTruthLayer(space, N), { method });
    expect(d.metrics.interpretableFraction).toBe(1);
    const r = learnedConceptShare(neuronEvidence(d), inits);
    expect(r.learnedFraction).toBeGreaterThanOrEqual(0.9);
    // every shape and size detector is beyond random init (no untrained neuron detects those)
    d.labels.forEach((l, n) => {
      if (l.category !== 'colour') expect(r.learned[n]).toBe(true);
    });
  });
});
