import type * as tf from '@tensorflow/tfjs';
import { dissectLayer, type ConceptSpace } from '@cm/dissect';
import type { MonitoredLayer } from '@cm/contracts';
import { buildModel, selectLayers, type ModelSpec } from './models';
import { Prober, untrainedNullActivations } from './probing';

/** One layer's interpretable share against the untrained-network null, with its categories. */
export interface UntrainedNullShare {
  interpretable: number;
  /** Interpretable neurons per concept category. */
  categories: Record<string, number>;
}

/**
 * Interpretable share per monitored layer at initialisation and after training, tested against the
 * untrained-network null (docs/dissect.md): the same layer of `copies` freshly initialised models of
 * the spec. The run's own initialisation is rebuilt from its seed (models are seeded, so this is the
 * step-0 network of a standard or adversarial run; not of fine-tuning or lottery rounds, which start
 * from other weights).
 */
export async function untrainedNullShares(
  probe: { images: Uint8Array; imageShape: [number, number, number, number]; space: ConceptSpace },
  spec: ModelSpec,
  classes: number,
  seed: number,
  trained: tf.LayersModel,
  layers: MonitoredLayer[] = selectLayers(trained),
  copies = 8,
): Promise<Record<string, { first: UntrainedNullShare; last: UntrainedNullShare }>> {
  const [, h, w] = probe.imageShape;
  const build = (s: number) => buildModel(spec, [h, w, 3], classes, s).model;
  const nulls = untrainedNullActivations(build, layers, probe.images, probe.imageShape, copies);
  const initial = build(seed);
  const out: Record<string, { first: UntrainedNullShare; last: UntrainedNullShare }> = {};
  try {
    for (const [when, model] of [
      ['first', initial],
      ['last', trained],
    ] as const) {
      for (const a of new Prober(model, layers, probe.images, probe.imageShape).activations()) {
        const { labels } = await dissectLayer(
          probe.space,
          { rows: a.shape[0], cols: a.shape[1], data: a.data },
          { nullActivations: nulls.get(a.layer) },
        );
        const categories: Record<string, number> = {};
        let interpretable = 0;
        for (const l of labels) {
          if (!l.interpretable) continue;
          interpretable++;
          categories[l.category] = (categories[l.category] ?? 0) + 1;
        }
        const share = { interpretable: interpretable / labels.length, categories };
        out[a.layer] ??= { first: share, last: share };
        out[a.layer][when] = share;
      }
    }
  } finally {
    initial.dispose();
  }
  return out;
}
