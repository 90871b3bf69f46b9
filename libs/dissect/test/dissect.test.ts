import {
  calibrateLikelihoodNull,
  calibrateThreshold,
  deadNeurons,
  normalQuantile,
  dissectLayer,
  fitProjection,
  nullActivations,
  poolLayer,
  projectTo2d,
  topActivatingImages,
  unifiedEmbedding,
  type ConceptSpace,
  type Matrix,
} from '../src';
import { loadReference, uniform } from './helpers';

const ref = loadReference();
const S = ref.P.cols;

/** Labelled-mode style space over the reference concepts: concept j embeds as a fixed random unit vector. */
function space(): ConceptSpace {
  const d = 8;
  const raw = uniform(S * d, 99).map((v) => v - 0.5);
  for (let j = 0; j < S; j++) {
    let n = 0;
    for (let k = 0; k < d; k++) n += raw[j * d + k] ** 2;
    for (let k = 0; k < d; k++) raw[j * d + k] /= Math.sqrt(n);
  }
  const conceptEmbeddings: Matrix = { rows: S, cols: d, data: raw };
  return {
    concepts: Array.from({ length: S }, (_, j) => `concept_${j}`),
    categories: Array.from({ length: S }, (_, j) => (j % 3 === 0 ? 'colour' : 'object')),
    probeScores: ref.P,
    conceptEmbeddings,
    projection: fitProjection(conceptEmbeddings),
  };
}

describe('dissectLayer', () => {
  const sp = space();

  it.each(['soft_wpmi', 'wpmi', 'cos', 'cos_cubed', 'rank_reorder'] as const)(
    "%s: keeps each neuron's top activating probe images as evidence, best first",
    async (method) => {
      const { rows: D, cols: N, data } = ref.Q;
      // the reference: a full sort of each neuron's activations (ties: lower index first)
      const expected = (n: number, k: number): number[] =>
        Array.from({ length: D }, (_, i) => i)
          .sort((a, b) => data[b * N + n] - data[a * N + n] || a - b)
          .slice(0, k);
      const byDefault = await dissectLayer(sp, ref.Q, { method, threshold: 0 });
      expect(byDefault.labels.map((l) => l.topImages)).toEqual(
        byDefault.labels.map((l) => expected(l.neuron, 8)),
      );
      const three = await dissectLayer(sp, ref.Q, { method, threshold: 0, topImages: 3 });
      expect(three.labels.map((l) => l.topImages)).toEqual(three.labels.map((l) => expected(l.neuron, 3)));
    },
  );

  it('topActivatingImages: at most D images, none when asked for none, bad counts refused', async () => {
    const Q: Matrix = { rows: 3, cols: 2, data: Float32Array.from([0.1, 5, 0.3, 5, 0.2, 1]) };
    expect(Array.from(await topActivatingImages(Q, 8))).toEqual([1, 2, 0, 0, 1, 2]);
    expect(Array.from(await topActivatingImages(Q, 0))).toEqual([]);
    await expect(topActivatingImages(Q, -1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(dissectLayer(sp, ref.Q, { topImages: 1.5 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('labels the planted concepts, most of them interpretable against the calibrated null, and reports the layer', async () => {
    const result = await dissectLayer(sp, ref.Q);
    const { labels, metrics, top1 } = result;
    expect(labels).toHaveLength(ref.Q.cols);
    const hits = labels.filter((l, n) => l.conceptIndex === ref.planted[n]);
    expect(hits.length).toBeGreaterThanOrEqual(ref.planted.length - 1);
    // D = 400 and top_k = 100 make a weak plant: about half of the planted neurons clear the 99% null quantile
    expect(hits.filter((l) => l.interpretable).length).toBeGreaterThanOrEqual(hits.length * 0.4);
    expect(labels.filter((l) => l.interpretable).every((l) => l.conceptIndex === ref.planted[l.neuron])).toBe(
      true,
    );
    expect(Array.from(top1)).toEqual(labels.map((l) => l.conceptIndex));
    for (const l of labels) {
      expect(l.topConcepts).toHaveLength(5);
      expect(l.topConcepts[0]).toBe(l.concept);
      expect(l.topScores[0]).toBe(l.score);
      expect(l.category).toBe(l.conceptIndex % 3 === 0 ? 'colour' : 'object');
      const norm = Math.hypot(...l.embedding);
      expect(norm).toBeCloseTo(1, 5);
      const xy = projectTo2d(sp, l.embedding);
      expect([l.x, l.y]).toEqual([xy.x, xy.y]);
      expect(l.dead).toBe(false);
    }
    expect(metrics.threshold).toBe(await calibrateThreshold(sp, ref.Q.cols));
    expect(metrics.interpretableFraction).toBeGreaterThan(0.4);
    expect(metrics.distinctConceptShare).toBeGreaterThan(0.5);
    expect(result.topConcepts[0].count).toBeGreaterThanOrEqual(result.topConcepts[1].count);
  });

  it('a layer of unrelated neurons is (almost) never interpretable: the calibration holds', async () => {
    const { metrics } = await dissectLayer(sp, nullActivations(ref.P.rows, 64, 12345));
    expect(metrics.interpretableFraction).toBeLessThanOrEqual(0.05);
    expect(metrics.thresholdKind).toBe('likelihood-margin');
    for (const method of ['wpmi', 'cos'] as const) {
      const other = await dissectLayer(sp, nullActivations(ref.P.rows, 64, 12345), { method });
      expect(other.metrics.interpretableFraction).toBeLessThanOrEqual(0.05);
      expect(other.metrics.thresholdKind).toBe(method === 'cos' ? 'score' : 'likelihood-margin');
    }
  });

  it('calibration is cached, deterministic per seed; the score quantile depends on the layer width, the likelihood null does not', async () => {
    // cos (null quantile of top scores): as before
    const c = await calibrateThreshold(sp, 24, 'cos');
    expect(await calibrateThreshold(sp, 24, 'cos')).toBe(c);
    expect(await calibrateThreshold(sp, 24, 'cos', undefined, { seed: 1 })).not.toBe(c);
    expect(await calibrateThreshold(sp, 200, 'cos')).not.toBe(c);
    // soft_wpmi: a per-concept test on the neuron's own likelihood, which no layer normaliser enters,
    // so every width shares one calibration (the same cached promise), and the seed changes it
    const a = await calibrateThreshold(sp, 24);
    expect(await calibrateThreshold(sp, 24)).toBe(a);
    expect(await calibrateThreshold(sp, 24, 'soft_wpmi', undefined, { seed: 1 })).not.toBe(a);
    expect(await calibrateThreshold(sp, 200)).toBe(a);
    const nullL = await calibrateLikelihoodNull(sp);
    expect(await calibrateLikelihoodNull(sp)).toBe(nullL);
    expect(a).toBe(nullL.margin);
    expect(nullL.z).toBeCloseTo(normalQuantile(1 - 0.01 / S), 12);
    for (let j = 0; j < S; j++)
      expect(nullL.thresholds[j] - nullL.mean[j]).toBeGreaterThanOrEqual(nullL.z * nullL.sd[j]);
  });

  it('counts switches against the previous checkpoint and flags dead neurons', async () => {
    const Q = Float32Array.from(ref.Q.data);
    for (let i = 0; i < ref.Q.rows; i++) Q[i * ref.Q.cols + 3] = 0.5; // neuron 3 is constant
    const prev = await dissectLayer(sp, ref.Q, { threshold: 0 });
    const previousTop1 = Int32Array.from(prev.top1);
    previousTop1[0] = (previousTop1[0] + 1) % S;
    const next = await dissectLayer(sp, { ...ref.Q, data: Q }, { threshold: 0, previousTop1 });
    expect(next.labels[3].dead).toBe(true);
    expect(next.labels[3].interpretable).toBe(false);
    expect(next.labels[0].switched).toBe(true);
    expect(next.metrics.switches).toBeGreaterThanOrEqual(1);
    expect(next.metrics.deadFraction).toBeCloseTo(1 / ref.Q.cols, 12);
  });

  it('rejects an empty concept set and mismatched spaces', async () => {
    const empty: ConceptSpace = { ...sp, concepts: [], categories: [] };
    await expect(dissectLayer(empty, ref.Q)).rejects.toThrow(/concept set is empty/);
    await expect(dissectLayer({ ...sp, concepts: sp.concepts.slice(1) }, ref.Q)).rejects.toThrow(
      /47 concepts but the probe scores P have 48 columns/,
    );
    await expect(dissectLayer(sp, ref.Q, { previousTop1: new Int32Array(3) })).rejects.toThrow(
      /previousTop1 has 3 entries/,
    );
  });
});

describe('helpers', () => {
  it('unifiedEmbedding weights unit concept embeddings by a softmax of the scores', () => {
    const E: Matrix = { rows: 2, cols: 2, data: Float32Array.from([2, 0, 0, 1]) };
    const e = unifiedEmbedding(E, [0, 1], [Math.log(3), 0]); // weights 3/4, 1/4 on e0, e1
    expect(e[0] / e[1]).toBeCloseTo(3, 5);
    expect(Math.hypot(e[0], e[1])).toBeCloseTo(1, 6);
  });

  it('deadNeurons finds constant columns', () => {
    expect(deadNeurons({ rows: 3, cols: 2, data: Float32Array.from([1, 5, 2, 5, 3, 5]) })).toEqual([
      false,
      true,
    ]);
  });

  it('fitProjection finds the principal axes with a fixed sign, deterministically', () => {
    // points spread along (1, 1, 0) / sqrt 2 (variance 4) and less along (0, 0, 1) (variance 1)
    const rows: number[] = [];
    for (const t of [-2, -1, 1, 2]) rows.push(t, t, 0);
    for (const t of [-1, 1]) rows.push(0, 0, t);
    const E: Matrix = { rows: 6, cols: 3, data: Float32Array.from(rows) };
    const p = fitProjection(E);
    const c = p.components.data;
    const expected = [Math.SQRT1_2, 0, Math.SQRT1_2, 0, 0, 1]; // d x 2: first axis (1,1,0)/sqrt 2, second (0,0,1), signs fixed positive
    expected.forEach((v, i) => expect(c[i]).toBeCloseTo(v, 6));
    expect(Array.from(fitProjection(E).components.data)).toEqual(Array.from(c));
    expect(projectTo2d({ projection: p }, Float32Array.from([1, 1, 0])).x).toBeCloseTo(Math.SQRT2, 5);
  });

  it('poolLayer averages or maxes NHWC over space and passes dense layers through', () => {
    // D=1, H=1, W=2, C=2: positions (1, 10) and (3, 20)
    const t = { shape: [1, 1, 2, 2], data: Float32Array.from([1, 10, 3, 20]) };
    expect(Array.from(poolLayer(t, 'avg').data)).toEqual([2, 15]);
    expect(Array.from(poolLayer(t, 'max').data)).toEqual([3, 20]);
    const dense = poolLayer({ shape: [2, 3], data: new Float32Array(6) }, 'avg');
    expect([dense.rows, dense.cols]).toEqual([2, 3]);
    expect(() => poolLayer({ shape: [2, 3, 4], data: new Float32Array(24) }, 'avg')).toThrow(
      /\[D, N\] \(dense\) or \[D, H, W, C\]/,
    );
    expect(() => poolLayer({ shape: [2, 3], data: new Float32Array(5) }, 'avg')).toThrow(
      /needs 6 values, has 5/,
    );
  });
});
