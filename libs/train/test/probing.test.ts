import { buildSmallCnn, selectLayers } from '../src/models';
import { Prober, untrainedNullActivations } from '../src/probing';
import { useTrainingBackend } from './setup';

beforeAll(useTrainingBackend);

describe('untrainedNullActivations', () => {
  const D = 6;
  const images = Uint8Array.from({ length: D * 8 * 8 * 3 }, (_, i) => (i * 37) % 256);
  const shape = [D, 8, 8, 3] as const;
  const build = (seed: number) => buildSmallCnn([8, 8, 3], 3, [2, 4], seed).model;

  it('puts the copies side by side per layer: copy c is the Prober output of the model built with its seed', () => {
    const layers = selectLayers(build(1));
    const nulls = untrainedNullActivations(build, layers, images, shape, 3, 50);
    expect([...nulls.keys()]).toEqual(['conv1', 'conv2', 'logits']);
    const conv2 = nulls.get('conv2')!;
    expect([conv2.rows, conv2.cols]).toEqual([D, 12]);
    const second = new Prober(build(1050), layers, images, shape)
      .activations()
      .find((a) => a.layer === 'conv2')!;
    for (let i = 0; i < D; i++)
      expect(Array.from(conv2.data.subarray(i * 12 + 4, i * 12 + 8))).toEqual(
        Array.from(second.data.subarray(i * 4, (i + 1) * 4)),
      );
    // different seeds, different neurons
    expect(Array.from(conv2.data.subarray(0, 4))).not.toEqual(Array.from(conv2.data.subarray(4, 8)));
    expect(() => untrainedNullActivations(build, layers, images, shape, 0)).toThrow(/positive integer/);
  });
});
