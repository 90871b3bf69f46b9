import * as tf from '@tensorflow/tfjs';
import { buildResNet, buildSmallCnn, selectLayers, trainableVariables } from '../src/models';
import { useTrainingBackend } from './setup';

beforeAll(useTrainingBackend);

describe('models', () => {
  it('small CNN: blocks, logits and default monitored layers', () => {
    const m = buildSmallCnn([32, 32, 3], 5, [4, 8, 8]);
    expect(m.name).toBe('small-cnn-4-8-8');
    expect(m.blocks).toEqual(['conv1', 'conv2', 'conv3']);
    expect(selectLayers(m.model)).toEqual([
      { name: 'conv1', width: 4, kind: 'conv' },
      { name: 'conv2', width: 8, kind: 'conv' },
      { name: 'conv3', width: 8, kind: 'conv' },
      { name: 'logits', width: 5, kind: 'dense' },
    ]);
    expect(selectLayers(m.model, ['logits', 'conv2']).map((l) => l.name)).toEqual(['logits', 'conv2']);
    expect(selectLayers(m.model, ['dense']).map((l) => l.name)).toEqual(['logits']);
    expect(() => selectLayers(m.model, ['conv9'])).toThrow(/unknown monitored layer 'conv9'/);
    try {
      selectLayers(m.model, ['conv9']);
    } catch (e) {
      expect((e as { hint?: string }).hint).toMatch(/conv1, pool1/);
    }
    const y = m.model.predict(tf.zeros([2, 32, 32, 3])) as tf.Tensor;
    expect(y.shape).toEqual([2, 5]);
  });

  it('small CNN head: global max pool by default, average pool on request', () => {
    const byMax = buildSmallCnn([32, 32, 3], 3, [4, 4]);
    expect(byMax.model.layers.map((l) => l.name)).toContain('gmp');
    expect(byMax.spec).toMatchObject({ head: 'max' });
    const byAvg = buildSmallCnn([32, 32, 3], 3, [4, 4], 1, false, 'avg');
    expect(byAvg.name).toBe('small-cnn-4-4-avg');
    expect(byAvg.model.layers.map((l) => l.name)).toContain('gap');
    // A second, identical object elsewhere on an empty image: the max-pooled logits do not move
    // (the strongest evidence is the same), the average-pooled ones do (twice the feature mass).
    const scene = (corners: [number, number][]) =>
      tf.tidy(() => {
        const img = tf.buffer([1, 32, 32, 3]);
        for (const [y0, x0] of corners)
          for (let y = y0; y < y0 + 3; y++)
            for (let x = x0; x < x0 + 3; x++) for (let c = 0; c < 3; c++) img.set(1, 0, y, x, c);
        return img.toTensor();
      });
    const logitsOf = (m: tf.LayersModel, x: tf.Tensor) =>
      (m.predict(x) as tf.Tensor).arraySync() as number[][];
    const one = scene([[6, 6]]);
    const two = scene([
      [6, 6],
      [22, 22],
    ]);
    const diff = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i])));
    expect(diff(logitsOf(byMax.model, one)[0], logitsOf(byMax.model, two)[0])).toBeLessThan(1e-5);
    expect(diff(logitsOf(byAvg.model, one)[0], logitsOf(byAvg.model, two)[0])).toBeGreaterThan(1e-3);
    expect(() => buildSmallCnn([16, 16, 3], 3, [4], 1, false, 'median' as never)).toThrow(/max or avg/);
  });

  it('CIFAR ResNet: depth 6n+2, stage widths w, 2w, 4w, named block outputs', () => {
    const m = buildResNet([32, 32, 3], 10, 8, 4);
    expect(m.name).toBe('resnet8-w4');
    expect(m.blocks).toEqual(['stem', 'stage1_block1', 'stage2_block1', 'stage3_block1']);
    const layers = selectLayers(m.model, ['blocks']);
    expect(layers.map((l) => l.width)).toEqual([4, 4, 8, 16]);
    expect(m.model.getLayer('stage3_block1').outputShape).toEqual([null, 8, 8, 16]);
    expect(selectLayers(m.model, ['conv']).length).toBe(1 + 3 * 2 + 2); // stem, 2 per block, 2 projections
    expect(() => buildResNet([32, 32, 3], 10, 10, 4)).toThrow(/6n\+2/);
  });

  it('frozen layers leave the optimizer variable list', () => {
    const m = buildSmallCnn([32, 32, 3], 3, [4, 4]);
    const all = trainableVariables(m.model).length;
    m.model.getLayer('conv1').trainable = false;
    expect(trainableVariables(m.model).length).toBe(all - 2);
  });
});
