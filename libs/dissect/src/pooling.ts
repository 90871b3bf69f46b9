import { CmError } from '@cm/core';
import type { LayerTensor, Matrix, PoolingMode } from './types';

export interface PoolOptions {
  /**
   * Put the D x N result on a SharedArrayBuffer of its own, where a DissectPool's workers read it
   * in place (no second copy by `toShared`). A dense [D, N] layer is then copied there, unless it
   * is on a SharedArrayBuffer of its own already (otherwise it is returned as is). The concept engine pools this way, so that the raw tensor can go once
   * the layer is pooled.
   */
  shared?: boolean;
}

/**
 * A layer's raw output as D x N activations (method.md): a dense layer [D, N] is used as is; a
 * conv layer [D, H, W, C] (NHWC) is pooled over H and W, by mean ("avg") or maximum ("max").
 * Means are summed in float64 in spatial order and divided by H W (so any caller gets the same
 * float32 bits).
 */
export function poolLayer(t: LayerTensor, mode: PoolingMode = 'avg', opts: PoolOptions = {}): Matrix {
  const shape = t.shape;
  const count = shape.reduce((a, n) => a * n, 1);
  if (shape.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new CmError('INVALID_ARGUMENT', `layer tensor has a bad shape [${shape.join(', ')}]`, {
      context: { shape },
    });
  }
  if (t.data.length !== count) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `layer tensor of shape [${shape.join(', ')}] needs ${count} values, has ${t.data.length}`,
      { context: { shape, length: t.data.length } },
    );
  }
  if (mode !== 'avg' && mode !== 'max')
    throw new CmError('INVALID_ARGUMENT', `unknown pooling mode ${String(mode)} (avg or max)`, {
      context: { mode },
    });
  const alloc = (n: number): Float32Array =>
    opts.shared ? new Float32Array(new SharedArrayBuffer(n * 4)) : new Float32Array(n);
  if (shape.length === 2) {
    if (!opts.shared || isWholeShared(t.data)) return { rows: shape[0], cols: shape[1], data: t.data };
    const data = alloc(count);
    data.set(t.data);
    return { rows: shape[0], cols: shape[1], data };
  }
  if (shape.length !== 4) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `layer tensor must be [D, N] (dense) or [D, H, W, C] (conv, NHWC), got [${shape.join(', ')}]`,
      { context: { shape } },
    );
  }
  const [D, H, W, C] = shape;
  const out = alloc(D * C);
  if (mode === 'avg') averageOver(t.data, out, D, H * W, C);
  else maximumOver(t.data, out, D, H * W, C);
  return { rows: D, cols: C, data: out };
}

/** out[d, c] = (sum over s of x[d, s, c], in float64) / hw: monomorphic loops on local variables (the hot part of a raw checkpoint). */
function averageOver(x: Float32Array, out: Float32Array, D: number, hw: number, C: number): void {
  const acc = new Float64Array(C);
  for (let d = 0; d < D; d++) {
    const base = d * hw * C;
    for (let c = 0; c < C; c++) acc[c] = 0 + x[base + c]; // 0 + : -0 sums to +0, as from a zero start
    for (let s = 1; s < hw; s++) {
      const row = base + s * C;
      for (let c = 0; c < C; c++) acc[c] += x[row + c];
    }
    const o = d * C;
    for (let c = 0; c < C; c++) out[o + c] = acc[c] / hw;
  }
}

function maximumOver(x: Float32Array, out: Float32Array, D: number, hw: number, C: number): void {
  const acc = new Float32Array(C);
  for (let d = 0; d < D; d++) {
    const base = d * hw * C;
    acc.fill(-Infinity);
    for (let s = 0; s < hw; s++) {
      const row = base + s * C;
      for (let c = 0; c < C; c++) {
        const v = x[row + c];
        if (v > acc[c]) acc[c] = v;
      }
    }
    out.set(acc, d * C);
  }
}

/** A Float32Array that is a whole SharedArrayBuffer (what `toShared` uses without a copy). */
function isWholeShared(data: Float32Array): boolean {
  return (
    data.buffer instanceof SharedArrayBuffer &&
    data.byteOffset === 0 &&
    data.byteLength === data.buffer.byteLength
  );
}
