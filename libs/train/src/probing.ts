import * as tf from '@tensorflow/tfjs';
import type { MonitoredLayer } from '@cm/contracts';
import { invalidArgument } from '@cm/core';
import { Prober } from '@cm/watch';

// The Prober (probe images -> pooled activations) and the input convention live in @cm/watch:
// watch() and this package's loop probe the same way.
export { Prober, toInput } from '@cm/watch';

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
