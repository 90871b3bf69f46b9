import * as tf from '@tensorflow/tfjs';
import { perturb } from '../src/adversarial';
import { applyMasks, fullMasks, pruneMasks, prunableWeights, sparsity } from '../src/lottery';
import { buildSmallCnn } from '../src/models';
import { finetuneModel } from '../src/paradigms';
import { useTrainingBackend } from './setup';

beforeAll(useTrainingBackend);

describe('lottery ticket masks', () => {
  it('prunes the smallest magnitudes per layer, the logits at half rate, and keeps pruned weights at zero', () => {
    const { model } = buildSmallCnn([32, 32, 3], 4, [4, 8]);
    const masks = fullMasks(model);
    expect(sparsity(masks)).toBe(0);
    const next = pruneMasks(model, masks, 0.5);
    for (const w of prunableWeights(model)) {
      const m = next.get(w.originalName)!.dataSync();
      const kept = Array.from(m).reduce((a, b) => a + b, 0) / m.length;
      expect(kept).toBeCloseTo(w.originalName.startsWith('logits') ? 0.75 : 0.5, 1);
      // Every kept weight is at least as large as every pruned one.
      const v = w.read().abs().dataSync();
      let minKept = Infinity;
      let maxPruned = 0;
      v.forEach((x, i) => (m[i] ? (minKept = Math.min(minKept, x)) : (maxPruned = Math.max(maxPruned, x))));
      expect(minKept).toBeGreaterThanOrEqual(maxPruned);
    }
    const s1 = sparsity(next);
    const second = pruneMasks(model, next, 0.5);
    expect(sparsity(second)).toBeGreaterThan(s1);
    applyMasks(model, second);
    for (const w of prunableWeights(model)) {
      const m = second.get(w.originalName)!.dataSync();
      w.read()
        .dataSync()
        .forEach((x, i) => {
          if (!m[i]) expect(Math.abs(x)).toBe(0);
        });
    }
  });
});

describe('adversarial examples', () => {
  it('PGD and FGSM stay in the L-inf ball and in [0, 1], and raise the loss', () => {
    const { model } = buildSmallCnn([32, 32, 3], 3, [4, 8]);
    const x = tf.randomUniform([4, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const y = tf.oneHot(tf.tensor1d([0, 1, 2, 0], 'int32'), 3) as tf.Tensor2D;
    const loss = (xa: tf.Tensor) =>
      tf.losses.softmaxCrossEntropy(y, model.predict(xa) as tf.Tensor).dataSync()[0];
    const eps = 8 / 255;
    for (const method of ['pgd', 'fgsm'] as const) {
      const xa = perturb(model, x, y, { method, epsilon: eps, steps: 3 });
      expect(tf.max(tf.abs(xa.sub(x))).dataSync()[0]).toBeLessThanOrEqual(eps + 1e-6);
      expect(tf.min(xa).dataSync()[0]).toBeGreaterThanOrEqual(0);
      expect(tf.max(xa).dataSync()[0]).toBeLessThanOrEqual(1);
      expect(loss(xa)).toBeGreaterThan(loss(x));
    }
    expect(() => perturb(model, x, y, { method: 'pgd', epsilon: 0 })).toThrow(/epsilon/);
  });
});

describe('fine-tuning', () => {
  it('puts a new head on the trained body and freezes what it is told', () => {
    const src = buildSmallCnn([32, 32, 3], 4, [4, 8]);
    const ft = finetuneModel(src.model, src.name, 7, ['conv1']);
    expect((ft.model.outputs[0].shape as number[])[1]).toBe(7);
    expect(ft.model.getLayer('conv1').trainable).toBe(false);
    expect(ft.model.getLayer('conv2').trainable).toBe(true);
    // The body is shared, not copied: same weights.
    expect(ft.model.getLayer('conv2').getWeights()[0].dataSync()).toEqual(
      src.model.getLayer('conv2').getWeights()[0].dataSync(),
    );
    expect(() => finetuneModel(src.model, src.name, 7, ['nope'])).toThrow(/cannot freeze 'nope'/);
  });
});
