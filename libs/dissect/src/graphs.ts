import { buildOnnxModel } from './onnx-model';

/**
 * The ONNX graphs run by onnxruntime-node. Every graph works on a block of P (rows or columns),
 * so the work splits across worker threads; shapes are symbolic, one session serves any size.
 * (softmax(a P) is softmax.wat since issue 15: no private copies in and out.)
 */

/**
 * Y = A B for A [N, D] (normalised activations, transposed) and B [D, s] (a block of normalised
 * concept columns): the product of cos and cos_cubed. MatMul without transposition measured ~1.5x
 * faster than Gemm with transA here; the normalisation itself runs once per P (tasks.ts).
 */
export function matmulGraph(): Uint8Array {
  return buildOnnxModel({
    name: 'matmul',
    inputs: [
      { name: 'A', shape: ['N', 'D'] },
      { name: 'B', shape: ['D', 's'] },
    ],
    outputs: [{ name: 'Y', shape: ['N', 's'] }],
    nodes: [{ op: 'MatMul', inputs: ['A', 'B'], outputs: ['Y'] }],
  });
}
