/**
 * Activation streaming over loopback into the concept service (gRPC, this project's client and
 * server, real dissection in a worker). Sends raw conv checkpoints [D, H, W, C] float32 and prints
 * the rate at which the service received them (first chunk -> checkpoint end, measured by the
 * service) and the client's end-to-end rate including dissection and ack.
 *
 *   npm run bench:stream -- [checkpoints=5] [D=2000] [HW=8] [C=128]
 *
 * Target (issue 5): >= 200 MB/s into the service.
 */
import { createLogger, setLogLevel } from '@cm/core';
import { DissectPool, type ConceptSpace } from '@cm/dissect';
import { ConceptEngine, type RecordSink } from '@cm/engine';
import { createMonitorClient } from '@cm/monitor-client';
import { createConceptServer } from '../../apps/concept-service/src/server';
import type { CheckpointInfo } from '../../apps/concept-service/src/session';
import { randomSpace } from './random-space';

async function main(): Promise<void> {
  setLogLevel('warn');
  const [checkpoints = 5, d = 2000, hw = 8, c = 128] = process.argv.slice(2).map(Number);
  const space: ConceptSpace = randomSpace(d, 200, 32, 1);
  const pool = new DissectPool({ workers: 1 });
  const engine = new ConceptEngine({ bundles: { get: (id) => ({ id, space }) }, dissector: pool });
  const discard: RecordSink = { write: async () => undefined };
  const infos: CheckpointInfo[] = [];
  const server = createConceptServer({ engine, sink: discard, log: createLogger('bench'), onCheckpoint: (i) => infos.push(i) });
  const port = await server.listen('127.0.0.1:0');
  const client = createMonitorClient({ target: `127.0.0.1:${port}` });
  try {
    await client.startRun({ runId: 'bench-stream', model: 'bench', paradigm: 'standard', bundleId: 'random', layers: [{ name: 'conv', width: c, kind: 'conv' }], tags: {} });
    const data = new Float32Array(d * hw * hw * c);
    for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761) % 1000) / 1000;
    const bytes = data.byteLength;
    const t0 = performance.now();
    for (let step = 0; step < checkpoints; step++) {
      await client.sendCheckpoint({ step, layers: [{ layer: 'conv', shape: [d, hw, hw, c], data }], metrics: { loss: 1 } });
    }
    const wall = (performance.now() - t0) / 1000;
    const mb = (n: number): string => (n / 1e6).toFixed(1);
    const receiveRates = infos.map((i) => i.bytes / 1e6 / (i.receiveMs / 1000));
    const median = [...receiveRates].sort((a, b) => a - b)[Math.floor(receiveRates.length / 2)];
    console.log(`stream bench: ${checkpoints} checkpoints of [${d}, ${hw}, ${hw}, ${c}] float32 = ${mb(bytes)} MB each, over loopback`);
    for (const i of infos) console.log(`  step ${i.step}: received in ${i.receiveMs} ms (${(i.bytes / 1e6 / (i.receiveMs / 1000)).toFixed(0)} MB/s), pooled+dissected+acked in ${i.processMs} ms`);
    console.log(`into the service (median, first chunk -> checkpoint end): ${median.toFixed(0)} MB/s   (target >= 200 MB/s)`);
    console.log(`end to end incl. pooling, dissection and ack, one checkpoint at a time: ${((bytes * checkpoints) / 1e6 / wall).toFixed(0)} MB/s`);
  } finally {
    await client.close();
    await server.stop(1000);
    await pool.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
