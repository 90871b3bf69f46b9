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
