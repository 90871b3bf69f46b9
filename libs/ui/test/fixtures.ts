import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@cm/config';
import { rulesFromConfig } from '@cm/alerts';
import type { CheckpointData, CmRecord, LayerActivations } from '@cm/contracts';
import { freePort } from '@cm/core';
import { nullActivations, type ConceptSpace } from '@cm/dissect';
import { createLocalMonitor, inlineDissector, type LocalMonitor } from '@cm/engine';
import {
  makeTestBundles,
  seeded,
  testCheckpoint,
  testRunSpec,
  TEST_LAYERS,
  type TestBundles,
} from '@cm/engine/src/testing';
import { startClickHouse, type ManagedServer } from '@cm/stack';
import { openStore, type Store } from '@cm/store';

/**
 * Stores filled by real runs of the concept engine (all-in-one monitor, real CLIP-Dissect on the
 * small synthetic bundle, real collapse detector): embedded chDB or clickhouse-server 18.16.
 *   HEALTHY   12 checkpoints, labels drift with the step (no random-init baseline: learned figure NULL)
 *   COLLAPSE  12 checkpoints, conv2 collapses at steps 5..8 (alert episodes) and recovers; a
 *             random-init baseline of 2 initialisations is sent first (learned figure on every row)
 *   HOSTILE   a run id with quotes, backslashes and a `'; DROP` (4 checkpoints)
 *   LIVE      started, 3 checkpoints, left running: tests add checkpoints while a page is open
 */
export const RUNS = {
  healthy: 'healthy-run',
  collapse: 'collapse-run',
  hostile: "it's a \\ 'run'; DROP TABLE runs; --",
  live: 'live-run',
} as const;
export const STEPS = 12;
const COLLAPSE_FROM = 5;
const COLLAPSE_TO = 9;

function collapseCheckpoint(space: ConceptSpace, step: number): CheckpointData {
  const collapsed = step >= COLLAPSE_FROM && step < COLLAPSE_TO;
  const layers: LayerActivations[] = TEST_LAYERS.map((l) => {
    const { rows: d, cols: s, data: p } = space.probeScores;
    const rnd = seeded(1000 + step * 31 + l.width);
    const data = new Float32Array(d * l.width);
    for (let k = 0; k < l.width; k++) {
      const c = collapsed && l.name === 'conv2' ? 0 : (k * 7 + step) % s;
      for (let i = 0; i < d; i++) data[i * l.width + k] = p[i * s + c] + 0.3 * rnd();
    }
    return { layer: l.name, shape: [d, l.width], data };
  });
  return { step, layers, metrics: { loss: 2 / (step + 1), accuracy: 0.3 + step / 20 } };
}

/** An "untrained" network's layers: unrelated to the images (seeded normal activations). */
function randomInitLayers(space: ConceptSpace, index: number): LayerActivations[] {
  const d = space.probeScores.rows;
  return TEST_LAYERS.map((l) => ({
    layer: l.name,
    shape: [d, l.width],
    data: nullActivations(d, l.width, 900 + 10 * index + l.width).data,
  }));
}

export interface FilledStore {
  kind: 'chdb' | 'clickhouse-server';
  store: Store;
  bundles: TestBundles;
  /** The LIVE run's monitor, still open: `addLiveCheckpoint()` writes its next checkpoint. */
  addLiveCheckpoint(): Promise<number>;
  /** The server (18.16 only), to stop it for the "store unreachable" check. */
  server?: ManagedServer;
  close(): Promise<void>;
}

export async function fillStore(
  kind: 'chdb' | 'clickhouse-server',
  database = 'cm_ui_test',
): Promise<FilledStore> {
  const dir = mkdtempSync(join(tmpdir(), 'cm-ui-'));
  const bundles = await makeTestBundles();
  let server: ManagedServer | undefined;
  let store: Store | undefined;
  let live: LocalMonitor | undefined;
  const cleanup = async (): Promise<void> => {
    await live?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    bundles.cleanup();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    if (kind === 'chdb') {
      store = await openStore({ kind: 'chdb', path: join(dir, 'chdb'), database });
    } else {
      server = await startClickHouse({
        dir: join(dir, 'stack'),
        httpPort: await freePort(),
        tcpPort: await freePort(),
      });
      store = await openStore({ kind: 'server', url: server.url, user: 'default', password: '', database });
    }
    await store.migrate();
    const target = store;
    const alertRules = rulesFromConfig(loadConfig({}).alerts);
    const monitorFor = (): LocalMonitor =>
      createLocalMonitor({
        bundles: bundles.bundles,
        store: target,
        dissector: inlineDissector(),
        alertRules,
        sink: { write: async (records: CmRecord[]) => target.insertRecords(records) },
      });
    const plan: [string, number, (step: number) => CheckpointData, string][] = [
      [RUNS.healthy, STEPS, (s) => testCheckpoint(bundles.space, s), 'standard'],
      [RUNS.collapse, STEPS, (s) => collapseCheckpoint(bundles.space, s), 'adversarial'],
      [RUNS.hostile, 4, (s) => testCheckpoint(bundles.space, s), 'standard'],
    ];
    for (const [runId, steps, checkpoint, paradigm] of plan) {
      const monitor = monitorFor();
      await monitor.startRun({ ...testRunSpec(runId, bundles.bundleId), paradigm });
      if (runId === RUNS.collapse)
        for (let index = 0; index < 2; index++)
          await monitor.sendBaseline({ index, inits: 2, layers: randomInitLayers(bundles.space, index) });
      for (let step = 0; step < steps; step++) await monitor.sendCheckpoint(checkpoint(step));
      await monitor.endRun('completed');
      await monitor.close();
    }
    live = monitorFor();
    await live.startRun(testRunSpec(RUNS.live, bundles.bundleId));
    let liveStep = 0;
    for (; liveStep < 3; liveStep++) await live.sendCheckpoint(testCheckpoint(bundles.space, liveStep));
    const liveMonitor = live;
    return {
      kind,
      store,
      bundles,
      server,
      async addLiveCheckpoint() {
        const step = liveStep++;
        await liveMonitor.sendCheckpoint(testCheckpoint(bundles.space, step));
        return step;
      },
      close: cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
