/**
 * Layers dissected while the checkpoint still arrives (ConceptEngine.beginCheckpoint, issue 15),
 * through the real server over loopback gRPC: a layer's dissection starts before the checkpoint's
 * end is received, the ack still waits for every layer, and a later bad layer refuses the
 * checkpoint as before with the early work awaited and the memory budget given back.
 */
import { setLogLevel } from '@cm/core';
import type { MonitoredLayer } from '@cm/contracts';
import type { ConceptSpace, DissectOptions, Matrix } from '@cm/dissect';
import { ConceptEngine, MemorySink, type LayerDissector, type LayerResult } from '@cm/engine';
import { argmaxDissector, plantedActivations, testRunSpec, useTestBundles } from '@cm/engine/src/testing';
import { startTestService } from './service';

setLogLevel('warn');
const bundles = useTestBundles();

// 120 x 4096 x 4 bytes = 1.9 MiB a layer: each arrives as several chunks and reads
const width = 4096;
const layers: MonitoredLayer[] = [
  { name: 'first', width, kind: 'dense' },
  { name: 'second', width, kind: 'dense' },
];

/** The argmax double, logging when each dissection starts and ends next to the session's events. */
function loggedDissector(events: string[]): LayerDissector & { active: () => number } {
  const inner = argmaxDissector(40);
  let active = 0;
  return {
    active: () => active,
    async dissect(space: ConceptSpace, q: Matrix, opts: DissectOptions): Promise<LayerResult> {
      active++;
      events.push('dissect start');
      try {
        return await inner.dissect(space, q, opts);
      } finally {
        active--;
        events.push('dissect end');
      }
    },
  };
}

async function serverWith(dissector: LayerDissector, events: string[]) {
  const sink = new MemorySink();
  const service = await startTestService({
    engine: new ConceptEngine({ bundles: bundles.bundles, dissector }),
    sink,
    maxMessageBytes: 8 * 1024 * 1024,
    observer: {
      checkpointReceived: () => events.push('end received'),
      checkpointAcked: () => events.push('acked'),
      streamRefused: (code) => events.push(`refused ${code}`),
    },
  });
  return { ...service, sink };
}

it('the first layer is dissected before the checkpoint has ended; the ack waits for both layers', async () => {
  const events: string[] = [];
  const dissector = loggedDissector(events);
  const { server, sink, client, close } = await serverWith(dissector, events);
  try {
    await client.startRun(testRunSpec('early', bundles.bundleId, layers));
    const cp = {
      step: 1,
      layers: layers.map((l) => plantedActivations(bundles.space, l.name, width, 1)),
      metrics: {},
    };
    const ack = await client.sendCheckpoint(cp);
    expect(ack?.step).toBe(1);
    expect(events.indexOf('dissect start')).toBeLessThan(events.indexOf('end received'));
    // acknowledged only after both dissections are over and the records are in the sink
    expect(events.filter((e) => e === 'dissect end')).toHaveLength(2);
    expect(events.lastIndexOf('dissect end')).toBeLessThan(events.indexOf('acked'));
    expect(sink.records.filter((r) => r.kind === 'labels').length).toBeGreaterThan(0);
    expect(server.bufferStats()).toMatchObject({ used: 0, waiting: 0 });
  } finally {
    await close();
  }
}, 30_000);

it('a NaN in the later layer refuses the checkpoint as before; the early dissection is over and the budget back', async () => {
  const events: string[] = [];
  const dissector = loggedDissector(events);
  const { server, sink, client, close } = await serverWith(dissector, events);
  try {
    await client.startRun(testRunSpec('late-nan', bundles.bundleId, layers));
    const cp = {
      step: 1,
      layers: layers.map((l) => plantedActivations(bundles.space, l.name, width, 1)),
      metrics: {},
    };
    cp.layers[1].data[9] = Number.NaN;
    await expect(client.sendCheckpoint(cp)).rejects.toThrow(
      'run late-nan step 1 layer second: value NaN at index 9 ([0, 9]) is not finite',
    );
    expect(events).toContain('dissect start'); // the first layer was dissected early...
    expect(events).not.toContain('acked'); // ...and nothing was acknowledged or recorded for it
    expect(sink.records.filter((r) => r.kind === 'labels' || r.kind === 'checkpoint')).toEqual([]);
    expect(dissector.active()).toBe(0);
    for (let i = 0; i < 100 && server.bufferStats().used > 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(server.bufferStats()).toMatchObject({ used: 0, waiting: 0 });
  } finally {
    await close();
  }
}, 30_000);
