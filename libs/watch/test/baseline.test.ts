/**
 * The trainer side of the learned-concept baseline: fresh copies of a model (same topology, new
 * weights, even where the model's initializers are seeded) and when they are sent.
 */
import * as tf from '@tensorflow/tfjs';
import type { CheckpointData, CheckpointResult, Monitor, RandomInitBaseline, RunSpec } from '@cm/contracts';
import { freshlyInitialised, selectLayers, sendRandomInitBaseline } from '../src';

function seededModel(): tf.LayersModel {
  const input = tf.input({ shape: [8, 8, 3] });
  const init = tf.initializers.glorotUniform({ seed: 7 });
  let h = tf.layers
    .conv2d({
      filters: 4,
      kernelSize: 3,
      padding: 'same',
      activation: 'relu',
      name: 'c1',
      kernelInitializer: init,
    })
    .apply(input);
  h = tf.layers.globalAveragePooling2d({}).apply(h);
  const out = tf.layers
    .dense({ units: 3, name: 'head', kernelInitializer: init })
    .apply(h) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name: 'seeded' });
}

/** Records what it is sent (unit test double). */
class BaselineMonitor implements Monitor {
  baselines: RandomInitBaseline[] = [];
  constructor(private readonly wanted: boolean) {}
  async startRun(_spec: RunSpec): Promise<void> {}
  async sendCheckpoint(cp: CheckpointData): Promise<CheckpointResult> {
    return { step: cp.step, layers: [], alerts: [] };
  }
  async endRun(): Promise<void> {}
  async close(): Promise<void> {}
  async baselineWanted(): Promise<boolean> {
    return this.wanted;
  }
  async sendBaseline(b: RandomInitBaseline): Promise<void> {
    this.baselines.push(b);
  }
}

const weightsOf = (m: tf.LayersModel): number[] => Array.from(m.getLayer('c1').getWeights()[0].dataSync());

describe('random-init baseline, trainer side', () => {
  it('a fresh copy has the topology and new weights, though the initializers were seeded', async () => {
    const model = seededModel();
    const a = await freshlyInitialised(model);
    const b = await freshlyInitialised(model);
    expect(a.layers.map((l) => l.name)).toEqual(model.layers.map((l) => l.name));
    expect(a.getLayer('c1').getWeights()[0].shape).toEqual(model.getLayer('c1').getWeights()[0].shape);
    expect(weightsOf(a)).not.toEqual(weightsOf(model));
    expect(weightsOf(a)).not.toEqual(weightsOf(b));
    a.dispose();
    b.dispose();
    model.dispose();
  });

  it('sends K probed copies when the monitor wants them, none when it does not, and leaves no tensor behind', async () => {
    const model = seededModel();
    const layers = selectLayers(model, ['all']);
    const images = Uint8Array.from({ length: 5 * 8 * 8 * 3 }, (_, i) => (i * 31) % 256);
    const shape = [5, 8, 8, 3] as const;
    const before = tf.memory().numTensors;
    const wanting = new BaselineMonitor(true);
    expect(
      await sendRandomInitBaseline({ monitor: wanting, model, layers, images, imageShape: shape, inits: 3 }),
    ).toBe(3);
    expect(wanting.baselines.map((b) => [b.index, b.inits])).toEqual([
      [0, 3],
      [1, 3],
      [2, 3],
    ]);
    expect(wanting.baselines[0].layers.map((l) => [l.layer, l.shape])).toEqual(
      layers.map((l) => [l.name, [5, l.width]]),
    );
    expect(tf.memory().numTensors).toBe(before);
    const full = new BaselineMonitor(false);
    expect(await sendRandomInitBaseline({ monitor: full, model, layers, images, imageShape: shape })).toBe(0);
    expect(full.baselines).toEqual([]);
    const plain: Monitor = {
      startRun: async () => undefined,
      sendCheckpoint: async () => undefined,
      endRun: async () => undefined,
      close: async () => undefined,
    };
    expect(await sendRandomInitBaseline({ monitor: plain, model, layers, images, imageShape: shape })).toBe(
      0,
    );
    await expect(
      sendRandomInitBaseline({ monitor: wanting, model, layers, images, imageShape: shape, inits: -1 }),
    ).rejects.toThrow(/non-negative integer/);
    model.dispose();
  });
});
