/**
 * `cm serve` as a trainer in another process sees it: a subprocess on a fresh CM_HOME, real gRPC
 * over loopback from @cm/monitor-client, records in the embedded chDB store once acknowledged.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { waitFor } from '@cm/core';
import { createMonitorClient, serviceDefinition, type TrainerMessage } from '@cm/monitor-client';
import { BundleDirectory, makeSyntheticBundle, writeBundleInto } from '@cm/probe';
import { openStore, sqlString } from '@cm/store';
import { TABLES } from '@cm/contracts';
import { testCheckpoint, testRunSpec, TEST_LAYERS } from '@cm/engine/src/testing';
import { rejection } from '@cm/core/src/testing';
import { testChunk } from '@cm/protocol/src/testing';
import type { ConceptSpace } from '@cm/dissect';
import { cmWith } from './run-cm';
import { startServe, type ServeProcess } from './serve-process';

const home = mkdtempSync(join(tmpdir(), 'cm-serve-'));
let bundleId: string;
let space: ConceptSpace;
let serve: ServeProcess | undefined;

beforeAll(async () => {
  const bundles = join(home, 'bundles');
  ({ id: bundleId } = await writeBundleInto(bundles, makeSyntheticBundle({ images: 120, seed: 7 })));
  space = new BundleDirectory(bundles).get(bundleId).space;
}, 60_000);

afterAll(async () => {
  await serve?.stop('SIGKILL');
  rmSync(home, { recursive: true, force: true });
});

const fast = { reconnect: { initialDelayMs: 50, maxDelayMs: 500 } };

/** A stream that sends activations before RunStart: the server must end it with a status. */
function rawStatusOfChunkWithoutRun(target: string): Promise<grpc.StatusObject> {
  const Client = grpc.makeGenericClientConstructor(serviceDefinition(), 'Monitor');
  const client = new Client(target, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    const call = (
      client as unknown as { Monitor(): grpc.ClientDuplexStream<TrainerMessage, unknown> }
    ).Monitor();
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    call.on('status', (s: grpc.StatusObject) => {
      client.close();
      resolve(s);
    });
    call.write({ chunk: testChunk({ layer: 'conv1', shape: [120, 8] }) });
  });
}

describe('cm serve (subprocess, fresh CM_HOME)', () => {
  it('every neuron of every checkpoint lands in the store exactly once; bad input is refused with a status', async () => {
    serve = await startServe({ CM_HOME: home }, ['--workers', '1']);
    expect(serve.output()).toMatch(/store: +.*cm-serve-.*store/);
    expect(serve.output()).not.toMatch(/web view/); // --no-ui
    const health = await fetch(serve.healthUrl);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ ok: true, status: 'SERVING' });

    const client = createMonitorClient({ target: serve.target, ...fast });
    try {
      await client.startRun(testRunSpec('serve-run', bundleId));
      for (let step = 0; step < 3; step++) {
        const result = await client.sendCheckpoint(testCheckpoint(space, step));
        expect(result?.step).toBe(step);
      }
      // Bad input: wrong first dimension refused by the server, the run goes on.
      const cp = testCheckpoint(space, 3);
      const good = cp.layers[1];
      cp.layers[1] = {
        layer: good.layer,
        shape: [good.shape[0] - 1, good.shape[1]],
        data: good.data.subarray(0, (good.shape[0] - 1) * good.shape[1]),
      };
      const e = await rejection(client.sendCheckpoint(cp));
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toMatch(/first dimension 119 must equal the probe bundle's 120 images/);
      await client.endRun('completed');
    } finally {
      await client.close();
    }
    const unknown = createMonitorClient({ target: serve.target, ...fast });
    try {
      const e = await rejection(unknown.startRun(testRunSpec('serve-unknown', 'ffffffffffffffff')));
      expect(e.code).toBe('NOT_FOUND');
    } finally {
      await unknown.close();
    }
    // While it serves, other commands read the store through its reader endpoint.
    const runs = await cmWith({ CM_HOME: home })(['runs', '--json']);
    expect(runs.code).toBe(0);
    expect(
      (JSON.parse(runs.stdout) as { run_id: string; status: string }[]).find((r) => r.run_id === 'serve-run'),
    ).toMatchObject({ status: 'completed' });
    const raw = await rawStatusOfChunkWithoutRun(serve.target);
    expect(raw.code).toBe(grpc.status.NOT_FOUND);
    expect(raw.details).toMatch(/before RunStart/);

    const stopped = await serve.stop('SIGTERM');
    serve = undefined;
    expect(stopped.code).toBe(0);
    expect(stopped.stdout).toMatch(/cm serve: stopped/);

    // chDB holds its folder exclusively: read it once the server is gone.
    const store = await openStore({ kind: 'chdb', path: join(home, 'store'), database: 'concept_monitor' });
    try {
      const rows = await store.query<{ layer: string; step: string; neuron: string; n: string }>(
        `SELECT layer, step, neuron, count() AS n FROM ${TABLES.neuronLabels} WHERE run_id = ${sqlString('serve-run')} GROUP BY layer, step, neuron`,
      );
      const width = TEST_LAYERS.reduce((s, l) => s + l.width, 0);
      expect(rows.length).toBe(3 * width);
      expect(rows.every((r) => Number(r.n) === 1)).toBe(true);
      for (const l of TEST_LAYERS)
        for (let step = 0; step < 3; step++)
          expect(rows.filter((r) => r.layer === l.name && Number(r.step) === step).length).toBe(l.width);
      const runs = await store.query<{ status: string }>(
        `SELECT status FROM ${TABLES.runs} FINAL WHERE run_id = ${sqlString('serve-run')}`,
      );
      expect(runs.map((r) => r.status)).toEqual(['completed']);
    } finally {
      await store.close();
    }
  }, 180_000);

  it('a run whose trainer went away is marked abandoned; resuming it makes it running again', async () => {
    serve = await startServe({ CM_HOME: home, CM_SERVICE_RUN_IDLE_MS: '1000' }, ['--workers', '1']);
    const statusOf = async (id: string): Promise<string | undefined> =>
      (
        JSON.parse((await cmWith({ CM_HOME: home })(['runs', '--json'])).stdout) as {
          run_id: string;
          status: string;
        }[]
      ).find((r) => r.run_id === id)?.status;
    const trainer = createMonitorClient({ target: serve.target, ...fast });
    await trainer.startRun(testRunSpec('left-behind', bundleId));
    expect((await trainer.sendCheckpoint(testCheckpoint(space, 0)))?.step).toBe(0);
    // asked while its trainer is connected: a connected run is never evicted, however long
    // `cm runs` takes to start under load (after the close, 1 s idle is enough to evict it)
    expect(await statusOf('left-behind')).toBe('running');
    await trainer.close(); // the trainer dies: no RunEnd
    let seen: string | undefined;
    for (let i = 0; i < 50 && seen !== 'abandoned'; i++) {
      await new Promise((r) => setTimeout(r, 200));
      seen = await statusOf('left-behind');
    }
    expect(seen).toBe('abandoned');
    const back = createMonitorClient({ target: serve.target, ...fast });
    try {
      await back.startRun(testRunSpec('left-behind', bundleId), { resume: true });
      expect((await back.sendCheckpoint(testCheckpoint(space, 1)))?.step).toBe(1);
      expect(await statusOf('left-behind')).toBe('running');
      await back.endRun('completed');
    } finally {
      await back.close();
    }
    expect(await statusOf('left-behind')).toBe('completed');
    await serve.stop('SIGTERM');
    serve = undefined;
  }, 120_000);

  it('serves the web view on the same store with --ui-port', async () => {
    serve = await startServe({ CM_HOME: home }, ['--workers', '1', '--ui-port', '0']);
    const s = serve;
    expect(await waitFor(async () => /web view: +\S+/.test(s.output()), 60_000)).toBe(true);
    const url = /web view: +(\S+)/.exec(s.output())?.[1];
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+/);
    const page = await fetch(url!);
    expect(page.status).toBe(200);
    const stopped = await serve.stop('SIGINT');
    serve = undefined;
    expect(stopped.code).toBe(0);
  }, 120_000);
});
