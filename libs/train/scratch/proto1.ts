import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerTrainingKernels } from '/work/main/libs/train/src/kernels';
async function main() {
  await tf.setBackend('wasm'); await tf.ready();
  console.log(registerTrainingKernels('wasm'));
  const cases = [
    { x: [4, 9, 9, 3], f: [3, 3, 3, 5], s: 1, p: 'same' },
    { x: [4, 9, 9, 3], f: [3, 3, 3, 5], s: 2, p: 'same' },
    { x: [4, 10, 10, 3], f: [3, 3, 3, 5], s: 2, p: 'valid' },
    { x: [2, 8, 8, 4], f: [1, 1, 4, 6], s: 2, p: 'valid' },
    { x: [2, 8, 7, 4], f: [3, 2, 4, 6], s: [2,1], p: 'same' },
  ];
  for (const c of cases) {
    const xs = tf.randomNormal(c.x as any, 0, 1, 'float32', 1); const ws = tf.randomNormal(c.f as any, 0, 1, 'float32', 2);
    const xa = await xs.data(); const wa = await ws.data();
    const g = async () => { const x = tf.tensor4d(xa, c.x as any); const w = tf.tensor4d(wa, c.f as any);
      const [gx, gw] = tf.grads((a: tf.Tensor4D, b: tf.Tensor4D) => tf.conv2d(a, b, c.s as any, c.p as any).square().sum())([x, w]);
      return [await gx.data(), await gw.data()]; };
    const [wx, ww] = await g();
    await tf.setBackend('cpu'); const [cx, cw] = await g(); await tf.setBackend('wasm');
    let m = 0; for (let i = 0; i < cw.length; i++) m = Math.max(m, Math.abs(cw[i] - ww[i]) / (1 + Math.abs(cw[i])));
    console.log(JSON.stringify(c), 'maxrel', m, ww.length, cw.length);
  }
}
main();
