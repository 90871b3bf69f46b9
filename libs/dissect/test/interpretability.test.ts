/**
 * Interpretability and labels when (soft_)wpmi saturate: labelled 0/1 probe scores (the built-in
 * world's mode) make one neuron's likelihood exceed the rest of its layer by hundreds of nats, so
 * its score is ln N exactly and no longer separates neurons or concepts. See docs/dissect.md,
 * "Calibration".
 */
import {
  calibrateLikelihoodNull,
  computeSimilarityOn,
  DissectPool,
  dissectLayer,
  fitProjection,
  inlineExecutor,
  likelihoodNullOn,
  nullActivations,
  quantile,
  tieTolerance,
  topConceptsPerNeuron,
  TIE_TOLERANCE,
  type ConceptSpace,
  type Matrix,
} from '../src';
import { similarityDetailedOn } from '../src/similarity';
import { resolveParams } from '../src/params';
import { mulberry32 } from '../src/random';
import { argmaxRows, loadReference } from './helpers';

const D = 400;
const FACTORS = 3;
const VALUES = 4;
/** Concept 0 ("B") co-occurs with concept 1 ("A"): on 80% of A's images, 5% of the others. */
const S = 1 + FACTORS * VALUES;

/**
 * A labelled world: every image has one value of each of 3 factors (concepts 1..12, ~25% each) and
 * concept 0 as described above. P is 0/1, as in labelled mode.
 */
function labelledWorld(): ConceptSpace {
  const random = mulberry32(2024);
  const data = new Float32Array(D * S);
  for (let i = 0; i < D; i++) {
    for (let f = 0; f < FACTORS; f++) data[i * S + 1 + f * VALUES + Math.floor(random() * VALUES)] = 1;
    data[i * S] = random() < (data[i * S + 1] === 1 ? 0.8 : 0.05) ? 1 : 0;
  }
  const E: Matrix = {
    rows: S,
    cols: S,
    data: new Float32Array(S * S).map((_, k) => (k % (S + 1) === 0 ? 1 : 0)),
  };
  return {
    concepts: Array.from({ length: S }, (_, j) => (j === 0 ? 'B' : `c${j}`)),
    categories: Array.from({ length: S }, (_, j) =>
      j === 0 ? 'extra' : `factor${Math.floor((j - 1) / VALUES)}`,
    ),
    probeScores: { rows: D, cols: S, data },
    conceptEmbeddings: E,
    projection: fitProjection(E),
  };
}

const SELECTIVE = [1, 2, 3, 5, 6, 9, 11, 12];
const RANDOM = 24;

/** Neurons 0..7: indicator of their concept plus noise (sd 0.3); neurons 8..31: unrelated (standard normal). */
function mixedLayer(space: ConceptSpace): Matrix {
  const P = space.probeScores;
  const N = SELECTIVE.length + RANDOM;
  const noise = nullActivations(D, N, 77);
  const data = Float32Array.from(noise.data);
  for (let n = 0; n < SELECTIVE.length; n++)
    for (let i = 0; i < D; i++) data[i * N + n] = P.data[i * S + SELECTIVE[n]] + 0.3 * noise.data[i * N + n];
  return { rows: D, cols: N, data };
}

describe('saturated (soft_)wpmi on labelled probe scores', () => {
  const space = labelledWorld();
  const Q = mixedLayer(space);
  const N = Q.cols;

  it('the scores saturate at ln N, and so does the old calibration (99% of null top scores): a score threshold cannot work here', async () => {
    const sim = await computeSimilarityOn(inlineExecutor, 'soft_wpmi', space.probeScores, Q);
    for (let n = 0; n < SELECTIVE.length; n++) {
      expect(Math.abs(sim.data[n * S + SELECTIVE[n]] - Math.log(N))).toBeLessThanOrEqual(
        tieTolerance(Math.log(N)),
      );
    }
    const tops: number[] = [];
    for (let round = 0; round < 10; round++) {
      const nullSim = await computeSimilarityOn(
        inlineExecutor,
        'soft_wpmi',
        space.probeScores,
        nullActivations(D, N, 900 + round),
      );
      for (let k = 0; k < N; k++) tops.push(Math.max(...nullSim.data.subarray(k * S, (k + 1) * S)));
    }
    expect(quantile(tops, 0.99)).toBeGreaterThan(Math.log(N) - 1e-3);
  });

  it.each(['soft_wpmi', 'wpmi'] as const)(
    '%s: selective neurons are interpretable with their own concept, unrelated ones are not',
    async (method) => {
      const { labels, metrics } = await dissectLayer(space, Q, { method });
      for (let n = 0; n < SELECTIVE.length; n++) {
        expect(labels[n].conceptIndex).toBe(SELECTIVE[n]);
        expect(labels[n].interpretable).toBe(true);
      }
      expect(labels.slice(SELECTIVE.length).filter((l) => l.interpretable).length).toBeLessThanOrEqual(1);
      expect(metrics.thresholdKind).toBe('likelihood-margin');
      expect(metrics.threshold).toBe((await calibrateLikelihoodNull(space, method)).margin);
      expect(metrics.threshold).toBeGreaterThan(0);
    },
  );

  it.each(['soft_wpmi', 'wpmi'] as const)(
    '%s: layers of unrelated neurons are interpretable for <= 5%% of their neurons',
    async (method) => {
      let interpretable = 0;
      let total = 0;
      for (const [width, seed] of [
        [64, 1],
        [64, 2],
        [64, 3],
        [16, 4],
        [200, 5],
      ]) {
        const { labels } = await dissectLayer(space, nullActivations(D, width, 31337 + seed), { method });
        interpretable += labels.filter((l) => l.interpretable).length;
        total += width;
      }
      expect(interpretable / total).toBeLessThanOrEqual(0.05);
    },
  );

  it('a given null ("untrained" neurons that already sort images by concept) raises the bar: weak detectors fail it, strong ones pass', async () => {
    const P = space.probeScores;
    // Null neurons: weak detectors of the first factor's values (indicator + noise sd 2), as
    // untrained convolutions are of a world's background colours.
    const M = 256;
    const noise = nullActivations(D, M, 4242);
    const nullQ: Matrix = { rows: D, cols: M, data: Float32Array.from(noise.data) };
    for (let k = 0; k < M; k++)
      for (let i = 0; i < D; i++)
        nullQ.data[i * M + k] = P.data[i * S + 1 + (k % VALUES)] + 2 * noise.data[i * M + k];
    // The layer: a weak detector of c1 (like the null's), and a strong detector of c2.
    const layerNoise = nullActivations(D, 2, 99);
    const layer: Matrix = { rows: D, cols: 2, data: new Float32Array(D * 2) };
    for (let i = 0; i < D; i++) {
      layer.data[i * 2] = P.data[i * S + 1] + 2 * layerNoise.data[i * 2];
      layer.data[i * 2 + 1] = P.data[i * S + 2] + 0.1 * layerNoise.data[i * 2 + 1];
    }
    const iid = await dissectLayer(space, layer);
    expect(iid.labels.map((l) => [l.conceptIndex, l.interpretable])).toEqual([
      [1, true],
      [2, true],
    ]);
    const given = await dissectLayer(space, layer, { nullActivations: nullQ });
    expect(given.labels.map((l) => [l.conceptIndex, l.interpretable])).toEqual([
      [1, false],
      [2, true],
    ]);
    const nullOf = await likelihoodNullOn(inlineExecutor, space, 'soft_wpmi', undefined, {
      nullActivations: nullQ,
    });
    expect(nullOf.samples).toBe(M);
    expect(nullOf.thresholds[1]).toBeGreaterThan((await calibrateLikelihoodNull(space)).thresholds[1]);
    expect(() =>
      likelihoodNullOn(inlineExecutor, space, 'soft_wpmi', undefined, {
        nullActivations: { rows: D - 1, cols: 4, data: new Float32Array((D - 1) * 4) },
      }),
    ).toThrow(/null activations must be 400 probe images/);
  });

  it('a neuron that is best for two concepts gets the one its own likelihood prefers, not the float rounding of ln N', async () => {
    // neuron 0 is selective for A = concept 1; B = concept 0 shows on 80% of A's images, so neuron 0
    // also dominates the layer on B: both scores are ln N, B has the lower index
    const result = await similarityDetailedOn(
      inlineExecutor,
      resolveParams('soft_wpmi'),
      space.probeScores,
      Q,
    );
    const sim = result.sim.data;
    const lambda = result.likelihood!.lambda;
    const logp = result.likelihood!.logp;
    expect(Math.abs(sim[0] - sim[1])).toBeLessThanOrEqual(tieTolerance(sim[1]));
    expect(sim[1] + lambda * logp[1]).toBeGreaterThan(sim[0] + lambda * logp[0] + 10);
    const { labels } = await dissectLayer(space, Q);
    expect(labels[0].concept).toBe('c1');
    expect(labels[0].topConcepts.slice(0, 2)).toEqual(['c1', 'B']);
  });

  it('DissectPool and the calling thread agree on the null, the labels and the interpretable neurons', async () => {
    // a copy of P: the calibration cache is per P array, so the pool computes its own null
    const copy: ConceptSpace = {
      ...space,
      probeScores: { ...space.probeScores, data: Float32Array.from(space.probeScores.data) },
    };
    const pool = new DissectPool({ workers: 2 });
    try {
      const [inline, pooled] = await Promise.all([
        likelihoodNullOn(inlineExecutor, space),
        likelihoodNullOn(pool, copy),
      ]);
      expect(pooled).not.toBe(inline);
      for (let j = 0; j < S; j++)
        expect(Math.abs(pooled.thresholds[j] - inline.thresholds[j])).toBeLessThanOrEqual(
          1e-4 * Math.max(1, inline.sd[j]),
        );
      const a = await dissectLayer(space, Q);
      const b = await pool.dissect(copy, Q);
      expect(Array.from(b.top1)).toEqual(Array.from(a.top1));
      expect(b.labels.map((l) => l.interpretable)).toEqual(a.labels.map((l) => l.interpretable));
      expect(Math.abs(b.metrics.threshold - a.metrics.threshold)).toBeLessThanOrEqual(1e-4);
    } finally {
      await pool.close();
    }
  });
});

describe('tie-break of top scores by the neuron likelihood', () => {
  it('reorders only scores within the tolerance of the maximum, by L = sim + offset, and keeps the rest', () => {
    const up = Math.fround(2.0794415);
    const down = Math.fround(up - 2 ** -22); // one float32 ulp below
    // neuron 0: concepts 0 and 2 tie (0 is one ulp higher); L prefers 2. neuron 1: concept 1 leads by 1e-3 (no tie); L prefers 3.
    const sim: Matrix = {
      rows: 2,
      cols: 4,
      data: Float32Array.from([up, 1, down, 0.5, 0.2, up, 0.1, up - 1e-3]),
    };
    const offset = Float64Array.from([-300, -100, -200, 0]);
    expect(Array.from(topConceptsPerNeuron(sim, 3).indices)).toEqual([0, 2, 1, 1, 3, 0]);
    const { indices, scores } = topConceptsPerNeuron(sim, 3, offset);
    expect(Array.from(indices)).toEqual([2, 0, 1, 1, 3, 0]);
    expect(scores[0]).toBe(down); // the score reported is the concept's own (reference) score
    // top-1 only: the tie is still found (scan of the row)
    expect(Array.from(topConceptsPerNeuron(sim, 1, offset).indices)).toEqual([2, 1]);
    // L equal too (concept 0's offset cancels its one-ulp lead): lower index first
    expect(Array.from(topConceptsPerNeuron(sim, 2, Float64Array.from([down - up, 0, 0, 0])).indices)).toEqual(
      [0, 2, 1, 3],
    );
    expect(TIE_TOLERANCE).toBe(1e-5);
  });
});

describe('the reference vectors keep their labels', () => {
  const ref = loadReference();
  const RS = ref.P.cols;
  const E: Matrix = {
    rows: RS,
    cols: RS,
    data: new Float32Array(RS * RS).map((_, k) => (k % (RS + 1) === 0 ? 1 : 0)),
  };
  const space: ConceptSpace = {
    concepts: Array.from({ length: RS }, (_, j) => `c${j}`),
    categories: Array.from({ length: RS }, () => 'x'),
    probeScores: ref.P,
    conceptEmbeddings: E,
    projection: fitProjection(E),
  };

  it.each(['soft_wpmi', 'wpmi'] as const)(
    '%s: no reference top-2 is within the tie tolerance, so every label is the reference argmax',
    async (method) => {
      const expected = ref.expected(method);
      for (let n = 0; n < expected.rows; n++) {
        const row = Array.from(expected.data.subarray(n * RS, (n + 1) * RS)).sort((x, y) => y - x);
        expect(row[0] - row[1]).toBeGreaterThan(tieTolerance(row[0]));
      }
      const { labels } = await dissectLayer(space, ref.Q, { method });
      expect(labels.map((l) => l.conceptIndex)).toEqual(argmaxRows(expected));
    },
  );
});
