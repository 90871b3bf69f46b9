import type { OnnxNode } from './onnx-model';
import { buildOnnxModel } from './onnx-model';

/**
 * The ONNX graphs run by onnxruntime-node. Every graph works on a block of P (rows or columns),
 * so the work splits across worker threads; shapes are symbolic, one session serves any size.
 */

/** Sm = softmax(a * P) over concepts, for a block of images (rows). Inputs P [d, S], a [1]. */
export function softmaxGraph(): Uint8Array {
  return buildOnnxModel({
    name: 'scaled_softmax',
    inputs: [{ name: 'P', shape: ['d', 'S'] }, { name: 'a', shape: [1] }],
    outputs: [{ name: 'Sm', shape: ['d', 'S'] }],
    nodes: [
      { op: 'Mul', inputs: ['P', 'a'], outputs: ['aP'] },
      { op: 'Softmax', inputs: ['aP'], outputs: ['Sm'], attributes: [{ name: 'axis', i: 1 }] },
    ],
  });
}

/** Normalise X along the image axis as cos or cos_cubed prescribe; output `${x}_n`. */
function normalisedColumns(x: string, cubed: boolean, axis: number): OnnxNode[] {
  if (!cubed) {
    return [
      { op: 'ReduceL2', inputs: [x], outputs: [`${x}_norm`], attributes: [{ name: 'axes', ints: [axis] }, { name: 'keepdims', i: 1 }] },
      { op: 'Div', inputs: [x, `${x}_norm`], outputs: [`${x}_n`] },
    ];
  }
  return [
    { op: 'ReduceMean', inputs: [x], outputs: [`${x}_mean`], attributes: [{ name: 'axes', ints: [axis] }, { name: 'keepdims', i: 1 }] },
    { op: 'Sub', inputs: [x, `${x}_mean`], outputs: [`${x}_c`] },
    { op: 'Mul', inputs: [`${x}_c`, `${x}_c`], outputs: [`${x}_c2`] },
    { op: 'Mul', inputs: [`${x}_c2`, `${x}_c`], outputs: [`${x}_c3`] },
    { op: 'ReduceL2', inputs: [`${x}_c3`], outputs: [`${x}_norm0`], attributes: [{ name: 'axes', ints: [axis] }, { name: 'keepdims', i: 1 }] },
    { op: 'Max', inputs: [`${x}_norm0`, 'min_norm'], outputs: [`${x}_norm`] },
    { op: 'Div', inputs: [`${x}_c3`, `${x}_norm`], outputs: [`${x}_n`] },
  ];
}

/**
 * cos: sim = normalise(Q)^T normalise(P); cos_cubed: the same after centring and cubing each
 * column (norms clipped below at min_norm). Inputs Qt [N, D] (Q transposed: MatMul without
 * transposition measured ~1.5x faster than Gemm with transA), P [D, s] (a block of concepts),
 * min_norm [1] for cos_cubed. Output [N, s].
 */
export function cosineGraph(cubed: boolean): Uint8Array {
  return buildOnnxModel({
    name: cubed ? 'cos_cubed' : 'cos',
    inputs: [
      { name: 'Q', shape: ['N', 'D'] },
      { name: 'P', shape: ['D', 's'] },
      ...(cubed ? [{ name: 'min_norm', shape: [1] }] : []),
    ],
    outputs: [{ name: 'sim', shape: ['N', 's'] }],
    nodes: [
      ...normalisedColumns('Q', cubed, 1),
      ...normalisedColumns('P', cubed, 0),
      { op: 'MatMul', inputs: ['Q_n', 'P_n'], outputs: ['sim'] },
    ],
  });
}
