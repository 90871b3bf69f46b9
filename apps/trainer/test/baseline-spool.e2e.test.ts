import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckpointData, Monitor } from '@cm/contracts';
import { createLogger, freePort } from '@cm/core';
import type { ConceptServer } from '@cm/concept-server';
import { ConceptEngine, inlineDissector, MemoryBaselineStore, MemorySink } from '@cm/engine';
import { BundleDirectory } from '@cm/probe';
import { DEFAULT_RANDOM_INITS } from '@cm/watch';
import { ensureSyntheticBundle, probeImagesOf, selectBackend } from '@cm/train';
import { bringUpService, forwardRunCalls, spoolingClient, trainFourSteps } from './late-service';

/**
 * The learned-concept baseline under policy spool (real gRPC over loopback, real concept server
 * and dissection, the built-in training loop): the concept service is down when the run starts and
 * comes up during it. The K random initialisations are spooled like checkpoints, ahead of them, and
 * sent first when the service is back, so every checkpoint of the run has its learned figure; a
 * service that has the architecture's baseline by then is not sent them.
 */
let dir: string;
let bundles: string;
let bundleImages: ReturnType<typeof probeImagesOf>;
/** The services' baseline cache: the second run's service finds the first run's baseline there. */
const baselines = new MemoryBaselineStore();
beforeAll(async () => {
  await selectBackend({ log: { ...createLogger('test'), info: () => undefined } });
  dir = mkdtempSync(join(tmpdir(), 'cm-baseline-spool-'));
  bundles = join(dir, 'bundles');
  bundleImages = probeImagesOf(await ensureSyntheticBundle(bundles, { images: 120, seed: 7 }));
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** K: watch()'s default (the built-in trainer sends it). */
const INITS = DEFAULT_RANDOM_INITS;
/** The spool's file names as steps: the random inits are -2 - index. */
const inits = Array.from({ length: INITS }, (_, i) => -2 - i);

/** A 4-step run (5 checkpoints) whose concept service comes up once step 2 was handed over. */
async function runWithLateService(runId: string) {
  const port = await freePort();
  const sink = new MemorySink();
  const spoolDir = join(dir, 'spool');
  const client = spoolingClient(port, spoolDir);
  let server: ConceptServer | undefined;
  let spooledFiles: string[] = [];
  let wantedBeforeService: boolean | undefined;
  const monitor: Monitor = {
    ...forwardRunCalls(client),
    baselineWanted: async () => (wantedBeforeService = await client.baselineWanted()),
    sendBaseline: (b) => client.sendBaseline(b),
    sendCheckpoint: async (cp: CheckpointData) => {
      const answer = await client.sendCheckpoint(cp);
      if (cp.step === 2 && !server) {
        spooledFiles = readdirSync(join(spoolDir, runId))
          .filter((f) => f.endsWith('.ckpt'))
          .sort();
        server = await bringUpService(
          client,
          port,
          new ConceptEngine({
            bundles: new BundleDirectory(bundles),
            dissector: inlineDissector(),
            baselines,
          }),
          sink,
        );
      }
      return answer;
    },
  };
  try {
    const { runs } = await trainFourSteps(runId, monitor, bundleImages);
    return { run: runs[0], spooledFiles, wantedBeforeService, sink, stats: client.stats() };
  } finally {
    await client.close();
    await server?.stop(2000);
  }
}

/** learnedFraction of every snapshot record, as `layer@step`. */
const learnedOf = (sink: MemorySink) =>
  sink.records.flatMap((r) => (r.kind === 'snapshot' ? [[`${r.layer}@${r.step}`, r.learnedFraction]] : []));

it('service down at the start: the random inits wait on disk ahead of the checkpoints, go out first, and every checkpoint has its learned figure', async () => {
  const { run, spooledFiles, wantedBeforeService, sink, stats } =
    await runWithLateService('baseline-spool-1');
  expect(wantedBeforeService).toBe(true); // the service could not say: the baseline is spooled
  // on disk when the service came up: the random inits (steps -2, -3, ...) first, then steps 0, 1, 2
  expect(spooledFiles.map((f) => Number(f.slice(13, -5)))).toEqual([...inits, 0, 1, 2]);
  // steps 0-2 waited on disk (3 and 4 too, when the inits were still going out): none dropped or failed
  expect(run.checkpoints.slice(0, 3).map((c) => c.status)).toEqual(['spooled', 'spooled', 'spooled']);
  expect(run.checkpoints.filter((c) => c.status === 'dropped' || c.status === 'failed')).toEqual([]);
  expect(stats).toMatchObject({
    spooledBaselines: INITS,
    skippedBaselines: 0,
    droppedCheckpoints: 0,
    acknowledgedCheckpoints: 5,
  });
  const learned = learnedOf(sink);
  expect(learned).toHaveLength(5 * 3); // 5 checkpoints x (conv1, conv2, logits)
  for (const [where, f] of learned) {
    expect([where, typeof f]).toEqual([where, 'number']); // not null: the baseline came before step 0
    expect(f).toBeGreaterThanOrEqual(0);
    expect(f).toBeLessThanOrEqual(1);
  }
  // the baseline was made from the spooled inits and kept for the architecture
  expect((await baselines.keys()).length).toBe(1);
}, 120_000);

it('a service that has the baseline by the time it is back is not sent the spooled inits; the figure is there all the same', async () => {
  const { spooledFiles, sink, stats } = await runWithLateService('baseline-spool-2');
  expect(spooledFiles.map((f) => Number(f.slice(13, -5)))).toEqual([...inits, 0, 1, 2]);
  expect(stats).toMatchObject({
    spooledBaselines: INITS,
    skippedBaselines: INITS,
    acknowledgedCheckpoints: 5,
  });
  const learned = learnedOf(sink);
  expect(learned).toHaveLength(15);
  for (const [where, f] of learned) expect([where, typeof f]).toEqual([where, 'number']);
}, 120_000);
