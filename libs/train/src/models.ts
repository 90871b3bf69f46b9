import * as tf from '@tensorflow/tfjs';
import { invalidArgument } from '@cm/core';
import { LOGITS } from '@cm/watch';

/**
 * The trainer's models. Layer names are part of the contract: monitored layers, checkpoints and
 * the store refer to them.
 *   small-cnn: conv1..convK (3x3 conv + ReLU, 2x2 max-pool between blocks), global max pool (or
 *              average pool: head 'avg'), dense `logits`.
 *   resnet:    CIFAR-style ResNet (He et al. 2016, section 4.2): depth 6n+2, three stages of n basic
 *              blocks with widths w, 2w, 4w; `stem` and `stage{s}_block{b}` are the block outputs.
 */
export type ModelSpec =
  | { arch: 'small-cnn'; widths?: number[]; batchNorm?: boolean; head?: SmallCnnHead }
  | { arch: 'resnet'; depth?: number; width?: number };

export interface BuiltModel {
  model: tf.LayersModel;
  /** Short description for run records: small-cnn-16-32-64, resnet20-w16. */
  name: string;
  /** Names of the block outputs (the default monitored layers besides the logits). */
  blocks: string[];
  spec?: ModelSpec;
}

export { LOGITS };

/**
 * How the small CNN pools its last conv block before the logits. 'max' (the default) scores each
 * class by its strongest evidence anywhere in the image, so a class score does not grow with the
 * number or the area of other objects. Measured on the world's shape task (1000 steps, batch 32,
 * docs/trainer.md): test accuracy 92% with 'max' against 77% with 'avg', and the logit neurons of
 * the 'max' model are labelled with their own class on every probe seed tried, where the 'avg'
 * model's "star" logit was labelled "three objects" on some (it rose with the count of objects).
 */
export type SmallCnnHead = 'max' | 'avg';
export const SMALL_CNN_HEADS: readonly SmallCnnHead[] = ['max', 'avg'];
export const DEFAULT_SMALL_CNN_WIDTHS = [16, 32, 64];

function checkWidth(w: number, what: string): number {
  if (!Number.isInteger(w) || w < 1 || w > 2048)
    throw invalidArgument(`${what} must be an integer from 1 to 2048, got ${w}`);
  return w;
}

export function buildSmallCnn(
  inputShape: [number, number, number],
  classes: number,
  widths = DEFAULT_SMALL_CNN_WIDTHS,
  seed = 1,
  batchNorm = false,
  head: SmallCnnHead = 'max',
): BuiltModel {
  if (!SMALL_CNN_HEADS.includes(head))
    throw invalidArgument(`small-cnn head must be max or avg, got '${String(head)}'`);
  if (widths.length < 1 || widths.length > 6)
    throw invalidArgument(`small-cnn needs 1 to 6 conv widths, got ${widths.length}`);
  widths.forEach((w, i) => checkWidth(w, `conv${i + 1} width`));
  const input = tf.input({ shape: inputShape, name: 'image' });
  let h: tf.SymbolicTensor = input;
  const blocks: string[] = [];
  widths.forEach((w, i) => {
    const name = `conv${i + 1}`;
    const init = tf.initializers.heNormal({ seed: seed + i });
    if (batchNorm) {
      h = tf.layers
        .conv2d({
          filters: w,
          kernelSize: 3,
          padding: 'same',
          useBias: false,
          name: `${name}_conv`,
          kernelInitializer: init,
        })
        .apply(h) as tf.SymbolicTensor;
      h = tf.layers.batchNormalization({ name: `${name}_bn`, momentum: 0.9 }).apply(h) as tf.SymbolicTensor;
      h = tf.layers.activation({ activation: 'relu', name }).apply(h) as tf.SymbolicTensor;
    } else {
      h = tf.layers
        .conv2d({
          filters: w,
          kernelSize: 3,
          padding: 'same',
          activation: 'relu',
          name,
          kernelInitializer: init,
        })
        .apply(h) as tf.SymbolicTensor;
    }
    blocks.push(name);
    const side = h.shape[1] ?? 0;
    if (i < widths.length - 1 && side >= 4)
      h = tf.layers.maxPooling2d({ poolSize: 2, name: `pool${i + 1}` }).apply(h) as tf.SymbolicTensor;
  });
  const pool =
    head === 'max'
      ? tf.layers.globalMaxPooling2d({ name: 'gmp' })
      : tf.layers.globalAveragePooling2d({ name: 'gap' });
  h = pool.apply(h) as tf.SymbolicTensor;
  const logits = tf.layers
    .dense({
      units: classes,
      name: LOGITS,
      kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 100 }),
    })
    .apply(h) as tf.SymbolicTensor;
  const spec: ModelSpec = { arch: 'small-cnn', widths: [...widths], batchNorm, head };
  return {
    model: tf.model({ inputs: input, outputs: logits, name: 'small_cnn' }),
    // The default head adds nothing to the name; run records of the 'avg' head say so.
    name: `small-cnn-${widths.join('-')}${batchNorm ? '-bn' : ''}${head === 'avg' ? '-avg' : ''}`,
    blocks,
    spec,
  };
}

export function buildResNet(
  inputShape: [number, number, number],
  classes: number,
  depth = 20,
  width = 16,
  seed = 1,
): BuiltModel {
  if (!Number.isInteger(depth) || depth < 8 || (depth - 2) % 6 !== 0) {
    throw invalidArgument(`CIFAR ResNet depth must be 6n+2 (8, 14, 20, 32, 44, 56...), got ${depth}`, {
      depth,
    });
  }
  checkWidth(width, 'resnet width');
  const n = (depth - 2) / 6;
  let s = seed;
  const init = () => tf.initializers.heNormal({ seed: s++ });
  const conv = (x: tf.SymbolicTensor, filters: number, stride: number, name: string, kernel = 3) =>
    tf.layers
      .conv2d({
        filters,
        kernelSize: kernel,
        strides: stride,
        padding: 'same',
        useBias: false,
        kernelInitializer: init(),
        name,
      })
      .apply(x) as tf.SymbolicTensor;
  const bn = (x: tf.SymbolicTensor, name: string) =>
    tf.layers.batchNormalization({ name, momentum: 0.9 }).apply(x) as tf.SymbolicTensor;
  const relu = (x: tf.SymbolicTensor, name: string) =>
    tf.layers.activation({ activation: 'relu', name }).apply(x) as tf.SymbolicTensor;

  const input = tf.input({ shape: inputShape, name: 'image' });
  let h = relu(bn(conv(input, width, 1, 'stem_conv'), 'stem_bn'), 'stem');
  const blocks = ['stem'];
  for (let stage = 1; stage <= 3; stage++) {
    const filters = width * 2 ** (stage - 1);
    for (let b = 1; b <= n; b++) {
      const name = `stage${stage}_block${b}`;
      const stride = stage > 1 && b === 1 ? 2 : 1;
      let r = relu(bn(conv(h, filters, stride, `${name}_conv1`), `${name}_bn1`), `${name}_relu1`);
      r = bn(conv(r, filters, 1, `${name}_conv2`), `${name}_bn2`);
      const shortcut =
        stride !== 1 || (h.shape[3] ?? 0) !== filters
          ? bn(conv(h, filters, stride, `${name}_proj`, 1), `${name}_proj_bn`)
          : h;
      h = relu(tf.layers.add({ name: `${name}_add` }).apply([r, shortcut]) as tf.SymbolicTensor, name);
      blocks.push(name);
    }
  }
  h = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(h) as tf.SymbolicTensor;
  const logits = tf.layers
    .dense({ units: classes, name: LOGITS, kernelInitializer: tf.initializers.glorotUniform({ seed: s++ }) })
    .apply(h) as tf.SymbolicTensor;
  return {
    model: tf.model({ inputs: input, outputs: logits, name: 'resnet' }),
    name: `resnet${depth}-w${width}`,
    blocks,
    spec: { arch: 'resnet', depth, width },
  };
}

export function buildModel(
  spec: ModelSpec,
  inputShape: [number, number, number],
  classes: number,
  seed = 1,
): BuiltModel {
  if (!Number.isInteger(classes) || classes < 2)
    throw invalidArgument(`a classifier needs at least 2 classes, got ${classes}`);
  return spec.arch === 'small-cnn'
    ? buildSmallCnn(inputShape, classes, spec.widths, seed, spec.batchNorm, spec.head)
    : buildResNet(inputShape, classes, spec.depth, spec.width, seed);
}

// Layer selection (names or kinds: all, blocks, conv, dense, logits) lives in @cm/watch, so watch()
// and this package's commands select layers the same way.
export { blockNamesOf, selectLayers } from '@cm/watch';

/** The tf.Variables the optimizer updates: trainable weights of the model (frozen layers excluded). */
export function trainableVariables(model: tf.LayersModel): tf.Variable[] {
  // LayerVariable.read() hands back the underlying tf.Variable itself (tfjs-layers 4.x).
  return model.trainableWeights.map((w) => w.read() as tf.Variable);
}
