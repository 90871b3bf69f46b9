import { selectBackend, worldDataset, runTrainJob, splitDataset } from '../src';
async function main() {
  await selectBackend();
  const ds = worldDataset({ task: process.argv[6] ?? 'shape', count: 6000, seed: 1 });
  const { train, test } = splitDataset(ds, 0.1, 1);
  const cpu0 = process.cpuUsage();
  const r = await runTrainJob({ paradigm: 'standard', runId: 'x', train, test, model: { arch: 'small-cnn', widths: process.argv[4].split(',').map(Number), batchNorm: process.argv[5] === 'bn' }, steps: Number(process.argv[2]), batchSize: 32, learningRate: Number(process.argv[3]), seed: 1, monitorEvery: 100000,
    observer: { onStep: (s) => { if (s.step % 100 === 0) console.log(s.step, s.loss.toFixed(3), s.accuracy.toFixed(2), s.imagesPerSecond.toFixed(0)); } } });
  const cpu = process.cpuUsage(cpu0); const run = r.runs[0];
  console.log(process.argv.slice(2).join(' '), 'test', run.testAccuracy, 'img/s', run.imagesPerSecond.toFixed(0), 'img/cpu-s', (run.steps*32/((cpu.user+cpu.system)/1e6)).toFixed(0));
}
main();
