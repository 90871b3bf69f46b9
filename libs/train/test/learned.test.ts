/**
 * The learned-concept figure on the built-in world (docs/dissect.md, "Learned concepts"): the
 * constructed cases with the default model's real untrained layers, then the built-in trainer's
 * whole path (watch() sends the random-init baseline, the all-in-one engine puts the figure on
 * every snapshot from step 0).
 */
import { makeSyntheticBundle } from '@cm/probe';
import type { CmRecord, LayerSnapshotRecord } from '@cm/contracts';
import {
  dissectLayer,
  learnedConceptShare,
  neuronEvidence,
  randomInitLayer,
  type Matrix,
  type RandomInitLayer,
} from '@cm/dissect';
import {
  BundleRegistry,
  createLocalMonitor,
  inlineDissector,
  MemoryBaselineStore,
  MemorySink,
} from '@cm/engine';
import { buildModel, selectLayers } from '../src/models';
import { Prober } from '../src/probing';
import { worldDataset } from '../src/data';
import { RANDOM_INIT_SEED, runTrainJob } from '../src/paradigms';
import { useTrainingBackend } from './setup';

beforeAll(useTrainingBackend);

const bundle = makeSyntheticBundle({ images: 500, seed: 1 });
const [D, h, w] = bundle.imageShape;
const build = (seed: number) => buildModel({ arch: 'small-cnn' }, [h, w, 3], 3, seed).model;
const layers = selectLayers(build(1));
const P = bundle.space.probeScores;
const S = P.cols;

/** Each monitored layer of the model built with `seed`, pooled, on the probe images. */
function activationsOf(seed: number): Map<string, Matrix> {
  const model = build(seed);
  try {
    return new Map(
      new Prober(model, layers, bundle.images, bundle.imageShape)
        .activations()
        .map((a) => [a.layer, { rows: a.shape[0], cols: a.shape[1], data: a.data }]),
    );
  } finally {
    model.dispose();
  }
}

describe('learned-concept figure, constructed cases on the built-in world', () => {
  const K = 3;
  const baseline = new Map<string, RandomInitLayer[]>();
  const inits: Map<string, Matrix>[] = [];

  beforeAll(async () => {
    for (let k = 0; k < K; k++) {
      const acts = activationsOf(RANDOM_INIT_SEED + 1000 * k);
      inits.push(acts);
      for (const [layer, q] of acts) {
        const d = await dissectLayer(bundle.space, q, { conceptCeiling: true });
        baseline.set(layer, [...(baseline.get(layer) ?? []), randomInitLayer(d)]);
      }
    }
  }, 120_000);

  it('a layer that copies the untrained network scores 0, though the association test calls much of it interpretable', async () => {
    let association = 0;
    for (const [layer, q] of inits[1]) {
      const d = await dissectLayer(bundle.space, q);
      association += d.metrics.interpretableFraction;
      const r = learnedConceptShare(neuronEvidence(d), baseline.get(layer)!);
      expect([layer, r.rawFraction, r.learnedFraction]).toEqual([layer, 0, 0]);
    }
    expect(association / layers.length).toBeGreaterThan(0.3);
    // an untrained network outside the baseline (another seed): its conv layers at most near 0
    for (const [layer, q] of activationsOf(77)) {
      if (layer === 'logits') continue; // 3 neurons against 9: too few for a chance rate (docs/dissect.md)
      const r = learnedConceptShare(
        neuronEvidence(await dissectLayer(bundle.space, q)),
        baseline.get(layer)!,
      );
      expect(r.learnedFraction).toBeLessThanOrEqual(0.1);
    }
  });

  it("a layer whose neurons are the world's ground-truth concept detectors scores near 1", async () => {
    for (const l of layers) {
      // neuron n: the ground-truth label of concept n % S on each probe image (a tiny seeded jitter breaks ties)
      const data = new Float32Array(D * l.width);
      let s = 12345;
      for (let i = 0; i < D; i++)
        for (let n = 0; n < l.width; n++) {
          s = (Math.imul(s, 1103515245) + 12345) >>> 0;
          data[i * l.width + n] = P.data[i * S + (n % S)] + 0.01 * (s / 2 ** 32 - 0.5);
        }
      const d = await dissectLayer(bundle.space, { rows: D, cols: l.width, data });
      expect(d.metrics.interpretableFraction).toBe(1);
      const r = learnedConceptShare(neuronEvidence(d), baseline.get(l.name)!);
      expect(r.learnedFraction).toBeGreaterThanOrEqual(0.9);
    }
  });
});

describe('learned-concept figure through the built-in trainer', () => {
  it('watch() sends the random-init baseline once; every snapshot has the figure from step 0', async () => {
    const probeData = makeSyntheticBundle({ images: 120, seed: 2 });
    const registry = new BundleRegistry();
    registry.add({ id: 'probe-b', space: probeData.space });
    const sink = new MemorySink();
    const baselines = new MemoryBaselineStore();
    const monitor = createLocalMonitor({
      bundles: registry,
      store: { insertRecords: (records) => sink.write(records) },
      sink,
      dissector: inlineDissector(),
      baselines,
    });
    const sent: number[] = [];
    const send = monitor.sendBaseline!.bind(monitor);
    monitor.sendBaseline = async (b) => {
      sent.push(b.index);
      await send(b);
    };
    const train = worldDataset({ task: 'shape', count: 48, seed: 1 });
    const job = (runId: string) => ({
      paradigm: 'standard' as const,
      runId,
      train,
      model: { arch: 'small-cnn' as const, widths: [4, 8] },
      steps: 4,
      batchSize: 8,
      learningRate: 0.01,
      seed: 1,
      monitorEvery: 2,
      probe: { bundleId: 'probe-b', images: probeData.images, imageShape: probeData.imageShape },
      monitor,
      requireMonitor: true,
    });
    await runTrainJob(job('t1'));
    expect(sent).toEqual([0, 1, 2, 3, 4, 5, 6, 7]); // DEFAULT_RANDOM_INITS
    const snaps = (records: CmRecord[], runId: string) =>
      records.filter((r): r is LayerSnapshotRecord => r.kind === 'snapshot' && r.runId === runId);
    const first = snaps(sink.records, 't1');
    expect(first.length).toBe(3 * 3); // steps 0, 2, 4 x conv1, conv2, logits
    for (const s of first) {
      expect(typeof s.learnedFraction).toBe('number');
      expect(s.learnedFraction).toBeGreaterThanOrEqual(0);
      expect(s.learnedFraction).toBeLessThanOrEqual(s.interpretableFraction + 1e-12);
    }
    // a second run of the architecture: no baseline sent again, the figure is there
    await runTrainJob(job('t2'));
    expect(sent).toEqual([0, 1, 2, 3, 4, 5, 6, 7]); // DEFAULT_RANDOM_INITS
    expect(snaps(sink.records, 't2').every((s) => typeof s.learnedFraction === 'number')).toBe(true);
    await monitor.close();
  }, 120_000);
});
