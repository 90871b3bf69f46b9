/** The client's bounds: drop policy with the service down, bounded buffer, backpressure from a slow service. */
import { freePort } from '@cm/core';
import { createMonitorClient } from '@cm/monitor-client';
import {
  argmaxDissector,
  makeTestBundles,
  testCheckpoint,
  testRunSpec,
  type TestBundles,
} from '@cm/engine/src/testing';
import { startTestService } from './helpers';

let bundles: TestBundles;
beforeAll(async () => {
  bundles = await makeTestBundles();
});
afterAll(() => bundles.cleanup());

it('drop policy: with no service, training is blocked at most maxBlockMs per call and drops are counted', async () => {
  const port = await freePort(); // nothing listens there
  const client = createMonitorClient({
    target: `127.0.0.1:${port}`,
    policy: 'drop',
    maxBlockMs: 300,
    reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
  });
  try {
    let t = Date.now();
    await client.startRun(testRunSpec('down', bundles.bundleId));
    expect(Date.now() - t).toBeLessThan(1500);
    for (let step = 0; step < 3; step++) {
      t = Date.now();
      expect(await client.sendCheckpoint(testCheckpoint(bundles.space, step))).toBeUndefined();
      expect(Date.now() - t).toBeLessThan(1500);
    }
    expect(client.stats()).toMatchObject({
      droppedCheckpoints: 3,
      pendingCheckpoints: 0,
      bufferedBytes: 0,
      connected: false,
    });
  } finally {
    await client.close();
  }
});

it('drop policy: when the service comes back, later checkpoints go through', async () => {
  const port = await freePort();
  const client = createMonitorClient({
    target: `127.0.0.1:${port}`,
    policy: 'drop',
    maxBlockMs: 300,
    reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
  });
  try {
    await client.startRun(testRunSpec('late', bundles.bundleId));
    expect(await client.sendCheckpoint(testCheckpoint(bundles.space, 0))).toBeUndefined();
    const svc = await startTestService({ bundles, listenAddress: `127.0.0.1:${port}` });
    try {
      let result;
      for (let step = 1; step < 40 && !result; step++)
        result = await client.sendCheckpoint(testCheckpoint(bundles.space, step));
      expect(result).toBeDefined();
      expect(client.stats().droppedCheckpoints).toBeGreaterThanOrEqual(1);
    } finally {
      await client.close();
      await svc.stop();
    }
  } finally {
    await client.close();
  }
});

it('a slow service holds the trainer through backpressure; buffered bytes never exceed the bound', async () => {
  const svc = await startTestService({ bundles, dissector: argmaxDissector(120), maxInFlight: 1 });
  const one = 120 * (8 + 12 + 6) * 4; // bytes of one checkpoint's activations
  const bound = Math.floor(one * 2.5) + 2000;
  const client = createMonitorClient({
    target: svc.target,
    maxBufferedBytes: bound,
    chunkBytes: 4096,
    reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
  });
  let maxSeen = 0;
  const sampler = setInterval(() => (maxSeen = Math.max(maxSeen, client.stats().bufferedBytes)), 5);
  try {
    await client.startRun(testRunSpec('slow', bundles.bundleId));
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, step) => client.sendCheckpoint(testCheckpoint(bundles.space, step))),
    );
    expect(results.map((r) => r?.step)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(maxSeen).toBeGreaterThan(one);
    expect(maxSeen).toBeLessThanOrEqual(bound);
  } finally {
    clearInterval(sampler);
    await client.close();
    await svc.stop();
  }
});

it('wait policy with a finite maxBlockMs: a full buffer is a TIMEOUT, not an endless block', async () => {
  const svc = await startTestService({ bundles, dissector: argmaxDissector(400), maxInFlight: 1 });
  const one = 120 * 26 * 4;
  const client = createMonitorClient({
    target: svc.target,
    policy: 'wait',
    maxBlockMs: 100,
    maxBufferedBytes: one + 2000,
  });
  try {
    await client.startRun(testRunSpec('full', bundles.bundleId));
    const first = client.sendCheckpoint(testCheckpoint(bundles.space, 0));
    await expect(client.sendCheckpoint(testCheckpoint(bundles.space, 1))).rejects.toThrow(
      /send buffer full for 100 ms/,
    );
    expect((await first)?.step).toBe(0);
  } finally {
    await client.close();
    await svc.stop();
  }
});
