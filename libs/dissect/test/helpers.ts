import { readFloatMatrix } from '@cm/core';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Matrix } from '../src';

export const VECTORS = join(__dirname, '../../../../shared/testvectors/clip-dissect/public_small');

export interface ReferenceCase {
  P: Matrix;
  Q: Matrix;
  planted: number[];
  meta: { methods: Record<string, Record<string, number>> };
  expected(method: string): Matrix;
}

export function loadReference(): ReferenceCase {
  const meta = JSON.parse(readFileSync(join(VECTORS, 'meta.json'), 'utf8')) as {
    planted_preference: number[];
    methods: Record<string, Record<string, number>>;
  };
  return {
    P: readFloatMatrix(join(VECTORS, 'clip_feats.npy'), 'P'),
    Q: readFloatMatrix(join(VECTORS, 'target_feats.npy'), 'Q'),
    planted: meta.planted_preference,
    meta,
    expected: (method) => readFloatMatrix(join(VECTORS, `${method}.npy`), method),
  };
}

export function argmaxRows(m: Matrix): number[] {
  return Array.from({ length: m.rows }, (_, n) => {
    let best = 0;
    for (let j = 1; j < m.cols; j++) if (m.data[n * m.cols + j] > m.data[n * m.cols + best]) best = j;
    return best;
  });
}

export function maxAbsDiff(a: Matrix, b: Matrix): number {
  let worst = 0;
  for (let i = 0; i < a.data.length; i++) worst = Math.max(worst, Math.abs(a.data[i] - b.data[i]));
  return worst;
}

/** Deterministic uniform [0, 1) numbers. */
export function uniform(n: number, seed: number): Float32Array {
  let x = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x / 4294967296;
  }
  return out;
}
