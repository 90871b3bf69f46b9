/**
 * startAllInOne in this process: the concept server's gRPC endpoint writing into an embedded chDB
 * store. An ack means the records are in the store: after each acknowledged checkpoint the store
 * already holds every neuron of it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '@cm/config';
import { TABLES } from '@cm/contracts';
import { setLogLevel } from '@cm/core';
import { createMonitorClient } from '@cm/monitor-client';
import { openStore, sqlString, type Store } from '@cm/store';
import {
  makeTestBundles,
  testCheckpoint,
  testRunSpec,
  TEST_LAYERS,
  type TestBundles,
} from '@cm/engine/src/testing';
import { startAllInOne } from '../src';

setLogLevel('warn');
const dir = mkdtempSync(join(tmpdir(), 'cm-allinone-'));
let tb: TestBundles;
let store: Store;

beforeAll(async () => {
  tb = await makeTestBundles();
  store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: 'cm_serve' });
  await store.migrate();
}, 60_000);
afterAll(async () => {
  await store?.close();
  tb?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

it('each ack comes after its records are in the store; /healthz answers', async () => {
  const config = loadConfig({ CM_DISSECT_WORKERS: '1' });
  const running = await startAllInOne({
    config,
    store,
    listen: '127.0.0.1:0',
    healthPort: 0,
    bundles: tb.bundles,
  });
  const client = createMonitorClient({ target: running.grpcAddress });
  const width = TEST_LAYERS.reduce((s, l) => s + l.width, 0);
  try {
    const health = await fetch(`http://127.0.0.1:${running.healthPort}/healthz`);
    expect(health.status).toBe(200);
    await client.startRun(testRunSpec('ack-run', tb.bundleId));
    for (let step = 0; step < 3; step++) {
      expect((await client.sendCheckpoint(testCheckpoint(tb.space, step)))?.step).toBe(step);
      const [row] = await store.query<{ n: string }>(
        `SELECT count() AS n FROM ${TABLES.neuronLabels} WHERE run_id = ${sqlString('ack-run')} AND step = ${step}`,
      );
      expect(Number(row.n)).toBe(width);
    }
    await client.endRun('completed');
  } finally {
    await client.close();
    await running.stop();
  }
  const rows = await store.query<{ n: string }>(
    `SELECT count() AS n FROM ${TABLES.neuronLabels} WHERE run_id = ${sqlString('ack-run')} GROUP BY layer, step, neuron`,
  );
  expect(rows.length).toBe(3 * width);
  expect(rows.every((r) => Number(r.n) === 1)).toBe(true);
});
