import { selectBackend, worldDataset, runTrainJob, splitDataset } from '../src';
import { makeSyntheticBundle } from '@cm/probe';
import type { Monitor } from '@cm/contracts';
async function main() {
  await selectBackend();
  let t = Date.now();
  const ds = worldDataset({ task: 'shape', count: 4000, seed: 1 });
  console.log('data ms', Date.now() - t); t = Date.now();
  const b = makeSyntheticBundle({ images: 500, seed: 7 });
  console.log('bundle ms', Date.now() - t);
  const { train, test } = splitDataset(ds, 0.1, 1);
  const cps: number[] = [];
  const monitor: Monitor = { startRun: async () => {}, sendCheckpoint: async (cp) => { cps.push(cp.step); return undefined; }, endRun: async () => {}, close: async () => {} };
  const paradigm = (process.argv[2] ?? 'standard') as any;
  const r = await runTrainJob({ paradigm, runId: 'x', train, test, model: { arch: (process.argv[3] ?? 'small-cnn') as any }, steps: Number(process.argv[4] ?? 200), batchSize: 32, learningRate: 2e-3, seed: 1, monitorEvery: 50,
    monitor, probe: { bundleId: 'b', images: b.images, imageShape: b.imageShape }, attack: { method: 'pgd', epsilon: 8/255, steps: 2 }, lottery: { rounds: 1, rate: 0.5, rewindStep: 0 }, checkpointDir: '/tmp/cmckpt',
    observer: { onStep: (s) => { if (s.step % 50 === 0) console.log(s.step, s.loss.toFixed(3), s.accuracy.toFixed(2), s.imagesPerSecond.toFixed(0)); } } });
  for (const run of r.runs) console.log(JSON.stringify({ ...run, checkpoints: run.checkpoints.map(c => c.step + c.status) }));
}
main();
