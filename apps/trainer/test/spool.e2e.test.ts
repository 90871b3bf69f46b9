import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckpointData, Monitor } from '@cm/contracts';
import { createLogger, freePort } from '@cm/core';
import type { ConceptServer } from '@cm/concept-server';
import { ConceptEngine, inlineDissector, MemorySink } from '@cm/engine';
import { BundleDirectory } from '@cm/probe';
import { ensureSyntheticBundle, formatRunSummary, probeImagesOf, selectBackend } from '@cm/train';
import { bringUpService, forwardRunCalls, spoolingClient, trainFourSteps } from './late-service';

/**
 * Policy spool through the training loop: the concept service is down when the run starts and
 * comes up during it (real gRPC over loopback, real concept server and dissection). Training is not
 * held, the checkpoints wait on disk, every one is stored once and in order, and the summary says
 * they came late, not that they were dropped.
 */
let dir: string;
beforeAll(async () => {
  await selectBackend({ log: { ...createLogger('test'), info: () => undefined } });
  dir = mkdtempSync(join(tmpdir(), 'cm-trainer-spool-'));
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A 4-step run (5 checkpoints), monitored every step, whose concept service comes up after step 2 was handed over. */
async function runWithLateService(runId: string, probeImages: number) {
  const bundles = join(dir, `bundles-${runId}`);
  const bundle = await ensureSyntheticBundle(bundles, { images: probeImages, seed: 7 });
  const port = await freePort();
  const sink = new MemorySink();
  const spoolDir = join(dir, 'spool');
  const client = spoolingClient(port, spoolDir);
  let server: ConceptServer | undefined;
  let filesSeen = 0;
  // The service comes up once step 2 has been handed over (and sat on disk).
  const monitor: Monitor = {
    ...forwardRunCalls(client),
    sendCheckpoint: async (cp: CheckpointData) => {
      const answer = await client.sendCheckpoint(cp);
      if (cp.step === 2 && !server) {
        filesSeen = readdirSync(join(spoolDir, runId)).filter((f) => f.endsWith('.ckpt')).length;
        server = await bringUpService(
          client,
          port,
          new ConceptEngine({ bundles: new BundleDirectory(bundles), dissector: inlineDissector() }),
          sink,
        );
      }
      return answer;
    },
  };
  try {
    const { runs } = await trainFourSteps(runId, monitor, probeImagesOf(bundle));
    return { run: runs[0], filesSeen, sink, stats: client.stats() };
  } finally {
    await client.close();
    await server?.stop(2000);
  }
}

it('service down at the start, up during the run: nothing dropped, every checkpoint stored once, in order', async () => {
  const { run, filesSeen, sink, stats } = await runWithLateService('spool-1', 120);
  expect(filesSeen).toBe(3); // steps 0, 1, 2 waited on disk
  expect(run.status).toBe('completed');
  expect(run.checkpoints.map((c) => c.step)).toEqual([0, 1, 2, 3, 4]);
  expect(run.checkpoints.filter((c) => c.status === 'dropped' || c.status === 'failed')).toEqual([]);
  expect(run.checkpoints.slice(0, 3).map((c) => c.status)).toEqual(['spooled', 'spooled', 'spooled']);
  expect(formatRunSummary(run)).toMatch(/delivered late from the spool/);
  expect(formatRunSummary(run)).not.toMatch(/dropped/);
  const checkpointSteps = sink.records.filter((r) => r.kind === 'checkpoint').map((r) => r.step);
  expect(checkpointSteps).toEqual([0, 1, 2, 3, 4]);
  expect(stats).toMatchObject({ droppedCheckpoints: 0, acknowledgedCheckpoints: 5 });
}, 120_000);

it('a spooled checkpoint the service refuses once delivered counts as failed, not as delivered', async () => {
  // 60 probe images are fewer than the default top-k (100): the service refuses every checkpoint
  const { run, stats } = await runWithLateService('spool-refused', 60);
  expect(run.checkpoints.map((c) => c.status)).toEqual(['failed', 'failed', 'failed', 'failed', 'failed']);
  expect(run.checkpoints[0].error).toMatch(/top_k/);
  expect(formatRunSummary(run)).toMatch(/0 checkpoints monitored, 5 failed/);
  expect(stats.droppedCheckpoints).toBe(0);
}, 120_000);
