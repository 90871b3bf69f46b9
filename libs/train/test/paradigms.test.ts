import * as tf from '@tensorflow/tfjs';
import { epsilonAt, perturb } from '../src/adversarial';
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

  it('warm-up ramps the budget: none at step 0, a quarter at a quarter of the way, all after', () => {
    const { model } = buildSmallCnn([32, 32, 3], 3, [4, 8]);
    const x = tf.randomUniform([2, 32, 32, 3], 0.2, 0.8, 'float32', 2) as tf.Tensor4D;
    const y = tf.oneHot(tf.tensor1d([0, 1], 'int32'), 3) as tf.Tensor2D;
    const spec = { method: 'fgsm' as const, epsilon: 8 / 255, warmupSteps: 100 };
    const reach = (step: number) => tf.max(tf.abs(perturb(model, x, y, spec, step).sub(x))).dataSync()[0];
    expect(reach(0)).toBe(0);
    expect(epsilonAt(spec, 25)).toBeCloseTo(2 / 255, 12);
    expect(reach(25)).toBeLessThanOrEqual(2 / 255 + 1e-6);
    expect(reach(25)).toBeGreaterThan(1 / 255);
    expect(reach(500)).toBeGreaterThan(4 / 255);
    expect(reach(500)).toBeLessThanOrEqual(8 / 255 + 1e-6);
    expect(epsilonAt({ method: 'pgd', epsilon: 0.1 }, 0)).toBe(0.1);
    expect(() => perturb(model, x, y, { ...spec, warmupSteps: -1 })).toThrow(/warm-up/);
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
