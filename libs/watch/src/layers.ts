/**
 * Which layers of a tf.LayersModel are monitored. Tokens are layer names or kinds:
 *   blocks  every conv block output          conv    every Conv2D layer
 *   dense   every Dense layer                logits  the output layer
 *   all     blocks + logits (the default)
 * A conv block output is, for the models of libs/train, a layer named conv<i>, stem or
 * stage<s>_block<b>; for any other model, a rank-4 layer whose output goes into a pooling or
 * flattening layer (the end of a block, before the resolution drops), and the last rank-4 layer.
 */
import * as tf from '@tensorflow/tfjs';
import type { MonitoredLayer } from '@cm/contracts';
import { invalidArgument } from '@cm/core';

/** Name of the output layer of the models built by libs/train. */
export const LOGITS = 'logits';

/** The kinds a selection may name besides layer names. */
export const LAYER_KINDS = ['all', 'blocks', 'conv', 'dense', 'logits'] as const;

const NAMED_BLOCK = /^conv\d+$|^stem$|^stage\d+_block\d+$/;
const DOWNSAMPLING = new Set([
  'MaxPooling2D',
  'AveragePooling2D',
  'GlobalMaxPooling2D',
  'GlobalAveragePooling2D',
  'Flatten',
]);

function outputRank(layer: tf.layers.Layer): number {
  const shape = layer.outputShape;
  return Array.isArray(shape[0]) ? -1 : (shape as (number | null)[]).length;
}

function consumers(layer: tf.layers.Layer): tf.layers.Layer[] {
  return layer.outboundNodes.map((n) => n.outboundLayer);
}

/** Block outputs of a model: libs/train's names when the model uses them, else found from its structure. */
export function blockNamesOf(model: tf.LayersModel): string[] {
  const named = model.layers.map((l) => l.name).filter((n) => NAMED_BLOCK.test(n));
  if (named.length > 0) return named;
  const rank4 = model.layers.filter((l) => outputRank(l) === 4 && l.getClassName() !== 'InputLayer');
  const blocks = rank4.filter((l) => consumers(l).some((c) => DOWNSAMPLING.has(c.getClassName())));
  // Pooling layers themselves are not block outputs; the last rank-4 layer before the head is.
  const last = [...rank4].reverse().find((l) => !DOWNSAMPLING.has(l.getClassName()));
  if (last && !blocks.includes(last)) blocks.push(last);
  const order = new Map(model.layers.map((l, i) => [l, i]));
  return blocks.sort((a, b) => order.get(a)! - order.get(b)!).map((l) => l.name);
}

/** The model's output layer: `logits` in libs/train's models, else whatever layer produces the output. */
export function logitsLayerOf(model: tf.LayersModel): string {
  if (model.layers.some((l) => l.name === LOGITS)) return LOGITS;
  return model.outputs[0].sourceLayer.name;
}

/** Resolve a selection to the monitored layers (name, width, kind). Unknown names list what the model has. */
export function selectLayers(
  model: tf.LayersModel,
  selection: readonly string[] = ['all'],
): MonitoredLayer[] {
  const byName = new Map(model.layers.map((l) => [l.name, l]));
  const names: string[] = [];
  const add = (n: string) => {
    if (!names.includes(n)) names.push(n);
  };
  for (const token of selection.length ? selection : ['all']) {
    const t = token.trim();
    if (t === 'all') [...blockNamesOf(model), logitsLayerOf(model)].forEach(add);
    else if (t === 'blocks') blockNamesOf(model).forEach(add);
    else if (t === 'conv')
      model.layers.filter((l) => l.getClassName() === 'Conv2D').forEach((l) => add(l.name));
    else if (t === 'dense')
      model.layers.filter((l) => l.getClassName() === 'Dense').forEach((l) => add(l.name));
    else if (t === 'logits') add(logitsLayerOf(model));
    else if (byName.has(t)) add(t);
    else {
      throw invalidArgument(
        `unknown monitored layer '${t}'`,
        { layer: t },
        `use all, blocks, conv, dense, logits or a layer name: ${model.layers.map((l) => l.name).join(', ')}`,
      );
    }
  }
  return names.map((name) => {
    const layer = byName.get(name);
    if (!layer) throw invalidArgument(`model has no layer '${name}'`, { layer: name });
    const shape = layer.outputShape as (number | null)[];
    const width = shape[shape.length - 1];
    if (typeof width !== 'number') throw invalidArgument(`layer ${name} has no fixed width`, { layer: name });
    if (shape.length !== 4 && shape.length !== 2)
      throw invalidArgument(
        `layer ${name} has output rank ${shape.length}; only conv (4) and dense (2) layers can be monitored`,
      );
    return { name, width, kind: shape.length === 4 ? 'conv' : 'dense' } as MonitoredLayer;
  });
}
