import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerTrainingKernels } from '../src/kernels';

type Pad = 'same' | 'valid';
interface Case {
  x: [number, number, number, number];
  f: [number, number, number, number];
  strides: number | [number, number];
  pad: Pad;
}

// Strides and paddings that exercise the crop (valid + stride) and the asymmetric padding branches.
const CASES: Case[] = [
  { x: [3, 9, 9, 3], f: [3, 3, 3, 5], strides: 1, pad: 'same' },
  { x: [3, 9, 9, 3], f: [3, 3, 3, 5], strides: 2, pad: 'same' },
  { x: [2, 10, 10, 3], f: [3, 3, 3, 4], strides: 2, pad: 'valid' },
  { x: [2, 11, 11, 2], f: [3, 3, 2, 4], strides: 3, pad: 'valid' },
  { x: [2, 8, 8, 4], f: [1, 1, 4, 6], strides: 2, pad: 'valid' },
  { x: [2, 8, 7, 4], f: [3, 2, 4, 6], strides: [2, 1], pad: 'same' },
  { x: [1, 6, 6, 8], f: [5, 5, 8, 2], strides: 1, pad: 'same' },
];

function random(shape: number[], seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

async function gradients(
  backend: string,
  c: Case,
  xs: Float32Array,
  ws: Float32Array,
): Promise<[Float32Array, Float32Array]> {
  await tf.setBackend(backend);
  const x = tf.tensor4d(xs, c.x);
  const w = tf.tensor4d(ws, c.f);
  const loss = (a: tf.Tensor, b: tf.Tensor) =>
    tf
      .conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad)
      .square()
      .sum();
  const [gx, gw] = tf.grads(loss)([x, w]);
  const out: [Float32Array, Float32Array] = [
    (await gx.data()) as Float32Array,
    (await gw.data()) as Float32Array,
  ];
  tf.dispose([x, w, gx, gw]);
  return out;
}

function maxRelativeError(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  return m;
}

describe('wasm training kernels', () => {
  beforeAll(async () => {
    tf.enableProdMode();
    await tf.setBackend('wasm');
    await tf.ready();
  });

  it('the stock wasm backend lacks Conv2DBackpropFilter and we register it', () => {
    const registered = registerTrainingKernels('wasm');
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
    // Idempotent: a second call registers nothing.
    expect(registerTrainingKernels('wasm')).toEqual([]);
    expect(registered.concat(['Conv2DBackpropFilter']).includes('Conv2DBackpropFilter')).toBe(true);
  });

  it.each(CASES.map((c) => [`${c.x.join('x')} * ${c.f.join('x')} stride ${c.strides} ${c.pad}`, c] as const))(
    'conv2d gradients on wasm match the cpu backend: %s',
    async (_name, c) => {
      const xs = random(c.x, 11);
      const ws = random(c.f, 23);
      const [wasmDx, wasmDw] = await gradients('wasm', c, xs, ws);
      const [cpuDx, cpuDw] = await gradients('cpu', c, xs, ws);
      expect(maxRelativeError(wasmDw, cpuDw)).toBeLessThan(1e-4);
      expect(maxRelativeError(wasmDx, cpuDx)).toBeLessThan(1e-4);
    },
  );

  it('frees its intermediates: only the output stays on the backend', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as { numDataIds(): number };
    for (const c of CASES) {
      const x = tf.tensor4d(random(c.x, 1), c.x);
      const conv = tf.conv2d(x, tf.zeros(c.f) as tf.Tensor4D, c.strides, c.pad);
      const dy = tf.onesLike(conv);
      const ids = backend.numDataIds();
      const dw = tf
        .engine()
        .runKernel(
          'Conv2DBackpropFilter',
          { x, dy },
          { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.f },
        ) as tf.Tensor;
      expect(dw.shape).toEqual(c.f);
      expect(backend.numDataIds()).toBe(ids + 1);
      tf.dispose([x, conv, dy, dw]);
    }
  });
});
