import { CmError } from '@cm/core';
import type { LayerTensor, Matrix, PoolingMode } from './types';

/**
 * A layer's raw output as D x N activations (method.md): a dense layer [D, N] is used as is; a
 * conv layer [D, H, W, C] (NHWC) is pooled over H and W, by mean ("avg") or maximum ("max").
 */
export function poolLayer(t: LayerTensor, mode: PoolingMode = 'avg'): Matrix {
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
  if (shape.length === 2) return { rows: shape[0], cols: shape[1], data: t.data };
  if (shape.length !== 4) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `layer tensor must be [D, N] (dense) or [D, H, W, C] (conv, NHWC), got [${shape.join(', ')}]`,
      { context: { shape } },
    );
  }
  const [D, H, W, C] = shape;
  const HW = H * W;
  const out = new Float32Array(D * C);
  const acc = new Float64Array(C);
  for (let d = 0; d < D; d++) {
    const base = d * HW * C;
    if (mode === 'avg') {
      acc.fill(0);
      for (let s = 0; s < HW; s++) for (let c = 0; c < C; c++) acc[c] += t.data[base + s * C + c];
      for (let c = 0; c < C; c++) out[d * C + c] = acc[c] / HW;
    } else {
      acc.fill(-Infinity);
      for (let s = 0; s < HW; s++)
        for (let c = 0; c < C; c++) if (t.data[base + s * C + c] > acc[c]) acc[c] = t.data[base + s * C + c];
      for (let c = 0; c < C; c++) out[d * C + c] = acc[c];
    }
  }
  return { rows: D, cols: C, data: out };
}
