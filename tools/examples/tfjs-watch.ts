/**
 * A tfjs training loop of your own, monitored with watch() against `cm serve`.
 *
 *   npx cm probe make --root .cm/bundles          # the probe bundle (prints: <id> <folder>)
 *   npx cm probe make --splits-out .cm/world      # the labelled training/test splits as .npy
 *   npx cm serve &                                 # gRPC on 127.0.0.1:50051, the embedded store
 *   npx tsx tools/examples/tfjs-watch.ts --probe <folder> --splits .cm/world --target 127.0.0.1:50051
 *
 * Outside this repository import from 'concept-monitor' (the packed SDK) instead of '@cm/watch'.
 * Without --target the run goes all-in-one into the embedded store.
 */
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { loadSplits, watch } from '@cm/watch';
import { selectBackend } from '@cm/train';

const { values: args } = parseArgs({
  options: {
    probe: { type: 'string' },
    splits: { type: 'string' },
    target: { type: 'string' },
    steps: { type: 'string', default: '300' },
    every: { type: 'string', default: '50' },
    batch: { type: 'string', default: '32' },
    'run-id': { type: 'string' },
  },
});
if (!args.probe || !args.splits) {
  process.stderr.write(
    'usage: tfjs-watch.ts --probe <bundle folder or id> --splits <dir> [--target host:port]\n',
  );
  process.exit(2);
}

async function main(): Promise<void> {
  // The fastest backend that loads here (tfjs-node, else WebAssembly with this repo's gradient
  // kernels): tfjs' plain JavaScript backend takes seconds per step. Your program picks its own.
  await selectBackend();
  const { train, test, classes } = loadSplits(args.splits!);
  const [, h, w] = train.shape;
  const steps = Number(args.steps);
  const batch = Number(args.batch);

  // An ordinary functional CNN: watch() finds its conv block outputs and its logits by itself.
  const input = tf.input({ shape: [h, w, 3] });
  let x = tf.layers
    .conv2d({ filters: 16, kernelSize: 3, padding: 'same', activation: 'relu', name: 'block1' })
    .apply(input);
  x = tf.layers.maxPooling2d({ poolSize: 2 }).apply(x);
  x = tf.layers
    .conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu', name: 'block2' })
    .apply(x);
  x = tf.layers.globalMaxPooling2d({}).apply(x);
  const logits = tf.layers.dense({ units: classes.length, name: 'logits' }).apply(x) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: logits, name: 'example_cnn' });
  const optimizer = tf.train.adam(0.003);

  const watcher = await watch(model, {
    probe: args.probe!,
    target: args.target,
    every: Number(args.every),
    runId: args['run-id'],
    tags: { example: 'tfjs-watch' },
  });
  process.stdout.write(`run ${watcher.runId}: monitoring ${watcher.layers.map((l) => l.name).join(', ')}\n`);

  const px = h * w * 3;
  const toInput = (images: Uint8Array, n: number) =>
    tf.tensor4d(images, [n, h, w, 3], 'int32').toFloat().div(255);
  for (let step = 0; step <= steps; step++) {
    let loss = NaN;
    if (step > 0) {
      const start = ((step - 1) * batch) % (train.shape[0] - batch);
      loss = tf.tidy(() => {
        const xs = toInput(train.images.subarray(start * px, (start + batch) * px), batch);
        const ys = tf.oneHot(
          tf.tensor1d(train.labels.subarray(start, start + batch), 'int32'),
          classes.length,
        );
        const cost = optimizer.minimize(
          () => tf.losses.softmaxCrossEntropy(ys, model.apply(xs) as tf.Tensor) as tf.Scalar,
          true,
        );
        return cost!.dataSync()[0];
      });
    }
    // The one line monitoring adds to the loop: probes at step 0 and every `every` steps.
    await watcher.step(step, Number.isFinite(loss) ? { loss } : {});
  }
  const accuracy = tf.tidy(() => {
    const n = Math.min(test.shape[0], 500);
    const pred = (model.predict(toInput(test.images.subarray(0, n * px), n)) as tf.Tensor).argMax(-1);
    return pred
      .equal(tf.tensor1d(test.labels.subarray(0, n), 'int32'))
      .mean()
      .dataSync()[0];
  });
  const stats = await watcher.close();
  process.stdout.write(
    `test accuracy ${(100 * accuracy).toFixed(0)}%; ${stats.acknowledged}/${stats.checkpoints} checkpoints acknowledged, monitoring took ${(100 * stats.overhead).toFixed(1)}% of the run (${stats.seconds.toFixed(1)} s)\n`,
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`tfjs-watch: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
