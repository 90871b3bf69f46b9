/**
 * Policy 'spool': while the concept service is down, checkpoints wait as files in a bounded folder
 * and go out in order once it is back; a full spool drops and counts. Real gRPC over loopback
 * against the real concept server (two in turn on one address, the second a fresh process state).
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from '@cm/core';
import { createMonitorClient } from '@cm/monitor-client';
import { makeTestBundles, testCheckpoint, testRunSpec, type TestBundles } from '@cm/engine/src/testing';
import { FlakySink, startTestService, type TestService } from './helpers';

let bundles: TestBundles;
let spoolRoot: string;
beforeAll(async () => {
  bundles = await makeTestBundles();
  spoolRoot = mkdtempSync(join(tmpdir(), 'cm-spool-test-'));
});
afterAll(() => {
  bundles.cleanup();
  rmSync(spoolRoot, { recursive: true, force: true });
});

const fast = { reconnect: { initialDelayMs: 20, maxDelayMs: 100 } };

/** The steps of the stored records of one kind, in the order the sink received them. */
function stepsOf(sink: FlakySink, kind: string, runId: string): number[] {
  const steps: number[] = [];
  for (const r of sink.records)
    if (r.kind === kind && r.runId === runId && 'step' in r && !steps.includes(r.step as number))
      steps.push(r.step as number);
  return steps;
}

it('service down for a while, then back: spooled files on disk, every checkpoint stored once and in order', async () => {
  const sink = new FlakySink();
  const first = await startTestService({ bundles, sink });
  const client = createMonitorClient({ target: first.target, policy: 'spool', spoolDir: spoolRoot, ...fast });
  const runDir = join(spoolRoot, 'outage');
  let second: TestService | undefined;
  try {
    await client.startRun(testRunSpec('outage', bundles.bundleId));
    expect((await client.sendCheckpoint(testCheckpoint(bundles.space, 0)))?.step).toBe(0);
    await first.server.stop(0);
    // wait until the client has seen the outage
    for (let i = 0; i < 100 && client.stats().connected; i++) await new Promise((r) => setTimeout(r, 20));
    expect(client.stats().connected).toBe(false);
    for (let step = 1; step <= 5; step++) {
      const t = Date.now();
      expect(await client.sendCheckpoint(testCheckpoint(bundles.space, step))).toBeUndefined();
      expect(Date.now() - t).toBeLessThan(1000); // training is not held
    }
    const files = readdirSync(runDir).filter((f) => f.endsWith('.ckpt'));
    expect(files.sort().map((f) => Number(f.split('-')[1].split('.')[0]))).toEqual([1, 2, 3, 4, 5]);
    expect(client.stats()).toMatchObject({
      spooledCheckpoints: 5,
      spoolPendingCheckpoints: 5,
      droppedCheckpoints: 0,
    });
    expect(client.stats().spoolBytes).toBeGreaterThan(5 * 120 * 26 * 4);

    second = await startTestService({ bundles, sink, listenAddress: first.target });
    await client.endRun('completed');
    const stats = client.stats();
    expect(stats).toMatchObject({ droppedCheckpoints: 0, spoolPendingCheckpoints: 0, spoolBytes: 0 });
    expect(stats.acknowledgedCheckpoints).toBe(6);
    // each step once, in order, with all its neurons
    expect(stepsOf(sink, 'labels', 'outage')).toEqual([0, 1, 2, 3, 4, 5]);
    const labelRows = sink.records.filter((r) => r.kind === 'labels' && r.runId === 'outage');
    const keys = labelRows.flatMap((r) =>
      r.kind === 'labels' ? r.labels.map((l) => `${r.layer}|${r.step}|${l.neuron}`) : [],
    );
    expect(keys.length).toBe(6 * 26);
    expect(new Set(keys).size).toBe(6 * 26);
    // the run's folder is gone once it drained
    expect(() => readdirSync(runDir)).toThrow();
  } finally {
    await client.close();
    await second?.stop();
  }
});

it('a full spool drops and counts; what fitted is delivered when the service comes back', async () => {
  const port = await freePort(); // nothing listens there yet
  const sink = new FlakySink();
  const oneFile = 120 * 26 * 4 + 2000; // a checkpoint's activations plus framing, generously
  const client = createMonitorClient({
    target: `127.0.0.1:${port}`,
    policy: 'spool',
    spoolDir: spoolRoot,
    spoolMaxBytes: Math.floor(oneFile * 2.5),
    maxBlockMs: 200,
    ...fast,
  });
  let svc: TestService | undefined;
  try {
    await client.startRun(testRunSpec('full-spool', bundles.bundleId)); // goes on after 200 ms
    for (let step = 0; step < 5; step++)
      expect(await client.sendCheckpoint(testCheckpoint(bundles.space, step))).toBeUndefined();
    expect(client.stats()).toMatchObject({
      spooledCheckpoints: 2,
      spoolPendingCheckpoints: 2,
      droppedCheckpoints: 3,
    });
    expect(readdirSync(join(spoolRoot, 'full-spool')).filter((f) => f.endsWith('.ckpt'))).toHaveLength(2);
    svc = await startTestService({ bundles, sink, listenAddress: `127.0.0.1:${port}` });
    // found again before the run ends: endRun gives an unreachable service only maxBlockMs (200)
    expect(await waitFor(async () => client.stats().connected, 30_000, 20)).toBe(true);
    await client.endRun('completed');
    expect(stepsOf(sink, 'labels', 'full-spool')).toEqual([0, 1]);
    expect(client.stats()).toMatchObject({ acknowledgedCheckpoints: 2, droppedCheckpoints: 3 });
  } finally {
    await client.close();
    await svc?.stop();
  }
});

it('the service never comes back: endRun gives up after maxBlockMs and counts the spooled checkpoints as dropped', async () => {
  const port = await freePort();
  const client = createMonitorClient({
    target: `127.0.0.1:${port}`,
    policy: 'spool',
    spoolDir: spoolRoot,
    maxBlockMs: 150,
    ...fast,
  });
  try {
    await client.startRun(testRunSpec('never', bundles.bundleId));
    for (let step = 0; step < 3; step++) await client.sendCheckpoint(testCheckpoint(bundles.space, step));
    expect(client.stats().spoolPendingCheckpoints).toBe(3);
    const t = Date.now();
    await client.endRun('completed');
    expect(Date.now() - t).toBeLessThan(2000);
    expect(client.stats()).toMatchObject({ droppedCheckpoints: 3, spoolPendingCheckpoints: 0 });
    expect(() => readdirSync(join(spoolRoot, 'never'))).toThrow();
  } finally {
    await client.close();
  }
});
