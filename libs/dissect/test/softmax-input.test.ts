import { mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { float32ToFloat16, writeNpy } from '@cm/core';
import {
  allocSoftmaxInput,
  computeSimilarityDetailed,
  computeSimilarityOn,
  DissectPool,
  inlineExecutor,
  topConceptsPerNeuron,
  type Matrix,
  softmaxInputFromNpy,
  type SoftmaxInput,
} from '../src';
import { argmaxRows, loadReference, maxAbsDiff } from './helpers';

/** P written into a SoftmaxInput, as float32 or as float16 (numpy's astype rounding). */
function inputOf(P: Matrix, dtype: 'float32' | 'float16', slots = 2): SoftmaxInput {
  const input = allocSoftmaxInput(P.rows, P.cols, dtype, { slots });
  const bytes = input.bytes as Uint8Array;
  if (dtype === 'float32') new Float32Array(bytes.buffer, bytes.byteOffset, P.rows * P.cols).set(P.data);
  else float32ToFloat16(P.data, new Uint16Array(bytes.buffer, bytes.byteOffset, P.rows * P.cols));
  return input;
}

/** The first `cols` columns of P (a width that is not a multiple of 8: rows padded in the memory). */
function leftColumns(P: Matrix, cols: number): Matrix {
  const data = new Float32Array(P.rows * cols);
  for (let i = 0; i < P.rows; i++) data.set(P.data.subarray(i * P.cols, i * P.cols + cols), i * cols);
  return { rows: P.rows, cols, data };
}

const ref = loadReference();
let pool: DissectPool;
beforeAll(() => {
  pool = new DissectPool({ workers: 2 });
});
afterAll(() => pool.close());

describe('P softmaxed in place (allocSoftmaxInput)', () => {
  it.each(['soft_wpmi', 'wpmi'] as const)(
    '%s: the same similarity as P as a matrix, in the calling thread and on a pool, for any width',
    async (method) => {
      for (const P of [ref.P, leftColumns(ref.P, 45)]) {
        const copied = await computeSimilarityOn(inlineExecutor, method, P, ref.Q);
        const inPlace = await computeSimilarityOn(inlineExecutor, method, inputOf(P, 'float32'), ref.Q);
        // same arithmetic on the same values: bit for bit
        expect(Array.from(inPlace.data)).toEqual(Array.from(copied.data));
        const pooledCopy = await computeSimilarityOn(pool, method, P, ref.Q);
        const pooledInPlace = await computeSimilarityOn(pool, method, inputOf(P, 'float32'), ref.Q);
        expect(Array.from(pooledInPlace.data)).toEqual(Array.from(pooledCopy.data));
      }
    },
  );

  it('serves later checkpoints (another Q) from the softmax it holds, and refuses another a', async () => {
    const input = inputOf(ref.P, 'float32');
    const first = await computeSimilarityOn(pool, 'soft_wpmi', input, ref.Q);
    const again = await computeSimilarityOn(pool, 'soft_wpmi', input, ref.Q);
    expect(Array.from(again.data)).toEqual(Array.from(first.data));
    const half: Matrix = { ...ref.Q, data: ref.Q.data.map((v) => -v) };
    const other = await computeSimilarityOn(pool, 'soft_wpmi', input, half);
    const expected = await computeSimilarityOn(pool, 'soft_wpmi', ref.P, half);
    expect(Array.from(other.data)).toEqual(Array.from(expected.data));
    // wpmi's a is 2, soft_wpmi's 10: P is gone
    await expect(computeSimilarityOn(pool, 'wpmi', input, ref.Q)).rejects.toThrow(
      /replaced by softmax\(10 P\)/,
    );
    await expect(computeSimilarityOn(pool, 'cos', input, ref.Q)).rejects.toThrow(/wpmi \/ soft_wpmi only/);
  });

  it('reports a non-finite value of P with its position, and an executor wider than the memory', async () => {
    const bad = new Float32Array(ref.P.data);
    bad[7 * ref.P.cols + 5] = Number.NaN;
    const input = inputOf({ ...ref.P, data: bad }, 'float32');
    await expect(computeSimilarityOn(pool, 'soft_wpmi', input, ref.Q)).rejects.toThrow(
      /probe scores P has a non-finite value \(NaN\) at row 7, column 5/,
    );
    const inline = inputOf({ ...ref.P, data: bad }, 'float32');
    await expect(computeSimilarityOn(inlineExecutor, 'soft_wpmi', inline, ref.Q)).rejects.toThrow(
      /non-finite value \(NaN\) at row 7, column 5/,
    );
    const narrow = inputOf(ref.P, 'float32', 1);
    await expect(computeSimilarityOn(pool, 'soft_wpmi', narrow, ref.Q)).rejects.toThrow(/room for 1 workers/);
  });
});

describe('P read from an .npy file by the softmax pass (softmaxInputFromNpy)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-softmax-input-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('gives the similarity of P as a matrix (float32: bit for bit; float16: the in-memory float16 result)', async () => {
    for (const P of [ref.P, leftColumns(ref.P, 45)]) {
      const f32 = join(dir, `p32-${P.cols}.npy`);
      const f16 = join(dir, `p16-${P.cols}.npy`);
      writeNpy(f32, P.data, [P.rows, P.cols]);
      writeNpy(f16, float32ToFloat16(P.data), [P.rows, P.cols]);
      for (const exec of [inlineExecutor, pool]) {
        const copied = await computeSimilarityOn(exec, 'soft_wpmi', P, ref.Q);
        const fromFile = await computeSimilarityOn(
          exec,
          'soft_wpmi',
          softmaxInputFromNpy(f32, { slots: 2 }),
          ref.Q,
        );
        expect(Array.from(fromFile.data)).toEqual(Array.from(copied.data));
        const half = await computeSimilarityOn(exec, 'soft_wpmi', inputOf(P, 'float16'), ref.Q);
        const halfFile = await computeSimilarityOn(
          exec,
          'soft_wpmi',
          softmaxInputFromNpy(f16, { slots: 2 }),
          ref.Q,
        );
        expect(Array.from(halfFile.data)).toEqual(Array.from(half.data));
      }
    }
  });

  it('refuses a truncated file, another dtype or shape, naming the file', () => {
    const short = join(dir, 'short.npy');
    writeNpy(short, ref.P.data, [ref.P.rows, ref.P.cols]);
    truncateSync(short, 1000);
    expect(() => softmaxInputFromNpy(short)).toThrow(/short\.npy: not a readable \.npy file: truncated data/);
    const ints = join(dir, 'ints.npy');
    writeNpy(ints, new Int32Array(12), [3, 4]);
    expect(() => softmaxInputFromNpy(ints)).toThrow(
      /ints\.npy: probe scores P must be a 2-D float32 or float16 array, got int32/,
    );
    const flat = join(dir, 'flat.npy');
    writeNpy(flat, new Float32Array(12), [12]);
    expect(() => softmaxInputFromNpy(flat)).toThrow(/got float32 \(12\)/);
  });
});

describe('float16 P', () => {
  it.each(['soft_wpmi', 'wpmi'] as const)(
    '%s: the same labels (top-1; top-5 as sets) as float32 P and as the reference',
    async (method) => {
      const f32 = await computeSimilarityDetailed(method, ref.P, ref.Q, undefined, pool);
      for (const P of [ref.P, leftColumns(ref.P, 45)]) {
        const wide = await computeSimilarityDetailed(method, P, ref.Q, undefined, pool);
        const half = await computeSimilarityDetailed(method, inputOf(P, 'float16'), ref.Q, undefined, pool);
        expect(argmaxRows(half.sim)).toEqual(argmaxRows(wide.sim));
        // the top 5 hold the same concepts (near-equal ones may trade places)
        const top5 = (r: typeof half) => {
          const { indices } = topConceptsPerNeuron(r.sim, 5, r.likelihoodOffset);
          return Array.from({ length: r.sim.rows }, (_, n) =>
            Array.from(indices.subarray(n * 5, n * 5 + 5)).sort(),
          );
        };
        expect(top5(half)).toEqual(top5(wide));
        // float16 rounds P by up to 2^-12 relatively (2.4e-4 absolute here): the similarity moves
        // by far less than the gap between a neuron's best and second concept
        // (measured: 1.2e-2 soft_wpmi, 1.2e-3 wpmi; docs/dissect.md)
        expect(maxAbsDiff(half.sim, wide.sim)).toBeLessThan(0.05);
      }
      expect(argmaxRows(f32.sim)).toEqual(argmaxRows(ref.expected(method)));
    },
  );

  it('in the calling thread too', async () => {
    const half = await computeSimilarityOn(inlineExecutor, 'soft_wpmi', inputOf(ref.P, 'float16'), ref.Q);
    expect(argmaxRows(half)).toEqual(argmaxRows(ref.expected('soft_wpmi')));
  });
});

describe('the SIMD softmax kernel (softmax.wat)', () => {
  it('matches a float64 softmax to float32 rounding, for any width, and finds the first row with NaN / Inf', async () => {
    const { instantiateSoftmax } = await import('../src/wasm-kernel');
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 2, shared: true });
    const { softmaxRows } = await instantiateSoftmax(memory);
    for (const cols of [1, 3, 8, 45, 1001]) {
      const rows = 5;
      const stride = Math.ceil(cols / 8) * 8;
      const x = new Float32Array(memory.buffer, 64, rows * stride);
      const values = Array.from(
        { length: rows * stride },
        (_, i) => Math.sin(i * 1.7) * (i % 7 === 0 ? 12 : 0.4),
      );
      x.set(values);
      expect(softmaxRows(64, rows, cols, stride * 4, 10)).toBe(-1);
      for (let r = 0; r < rows; r++) {
        const row = values.slice(r * stride, r * stride + cols).map((v) => 10 * Math.fround(v));
        const max = Math.max(...row);
        const sum = row.reduce((a, v) => a + Math.exp(v - max), 0);
        for (let j = 0; j < cols; j++) {
          const want = Math.exp(row[j] - max) / sum;
          // relative: 4 float32 ulps, plus the float32 rounding of the argument a x - m (as
          // onnxruntime and the reference compute it); or below float32's normal range (-> 0)
          const argument = (Math.abs(row[j]) + Math.abs(max) + Math.abs(row[j] - max)) * 2 ** -24;
          expect(Math.abs(x[r * stride + j] - want)).toBeLessThanOrEqual(
            Math.max((4 * 2 ** -23 + argument) * want, 1e-37),
          );
        }
      }
      x.set(values);
      x[3 * stride + cols - 1] = cols % 2 ? Number.POSITIVE_INFINITY : Number.NaN;
      expect(softmaxRows(64, rows, cols, stride * 4, 10)).toBe(3);
    }
  });
});

describe('float16 P kept as float16 (keepFloat16: softmax rebuilt per block of concepts)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-softmax-half-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** P with several blocks of 256 concepts, the last one partial and not a multiple of 8 wide. */
  function randomP(rows: number, cols: number, seed: number): Matrix {
    let x = seed;
    const next = (): number => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32;
    return { rows, cols, data: Float32Array.from({ length: rows * cols }, () => 0.2 + 0.1 * (next() - 0.5)) };
  }
  function halfInput(P: Matrix, keepFloat16: boolean): SoftmaxInput {
    const input = allocSoftmaxInput(P.rows, P.cols, 'float16', { slots: 2, keepFloat16 });
    const bytes = input.bytes as Uint8Array;
    float32ToFloat16(P.data, new Uint16Array(bytes.buffer, bytes.byteOffset, P.rows * P.cols));
    return input;
  }

  it.each(['soft_wpmi', 'wpmi'] as const)(
    '%s: bit for bit the similarity of the widened float16 P, on a pool and in the calling thread, from memory and from a file',
    async (method) => {
      const big = randomP(ref.P.rows, 557, 7);
      for (const P of [ref.P, leftColumns(ref.P, 45), big]) {
        const widened = await computeSimilarityOn(pool, method, halfInput(P, false), ref.Q);
        const kept = halfInput(P, true);
        expect(kept.keepFloat16).toBe(true);
        const onPool = await computeSimilarityOn(pool, method, kept, ref.Q);
        expect(Array.from(onPool.data)).toEqual(Array.from(widened.data));
        // a later checkpoint reuses the per-image statistics
        const again = await computeSimilarityOn(pool, method, kept, ref.Q);
        expect(Array.from(again.data)).toEqual(Array.from(widened.data));
        const inline = await computeSimilarityOn(inlineExecutor, method, halfInput(P, true), ref.Q);
        expect(Array.from(inline.data)).toEqual(Array.from(widened.data));
        const file = join(dir, `p16-${P.cols}.npy`);
        writeNpy(file, float32ToFloat16(P.data), [P.rows, P.cols]);
        const fromFile = softmaxInputFromNpy(file, { slots: 2, keepFloat16: true });
        expect(fromFile.keepFloat16).toBe(true);
        const read = await computeSimilarityOn(pool, method, fromFile, ref.Q);
        expect(Array.from(read.data)).toEqual(Array.from(widened.data));
      }
    },
  );

  it('reports a non-finite value with its position, and holds P in half the bytes', async () => {
    const bad = new Float32Array(ref.P.data);
    bad[9 * ref.P.cols + 4] = Number.POSITIVE_INFINITY;
    const input = halfInput({ ...ref.P, data: bad }, true);
    await expect(computeSimilarityOn(pool, 'soft_wpmi', input, ref.Q)).rejects.toThrow(
      /probe scores P has a non-finite value \(Infinity\) at row 9, column 4/,
    );
    const D = 2000;
    const S = 20_000;
    const kept = allocSoftmaxInput(D, S, 'float16', { slots: 2, keepFloat16: true });
    const widened = allocSoftmaxInput(D, S, 'float16', { slots: 2 });
    const bytesOf = (i: SoftmaxInput) => (i.bytes as Uint8Array).buffer.byteLength;
    // P float16 + one block of 256 concepts per worker, against a float32 softmax of P
    expect(bytesOf(kept)).toBeLessThan(D * S * 2 + 2 * D * 256 * 4 + 2 ** 20);
    expect(bytesOf(widened)).toBeGreaterThanOrEqual(D * S * 4);
  });
});
