import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerTrainingKernels } from '../src/kernels';
async function main() {
  const be = process.argv[2] ?? 'wasm'; const size = Number(process.argv[3] ?? 32); const bs = Number(process.argv[4] ?? 32);
  const widths = (process.argv[5] ?? '16,32,64').split(',').map(Number);
  await tf.setBackend(be); await tf.ready(); registerTrainingKernels(be);
  const inp = tf.input({ shape: [size, size, 3] });
  let h: tf.SymbolicTensor = inp;
  widths.forEach((w, i) => {
    h = tf.layers.conv2d({ filters: w, kernelSize: 3, padding: 'same', activation: 'relu', name: `conv${i+1}` }).apply(h) as tf.SymbolicTensor;
    if (i < widths.length - 1) h = tf.layers.maxPooling2d({ poolSize: 2 }).apply(h) as tf.SymbolicTensor;
  });
  h = tf.layers.globalAveragePooling2d({}).apply(h) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: 10, name: 'logits' }).apply(h) as tf.SymbolicTensor;
  const model = tf.model({ inputs: inp, outputs: out });
  const opt = tf.train.adam(1e-3);
  const x = tf.randomUniform([bs, size, size, 3]); const y = tf.oneHot(tf.randomUniform([bs], 0, 10, 'int32'), 10);
  const step = () => { const cost = opt.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar, true); const v = cost!.dataSync()[0]; cost!.dispose(); return v; };
  step(); step();
  const n = 20; const t0 = Date.now(); for (let i = 0; i < n; i++) step(); const dt = (Date.now() - t0) / 1000;
  console.log(be, size, bs, widths.join(','), 'img/s', (n * bs / dt).toFixed(1), 'tensors', tf.memory().numTensors);
}
main();
