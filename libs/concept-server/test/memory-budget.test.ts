/**
 * One memory bound across all streams of a concept server: concurrent streams sending large layers
 * stay under it (the server's own accounting, not RSS) and all complete; the bound's queue is first
 * come, first served, and never deadlocks. Real gRPC over loopback against the real server.
 */
import { setLogLevel } from '@cm/core';
import type { MonitoredLayer } from '@cm/contracts';
import { ConceptEngine, MemorySink } from '@cm/engine';
import { argmaxDissector, testCheckpoint, testRunSpec, useTestBundles } from '@cm/engine/src/testing';
import { createMonitorClient } from '@cm/monitor-client';
import { MemoryBudget } from '../src';
import { listenForTest, startTestService } from './service';

setLogLevel('warn');
const bundles = useTestBundles();

describe('MemoryBudget', () => {
  it('grants in arrival order as memory is released', async () => {
    const budget = new MemoryBudget(100);
    const [a, b, c] = [{}, {}, {}];
    expect(budget.tryTake(a, 60)).toBe(true);
    const order: string[] = [];
    budget.wait(b, 50, () => order.push('b'));
    expect(budget.tryTake(c, 10)).toBe(false); // b waits first, even though 10 would fit
    budget.wait(c, 10, () => order.push('c'));
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([]);
    budget.release(a, 60);
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['b', 'c']);
    expect(budget.stats()).toMatchObject({ used: 60, peak: 60, waiting: 0, overcommits: 0 });
  });

  it('when every holder waits for more, the oldest is granted past the bound and it is counted', async () => {
    const budget = new MemoryBudget(100);
    const [a, b] = [{}, {}];
    expect(budget.tryTake(a, 50)).toBe(true);
    expect(budget.tryTake(b, 50)).toBe(true);
    let granted = '';
    budget.wait(a, 50, () => (granted += 'a'));
    expect(budget.stats().waiting).toBe(1); // b holds memory and is not waiting: it will release
    budget.wait(b, 50, () => (granted += 'b'));
    await new Promise((r) => setImmediate(r));
    expect(granted).toBe('a'); // both held and waited: a went past the bound, b still waits
    expect(budget.stats()).toMatchObject({ used: 150, overcommits: 1, waiting: 1 });
    budget.releaseAll(a);
    await new Promise((r) => setImmediate(r));
    expect(granted).toBe('ab');
    expect(budget.stats()).toMatchObject({ used: 100, waiting: 0 });
  });
});

it('4 concurrent streams of large layers stay under the server-wide bound and all complete', async () => {
  const width = 4096; // 120 probe images x 4096 x 4 bytes = 1.9 MiB per layer
  const layers: MonitoredLayer[] = [
    { name: 'wide1', width, kind: 'dense' },
    { name: 'wide2', width, kind: 'dense' },
  ];
  const layerBytes = 120 * width * 4;
  // two checkpoints (2 layers each) fit at once; 4 streams would hold up to 4 x 3 checkpoints unbounded
  const bound = Math.floor(layerBytes * 4.5);
  const sink = new MemorySink();
  const { server, port } = await listenForTest({
    engine: new ConceptEngine({ bundles: bundles.bundles, dissector: argmaxDissector(30) }),
    sink,
    maxBufferedBytes: bound,
    maxMessageBytes: 8 * 1024 * 1024,
  });
  let maxUsed = 0;
  let maxWaiting = 0;
  const sampler = setInterval(() => {
    const s = server.bufferStats();
    maxUsed = Math.max(maxUsed, s.used);
    maxWaiting = Math.max(maxWaiting, s.waiting);
  }, 2);
  const clients = Array.from({ length: 4 }, () => createMonitorClient({ target: `127.0.0.1:${port}` }));
  const steps = 4;
  try {
    const results = await Promise.all(
      clients.map(async (client, k) => {
        await client.startRun(testRunSpec(`budget-${k}`, bundles.bundleId, layers));
        const acked = await Promise.all(
          Array.from({ length: steps }, (_, step) =>
            client.sendCheckpoint(testCheckpoint(bundles.space, step, layers)),
          ),
        );
        await client.endRun('completed');
        return acked.map((r) => r?.step);
      }),
    );
    expect(results).toEqual(Array.from({ length: 4 }, () => [0, 1, 2, 3]));
    const stats = server.bufferStats();
    expect(stats.peak).toBeLessThanOrEqual(bound);
    expect(maxUsed).toBeLessThanOrEqual(bound);
    expect(stats.peak).toBeGreaterThanOrEqual(2 * layerBytes); // the bound was actually in play
    expect(maxWaiting).toBeGreaterThan(0); // some stream had to wait for another's memory
    expect(stats).toMatchObject({ used: 0, waiting: 0, overcommits: 0 });
    for (let k = 0; k < 4; k++) {
      const stored = sink.records.filter((r) => r.kind === 'checkpoint' && r.runId === `budget-${k}`);
      expect(stored.map((r) => (r.kind === 'checkpoint' ? r.step : -1))).toEqual([0, 1, 2, 3]);
    }
  } finally {
    clearInterval(sampler);
    await Promise.all(clients.map((c) => c.close()));
    await server.stop(2000);
  }
}, 60_000);

it('a layer larger than the whole bound is refused with RESOURCE_EXHAUSTED, naming the setting', async () => {
  const layers: MonitoredLayer[] = [{ name: 'huge', width: 1024, kind: 'dense' }];
  const { server, client, close } = await startTestService({
    engine: new ConceptEngine({ bundles: bundles.bundles, dissector: argmaxDissector() }),
    sink: new MemorySink(),
    maxBufferedBytes: 100_000, // a layer is 120 x 1024 x 4 = 491520 bytes
  });
  try {
    await client.startRun(testRunSpec('too-big', bundles.bundleId, layers));
    await expect(client.sendCheckpoint(testCheckpoint(bundles.space, 0, layers))).rejects.toThrow(
      /more than the service's buffer bound of 100000 bytes/,
    );
    expect(server.bufferStats().used).toBe(0);
  } finally {
    await close();
  }
}, 30_000);
