import * as tf from '@tensorflow/tfjs';
import type { LayerActivations, MonitoredLayer } from '@cm/contracts';
import { invalidArgument } from '@cm/core';

/** uint8 RGB NHWC -> float32 in [0, 1]: the one input convention of every model here. */
export function toInput(images: Uint8Array, shape: readonly [number, number, number, number]): tf.Tensor4D {
  return tf.tidy(
    () =>
      tf
        .tensor4d(images, [shape[0], shape[1], shape[2], shape[3]], 'int32')
        .toFloat()
        .div(255) as tf.Tensor4D,
  );
}

/**
 * Runs the probe images through a model and returns each monitored layer's activations, pooled
 * on the backend (mean over H and W for conv layers, the method's "avg" pooling) so that a
 * checkpoint streams D x N floats per layer rather than D x H x W x N.
 */
export class Prober {
  private readonly probeModel: tf.LayersModel;
  readonly layers: MonitoredLayer[];

  constructor(
    model: tf.LayersModel,
    layers: MonitoredLayer[],
    private readonly images: Uint8Array,
    private readonly imageShape: readonly [number, number, number, number],
    private readonly batchSize = 200,
  ) {
    const [, h, w, c] = imageShape;
    const inShape = model.inputs[0].shape;
    if (inShape[1] !== h || inShape[2] !== w || inShape[3] !== c) {
      throw invalidArgument(
        `probe images are ${h}x${w}x${c} but the model takes ${inShape.slice(1).join('x')}`,
        { probe: [h, w, c], model: inShape.slice(1) },
        'make the probe bundle with the training image size (cm probe make --size)',
      );
    }
    this.layers = layers;
    // One functional model sharing the trained layers: no copies of the weights.
    this.probeModel = tf.model({
      inputs: model.inputs,
      outputs: layers.map((l) => model.getLayer(l.name).output as tf.SymbolicTensor),
    });
  }

  get probeImages(): number {
    return this.imageShape[0];
  }

  activations(): LayerActivations[] {
    const [d, h, w, c] = this.imageShape;
    const out = this.layers.map((l) => new Float32Array(d * l.width));
    const px = h * w * c;
    for (let start = 0; start < d; start += this.batchSize) {
      const n = Math.min(this.batchSize, d - start);
      const pooled = tf.tidy(() => {
        const x = toInput(this.images.subarray(start * px, (start + n) * px), [n, h, w, c]);
        const ys = this.probeModel.predict(x, { batchSize: n });
        const list = Array.isArray(ys) ? ys : [ys];
        return list.map((y) => (y.rank === 4 ? y.mean([1, 2]) : y));
      });
      pooled.forEach((t, i) => {
        out[i].set(t.dataSync() as Float32Array, start * this.layers[i].width);
        t.dispose();
      });
    }
    return this.layers.map((l, i) => ({ layer: l.name, shape: [d, l.width], data: out[i] }));
  }
}

/**
 * The "untrained-network null" of a model's monitored layers (CalibrationOptions.nullActivations in
 * @cm/dissect): each layer's pooled activations on the probe images for `copies` freshly
 * initialised copies of the model, side by side (D x copies * width). Dissecting a checkpoint
 * against it asks whether a neuron is more concept-aligned than untrained neurons of the same layer
 * are, rather than whether it is aligned at all (the default, i.i.d. null): in a world where image
 * statistics alone sort images by concept, untrained convolutions pass the second test.
 * `build(seed)` makes one copy; seeds are `firstSeed`, `firstSeed + 1000`, ...
 */
export function untrainedNullActivations(
  build: (seed: number) => tf.LayersModel,
  layers: MonitoredLayer[],
  images: Uint8Array,
  imageShape: readonly [number, number, number, number],
  copies = 8,
  firstSeed = 1_000_001,
): Map<string, { rows: number; cols: number; data: Float32Array }> {
  if (!Number.isInteger(copies) || copies < 1)
    throw invalidArgument(`untrained copies must be a positive integer, got ${copies}`);
  const d = imageShape[0];
  const out = new Map(
    layers.map((l) => [
      l.name,
      { rows: d, cols: copies * l.width, data: new Float32Array(d * copies * l.width) },
    ]),
  );
  for (let c = 0; c < copies; c++) {
    const model = build(firstSeed + 1000 * c);
    try {
      for (const a of new Prober(model, layers, images, imageShape).activations()) {
        const width = a.shape[1];
        const target = out.get(a.layer)!;
        for (let i = 0; i < d; i++)
          target.data.set(a.data.subarray(i * width, (i + 1) * width), i * target.cols + c * width);
      }
    } finally {
      model.dispose();
    }
  }
  return out;
}
