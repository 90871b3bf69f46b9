/**
 * The random-initialisation baseline of the learned-concept figure (docs/dissect.md, "Learned
 * concepts"), from the trainer's side: K freshly initialised copies of the model (same
 * architecture, new weights) are probed like a checkpoint and sent once per architecture and probe
 * bundle (Monitor.sendBaseline), before the first checkpoint. A monitor that already holds the
 * architecture's baseline says so (Monitor.baselineWanted) and nothing is computed.
 */
import * as tf from '@tensorflow/tfjs';
import type { Monitor, MonitoredLayer } from '@cm/contracts';
import { invalidArgument } from '@cm/core';
import { Prober } from './prober';

/** Random initialisations sent when nothing else is asked (WatchOptions.randomInits). */
export const DEFAULT_RANDOM_INITS = 8;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The model's topology with every initializer's seed removed, so that rebuilding it draws new weights. */
function unseeded(value: Json): Json {
  if (Array.isArray(value)) return value.map(unseeded);
  if (value && typeof value === 'object') {
    const out: { [key: string]: Json } = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === 'seed') continue;
      out[k] = unseeded(v);
    }
    return out;
  }
  return value;
}

/**
 * A copy of `model` with freshly initialised weights: the model is rebuilt from its topology (its
 * layers' initializers, seeds removed) without its weights. Layers tfjs cannot rebuild from JSON
 * (custom layers not registered) make it throw; pass WatchOptions.randomInit then.
 */
export async function freshlyInitialised(model: tf.LayersModel): Promise<tf.LayersModel> {
  const topology = model.toJSON(null, false) as unknown as Json;
  return tf.models.modelFromJSON({ modelTopology: unseeded(topology) as tf.io.ModelJSON['modelTopology'] });
}

export interface RandomInitBaselineOptions {
  monitor: Monitor;
  model: tf.LayersModel;
  layers: MonitoredLayer[];
  images: Uint8Array;
  imageShape: readonly [number, number, number, number];
  /** K (default DEFAULT_RANDOM_INITS). */
  inits?: number;
  /** Make initialisation k (default freshlyInitialised(model)); it is disposed after probing. */
  randomInit?: (index: number) => tf.LayersModel | Promise<tf.LayersModel>;
  batchSize?: number;
}

/**
 * Send the K random initialisations if the monitor wants them. Returns how many were sent (0: the
 * monitor takes no baseline, or already has this architecture's).
 */
export async function sendRandomInitBaseline(o: RandomInitBaselineOptions): Promise<number> {
  const inits = o.inits ?? DEFAULT_RANDOM_INITS;
  if (!Number.isInteger(inits) || inits < 0)
    throw invalidArgument(`random initialisations must be a non-negative integer, got ${inits}`);
  const send = o.monitor.sendBaseline?.bind(o.monitor);
  if (inits === 0 || !send) return 0;
  if (o.monitor.baselineWanted && !(await o.monitor.baselineWanted())) return 0;
  for (let index = 0; index < inits; index++) {
    const copy = o.randomInit ? await o.randomInit(index) : await freshlyInitialised(o.model);
    try {
      const layers = new Prober(copy, o.layers, o.images, o.imageShape, o.batchSize).activations();
      await send({ index, inits, layers });
    } finally {
      if (copy !== o.model) copy.dispose();
    }
  }
  return inits;
}
