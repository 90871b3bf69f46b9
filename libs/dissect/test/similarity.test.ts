import {
  computeSimilarity,
  computeSimilarityOn,
  DissectPool,
  inlineExecutor,
  SOFT_WPMI_DEFAULTS,
  WPMI_DEFAULTS,
  type Matrix,
  type SimilarityMethod,
} from '../src';
import { argmaxRows, loadReference, maxAbsDiff, uniform } from './helpers';

/**
 * Tolerance against the PyTorch float32 reference, in units of float32 epsilon (2^-23) times the
 * magnitude of the largest intermediate the reference rounds:
 * - cos: values <= 1, each a D-term float32 dot product whose rounding grows ~sqrt(D) eps (D = 400): 16 eps;
 * - cos_cubed: cubing triples relative rounding errors, and centring adds its own: 32 eps;
 * - (soft_)wpmi: the reference sums top_k float32 logs; the log-likelihood L reaches
 *   top_k * |log(smallest factor)| (~621 for soft_wpmi, ~451 for wpmi), and sim = L - lambda logp is
 *   a difference of two such numbers, so the reference itself is only good to ~1 ulp of L: 2 eps * |L|max.
 * This port computes in float64 (products of float32 factors, one log each), so the differences
 * measured are the reference's own rounding.
 */
const EPS32 = 2 ** -23;
const TOLERANCE: Record<Exclude<SimilarityMethod, 'rank_reorder'>, number> = {
  cos: 16 * EPS32,
  cos_cubed: 32 * EPS32,
  soft_wpmi:
    2 *
    EPS32 *
    SOFT_WPMI_DEFAULTS.topK *
    Math.abs(Math.log(1 - SOFT_WPMI_DEFAULTS.pStart + SOFT_WPMI_DEFAULTS.minProb)),
  wpmi: 2 * EPS32 * WPMI_DEFAULTS.topK * Math.abs(Math.log(WPMI_DEFAULTS.minProb)),
};

const ref = loadReference();
let pool: DissectPool;
beforeAll(() => {
  pool = new DissectPool({ workers: 2 });
});
afterAll(() => pool.close());

describe.each(['soft_wpmi', 'wpmi', 'cos', 'cos_cubed'] as const)(
  '%s reproduces the CLIP-Dissect reference vectors',
  (method) => {
    const expected = ref.expected(method);

    it('in the calling thread, to float32 precision', async () => {
      const sim = await computeSimilarityOn(inlineExecutor, method, ref.P, ref.Q);
      expect([sim.rows, sim.cols]).toEqual([expected.rows, expected.cols]);
      expect(maxAbsDiff(sim, expected)).toBeLessThanOrEqual(TOLERANCE[method]);
      expect(argmaxRows(sim)).toEqual(argmaxRows(expected));
    });

    it('on a worker pool, with the same result', async () => {
      const sim = await pool.similarity(method, ref.P, ref.Q);
      expect(maxAbsDiff(sim, expected)).toBeLessThanOrEqual(TOLERANCE[method]);
    });

    it('recovers the planted preferences as labels (where the reference does) and keeps them in the top 5', async () => {
      const sim = await computeSimilarity(method, ref.P, ref.Q);
      const ours = argmaxRows(sim);
      const theirs = argmaxRows(expected);
      const recovered = ref.planted.filter((c, n) => ours[n] === c).length;
      expect(recovered).toBe(ref.planted.filter((c, n) => theirs[n] === c).length);
      expect(recovered).toBeGreaterThanOrEqual(ref.planted.length - 1);
      for (let n = 0; n < sim.rows; n++) {
        const row = Array.from(sim.data.subarray(n * sim.cols, (n + 1) * sim.cols));
        const rank = row.filter((v) => v > row[ref.planted[n]]).length;
        expect(rank).toBeLessThan(5);
      }
    });
  },
);

it('parameters are overridable (a different a changes soft_wpmi)', async () => {
  const base = await computeSimilarity('soft_wpmi', ref.P, ref.Q);
  const other = await computeSimilarity('soft_wpmi', ref.P, ref.Q, { a: 5, topK: 50 });
  expect(maxAbsDiff(base, other)).toBeGreaterThan(1e-2);
});

it('soft_wpmi with a top_k whose product would underflow float64 still matches a direct evaluation', async () => {
  // 400 factors of >= 0.002 go below 1e-300: the kernel must split the product into segments.
  const D = 500;
  const S = 16;
  const N = 3;
  const P: Matrix = { rows: D, cols: S, data: uniform(D * S, 7) };
  const Q: Matrix = { rows: D, cols: N, data: uniform(D * N, 8) };
  const topK = 400;
  const sim = await computeSimilarityOn(inlineExecutor, 'soft_wpmi', P, Q, { topK });
  const { a, pStart, pEnd, minProb } = SOFT_WPMI_DEFAULTS;
  const L = Array.from({ length: N }, (_, k) => {
    const order = Array.from({ length: D }, (_, i) => i).sort(
      (x, y) => Q.data[y * N + k] - Q.data[x * N + k] || x - y,
    );
    return Array.from({ length: S }, (_, j) => {
      let s = 0;
      for (let r = 0; r < topK; r++) {
        const i = order[r];
        const row = Array.from(P.data.subarray(i * S, (i + 1) * S), (v) => a * v);
        const max = Math.max(...row);
        const z = row.reduce((acc, v) => acc + Math.exp(v - max), 0);
        const sm = Math.exp(row[j] - max) / z;
        const p = pStart - (r / topK) * (pStart - pEnd);
        s += Math.log(1 + p * (sm - 1) + minProb);
      }
      return s;
    });
  });
  for (let j = 0; j < S; j++) {
    const max = Math.max(...L.map((l) => l[j]));
    const logp = max + Math.log(L.reduce((acc, l) => acc + Math.exp(l[j] - max), 0)) - Math.log(N);
    for (let k = 0; k < N; k++) expect(Math.abs(sim.data[k * S + j] - (L[k][j] - logp))).toBeLessThan(5e-3);
  }
});

it('soft_wpmi at D >= 8192 (blocks of 64 concepts, likelihoodBlock) matches a direct float64 evaluation, on a pool and inline', async () => {
  const D = 9000;
  const S = 150; // two blocks of 64 and a partial one of 22
  const N = 3;
  const P: Matrix = { rows: D, cols: S, data: uniform(D * S, 11) };
  const Q: Matrix = { rows: D, cols: N, data: uniform(D * N, 12) };
  const { a, pStart, pEnd, minProb, topK, lambda } = SOFT_WPMI_DEFAULTS;
  const smRow = new Map<number, Float64Array>();
  const softmaxRow = (i: number): Float64Array => {
    let row = smRow.get(i);
    if (!row) {
      const x = Array.from(P.data.subarray(i * S, (i + 1) * S), (v) => a * v);
      const max = Math.max(...x);
      const z = x.reduce((acc, v) => acc + Math.exp(v - max), 0);
      row = Float64Array.from(x, (v) => Math.exp(v - max) / z);
      smRow.set(i, row);
    }
    return row;
  };
  const L = Array.from({ length: N }, (_, k) => {
    const order = Array.from({ length: D }, (_, i) => i).sort(
      (x, y) => Q.data[y * N + k] - Q.data[x * N + k] || x - y,
    );
    return Array.from({ length: S }, (_, j) => {
      let s = 0;
      for (let r = 0; r < topK; r++) {
        const p = pStart - (r / topK) * (pStart - pEnd);
        s += Math.log(1 + p * (softmaxRow(order[r])[j] - 1) + minProb);
      }
      return s;
    });
  });
  for (const exec of [pool, inlineExecutor]) {
    const sim = await computeSimilarityOn(exec, 'soft_wpmi', P, Q);
    for (let j = 0; j < S; j++) {
      const max = Math.max(...L.map((l) => l[j]));
      const logp = max + Math.log(L.reduce((acc, l) => acc + Math.exp(l[j] - max), 0)) - Math.log(N);
      for (let k = 0; k < N; k++)
        expect(Math.abs(sim.data[k * S + j] - (L[k][j] - lambda * logp))).toBeLessThan(1.5e-4);
    }
  }
});

describe('rank_reorder (no reference vector: properties of the port)', () => {
  it('is deterministic for a seed and the same on a pool as inline', async () => {
    const a = await computeSimilarityOn(inlineExecutor, 'rank_reorder', ref.P, ref.Q, { seed: 3 });
    const b = await computeSimilarityOn(inlineExecutor, 'rank_reorder', ref.P, ref.Q, { seed: 3 });
    const c = await pool.similarity('rank_reorder', ref.P, ref.Q, { seed: 3 });
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
    expect(Array.from(a.data)).toEqual(Array.from(c.data));
    expect([a.rows, a.cols]).toEqual([ref.Q.cols, ref.P.cols]);
  });

  it('the seed only rescales each neuron (the random baseline), never its ranking of concepts', async () => {
    const a = await computeSimilarity('rank_reorder', ref.P, ref.Q, { seed: 1 });
    const b = await computeSimilarity('rank_reorder', ref.P, ref.Q, { seed: 2 });
    expect(maxAbsDiff(a, b)).toBeGreaterThan(0);
    for (let n = 0; n < a.rows; n++) {
      const ratio = a.data[n * a.cols] / b.data[n * b.cols];
      for (let j = 0; j < a.cols; j++)
        expect(a.data[n * a.cols + j] / b.data[n * b.cols + j]).toBeCloseTo(ratio, 4);
    }
    expect(argmaxRows(a)).toEqual(argmaxRows(b));
  });

  it('scores 0 (its maximum) for a concept that ranks the top images exactly as the neuron does, and finds planted preferences', async () => {
    const D = 200;
    const S = 6;
    const P: Matrix = { rows: D, cols: S, data: uniform(D * S, 11).map((v) => 0.1 + 0.2 * v) };
    const Q: Matrix = { rows: D, cols: 1, data: uniform(D, 12) };
    for (let i = 0; i < D; i++) P.data[i * S + 4] = 0.1 + 0.2 * Q.data[i]; // concept 4 follows the neuron
    const sim = await computeSimilarity('rank_reorder', P, Q);
    expect(sim.data[4]).toBeCloseTo(0, 6);
    expect(argmaxRows(sim)).toEqual([4]);
    const recovered = argmaxRows(await computeSimilarity('rank_reorder', ref.P, ref.Q)).filter(
      (c, n) => c === ref.planted[n],
    ).length;
    expect(recovered).toBeGreaterThanOrEqual(ref.planted.length - 1);
  });
});

describe('bad input gets a clear CmError naming the problem', () => {
  const P: Matrix = { rows: 10, cols: 4, data: uniform(40, 1) };
  const Q: Matrix = { rows: 10, cols: 3, data: uniform(30, 2) };
  it('mismatched image counts', async () => {
    await expect(
      computeSimilarity('cos', P, { rows: 9, cols: 3, data: uniform(27, 3) }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/10 images .* activations have 9/),
    });
  });
  it('data length not matching the declared shape', async () => {
    await expect(computeSimilarity('cos', P, { rows: 10, cols: 3, data: uniform(20, 3) })).rejects.toThrow(
      /declared 10 x 3 but holds 20/,
    );
  });
  it('NaN and Inf, with their position', async () => {
    const bad = Float32Array.from(Q.data);
    bad[7] = NaN;
    await expect(computeSimilarity('cos', P, { ...Q, data: bad })).rejects.toThrow(
      /activations Q has a non-finite value \(NaN\) at row 2, column 1/,
    );
    const inf = Float32Array.from(P.data);
    inf[5] = Infinity;
    await expect(computeSimilarity('wpmi', { ...P, data: inf }, Q, { topK: 2 })).rejects.toThrow(
      /probe scores P has a non-finite value \(Infinity\)/,
    );
  });
  it('D smaller than top_k', async () => {
    await expect(computeSimilarity('soft_wpmi', P, Q)).rejects.toThrow(
      /top_k \(100\) exceeds the number of probe images D \(10\)/,
    );
  });
  it('unknown method and bad parameters', async () => {
    await expect(computeSimilarity('nope' as SimilarityMethod, P, Q)).rejects.toThrow(
      /unknown similarity method nope/,
    );
    await expect(computeSimilarity('wpmi', P, Q, { topK: 0 })).rejects.toThrow(
      /top_k must be a positive integer/,
    );
    await expect(computeSimilarity('cos_cubed', P, Q, { minNorm: -1 })).rejects.toThrow(
      /min_norm must be > 0/,
    );
  });
  it('empty matrices', async () => {
    await expect(
      computeSimilarity('cos', { rows: 10, cols: 0, data: new Float32Array(0) }, Q),
    ).rejects.toThrow(/at least one row and one column/);
  });
});
