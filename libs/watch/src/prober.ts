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
 * checkpoint streams D x N floats per layer rather than D x H x W x N. Every tensor it makes is
 * released inside tf.tidy: probing leaves tf.memory().numTensors as it found it.
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
    if (model.inputs.length !== 1)
      throw invalidArgument(`the model has ${model.inputs.length} inputs; probing feeds images to one input`);
    this.layers = layers;
    // One functional model sharing the trained layers: no copies of the weights (never dispose it:
    // that would dispose the shared weights).
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
